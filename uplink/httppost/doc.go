// Package httppost is the uplink transport that POSTs batches to an HTTP
// endpoint with net/http. It implements uplink.Transport: the uplink core
// feeds, encodes, dead-letters and acknowledges; this package sends,
// decides from the status what is retried and what is refused, and splits
// a refused batch so that only the offending records are dead-lettered.
//
// # Delivery
//
// Batches (up to batch_size records and about batch_bytes) are POSTed as
// the configured format, optionally gzip-compressed, with the configured
// headers and a bearer token. A 2xx acknowledges the batch. 429, 5xx, 408,
// 425, timeouts and network errors are retried with backoff (Retry-After,
// seconds or HTTP date, is honoured, up to an hour); 401, 403 and 407 are
// retried too, as they concern the credentials, not the records. Any other
// status (400, 404, 413, 422, ...) rejects the batch: a batch of several
// records is split in halves and each half sent again, so that only the
// records the upstream refuses on their own are moved to the dead lane,
// counted, and the lane moves on.
//
// The URL's userinfo password and query values (tokens often ride there)
// are redacted in every error, hence in the log and Stats.LastError
// (/healthz); header values and the token are never logged.
//
// # Caveats
//
//   - Retries happen inside one session, so a long outage shows as one
//     session: Stats.Connects stays 0 for HTTP; Connected follows the last
//     request.
//   - The token file is read at every request; TLS files are read once, when
//     the transport is built (a reload builds a new one).
//   - HTTP uplinks use the environment's proxy settings (HTTP(S)_PROXY).
package httppost
