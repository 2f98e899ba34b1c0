// Package decode turns message payloads into readings. Every decoder is a
// small function over bytes with no I/O, safe for concurrent use, that
// appends to a caller-owned []ingest.Reading and does not allocate per
// reading in steady state.
//
// # Basics
//
// [JSONMapping] (the `json:` block of a subscription) says where the sensor id
// (a field, possibly nested as "meta.id", or a topic level), the event time
// and the metrics are in a JSON object. [NewJSON] compiles it into a
// [JSONDecoder]; [JSONDecoder.Decode] reads one object or an array of objects:
//
//	{"id":"gh-1","ts":1714564800123,"env":{"temp":21.5,"hum":40}}
//
// With no metrics configured, every top-level number except the sensor and
// time fields is a metric named after its key. Configured metrics also accept
// true/false (1/0) and numbers in strings ("21.5"); null means absent.
// Python-style NaN, Infinity and -Infinity tokens are accepted as values so
// that door validation can count them as not finite; numbers too large for a
// float64 become ±Inf for the same reason.
//
// Times: time_format auto (the default) reads a number below 1e11 as
// seconds, below 1e14 as milliseconds, below 1e17 as microseconds and larger
// as nanoseconds, and a string as RFC 3339; unix_s, unix_ms, unix_us, unix_ns
// and rfc3339 force one reading. A missing time means arrival time plus
// ingest.QualityNoEventTime. Decimal seconds are converted exactly.
//
// # Errors
//
// Every error is an [*Error] whose Reason is one of the Reason constants
// (malformed, no_sensor, no_metrics, bad_time, bad_value, too_large), for
// counting. A syntax error discards the whole payload; a semantic problem in
// one object of an array skips that object only and the others' readings are
// still appended (Error.Skipped says how many were skipped).
//
// # Performance
//
// The JSON decoder is a hand-written scanner: no reflection, no intermediate
// tree. Sensor ids and metric names are interned (a copy-on-write map read
// without locks, bounded to 8192 strings), so a steady stream of known
// sensors decodes without allocating; see BenchmarkJSON.
//
// # Caveats
//
//   - A key containing a dot cannot be addressed by a path.
//   - Duplicate keys produce one reading each.
//   - Escaped strings in time fields are rejected (bad_time).
package decode
