// Package stdout is the uplink transport that writes to a writer (standard
// output by default): one line per message, one record per line with the
// default batch_size of 1, for debugging and for piping into other tools.
//
// # Guarantees
//
// Records are acknowledged in the outbox once their line was written
// without error; a failed write ends the session, and the core sends the
// unacknowledged records again after its backoff.
//
// # Caveats
//
//   - "Written" means handed to the writer: a pipe whose reader dies after
//     reading loses what it had not processed.
package stdout
