// Package ingest holds the domain types that cross package lines in
// sensorgate, and nothing else of ours: every other package depends on it,
// it depends on no package of the project.
//
// # Basics
//
// A [Reading] is one measured value: sensor id, metric, value, unit, event
// time, arrival time and quality flags. It is small and flat (times are Unix
// nanoseconds, not time.Time) so that it can travel through bounded channels
// and be MessagePack-encoded into a reused buffer without allocating.
//
// A [Source] turns the outside world (MQTT topics, chips on a bus, the
// simulator) into readings. Run blocks until its context is cancelled or the
// source fails for good, and never closes the channel it was given: the caller
// owns it, so several sources can share one.
//
// A [Summary] is what a window emits and an [Alert] what a threshold rule
// emits. Both, and batches of readings, are stored in the outbox as a
// [Kind]-tagged MessagePack record (see [AppendRecord] and [DecodeRecord]), so
// that the buffer can stay ignorant of what it stores and the uplink can
// re-encode a record as JSON, MessagePack or SenML.
//
// # Configuration errors
//
// Every package validates its own configuration and reports problems as
// [FieldError] values naming a key path relative to that package's section
// ("window.size"). The command prefixes the path with where the section sits
// in the file ([PrefixErrors]) and adds the line number, so an operator sees
// "rules[2].window.size: must be > 0 (line 41)".
//
// # Guarantees
//
// Encoding a Reading with MarshalMsg into a buffer with enough capacity does
// not allocate. Decoding ([DecodeRecord]) never panics on arbitrary input; it
// returns an error wrapping [ErrBadRecord].
package ingest
