// Package backoff is the jittered exponential delay the uplink core and its
// transports wait between attempts. It is a stop-gap until the shared
// internal/backoff lands; it keeps the uplink's jitter rule ([d/2, d]).
//
// # Caveats
//
//   - A Backoff is not safe for concurrent use; each loop owns its own.
package backoff
