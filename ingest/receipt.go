package ingest

// A Receipt rides on the last reading of a durable input (one MQTT message,
// one chip poll): the source is waiting to be told that the effect of
// everything it handed on, up to and including that reading, is committed
// to disk, and only then acknowledges it (a PUBACK) or forgets it.
//
// The rules engine collects the receipts of the readings it processed and,
// after the checkpoint that holds their effect (window, stage and alert
// state, and the records they emitted) is committed, calls Done on each, in
// the order the readings arrived. A reading without a receipt (QoS 0, the
// simulator by default) is not waited for: its effect is committed with the
// next checkpoint, and lost if the process dies before that.
type Receipt struct {
	// Key and Value, when Key is not empty, are written to the state store
	// in the same transaction as the checkpoint that covers the reading.
	// A source uses them to recognise an input it has already had committed
	// when the input comes again (an MQTT message redelivered with DUP=1
	// because its PUBACK never left). Key is the source's own, and must
	// start with "src/".
	Key, Value []byte
	// Done is called exactly once: with nil after the commit, or with the
	// error that made the engine give up on committing (the input is then
	// left unacknowledged, for the broker to deliver again). nil is allowed
	// (nothing to tell).
	Done func(err error)
}

// PromptCommit is a receipt with nothing to do: a source that does not
// wait for the commit (a chip, a durable simulated sensor) puts it on a
// reading so that the reading's effect is committed within the
// checkpoint's short delay, as a durable input's would be.
var PromptCommit = &Receipt{}

// Committed calls r.Done(err) if there is one. A nil r is allowed.
func (r *Receipt) Committed(err error) {
	if r != nil && r.Done != nil {
		r.Done(err)
	}
}
