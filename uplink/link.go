package uplink

import (
	"context"
	"log/slog"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
)

// Link is what a [Transport] reaches of the core during a Session: the
// records to send, the place to confirm them, the encoder and topics, and
// the counters and online state. It lives as long as Run, across sessions,
// and is used by the session's goroutines only (Ack, counters and state
// methods are safe from any goroutine, the feeding methods are not).
type Link struct {
	u  *Uplink
	f  *feeder
	ak *acker
}

// Config returns the uplink's configuration, defaults applied.
func (l *Link) Config() Config { return l.u.cfg }

// Logger returns the uplink's logger (with its name attached).
func (l *Link) Logger() *slog.Logger { return l.u.log }

// Now reads the uplink's clock.
func (l *Link) Now() time.Time { return l.u.now() }

// Gateway and Version are the run-time identity (Options).
func (l *Link) Gateway() string { return l.u.opts.Gateway }
func (l *Link) Version() string { return l.u.opts.Version }

// Started is when the uplink was created (the birth message carries it).
func (l *Link) Started() time.Time { return l.u.started }

// ---- feeding ----

// Fill makes sure records are queued if the outbox has any, reading from
// the highest-priority served lane that has some; undecodable records are
// dead-lettered on the way. It reports whether records are queued.
func (l *Link) Fill(ctx context.Context) (bool, error) { return l.f.fill(ctx) }

// Next removes and returns the next batch: consecutive records of one lane
// with one topic, at most batch_size of them and about batch_bytes; nil
// when nothing is queued. The slice is valid until the next Fill.
func (l *Link) Next() []Record { return l.f.next() }

// Unread puts records back at the front of the queue (a batch split for
// max_message_bytes).
func (l *Link) Unread(recs []Record) { l.f.unread(recs) }

// Wakeup is signalled when the outbox commits new records.
func (l *Link) Wakeup() <-chan struct{} { return l.u.wakeup }

// WaitData blocks until the outbox signals new records, poll_interval
// passes, or ctx is done; it reports whether ctx is still live.
func (l *Link) WaitData(ctx context.Context) bool { return l.u.waitData(ctx) }

// Sleep waits d or until ctx is done; it reports whether ctx is still
// live (a transport's own retry delay).
func (l *Link) Sleep(ctx context.Context, d time.Duration) bool { return sleep(ctx, d) }

// ---- encoding ----

// AppendPayload appends the encoded batch to b. With array set every
// payload is an array even for one record (HTTP bodies, batch_size > 1);
// otherwise a single record is a bare object.
func (l *Link) AppendPayload(b []byte, batch []Record, array bool) []byte {
	enc := l.u.enc
	enc.array = array
	return enc.appendPayload(b, batch)
}

// ContentType is the MIME type of the payloads (HTTP).
func (l *Link) ContentType() string { return l.u.enc.contentType() }

// Topic returns the topic of a message starting with r.
func (l *Link) Topic(r *Record) string { return l.u.topicFor(r) }

// Render expands a template with only {gateway} and {name} (client id,
// status topic).
func (l *Link) Render(tmpl string) string {
	return compileTopic(tmpl).render(l.u.opts.Gateway, l.u.cfg.Name, nil)
}

// ---- confirming ----

// Ack queues records of one lane that upstream confirmed; they are removed
// from the outbox off the sending path. It never blocks.
func (l *Link) Ack(lane buffer.Lane, seqs ...uint64) { l.ak.add(lane, seqs...) }

// AckBacklog is how many confirmed records wait to be removed.
func (l *Link) AckBacklog() int { return l.ak.backlog() }

// FlushAcks removes every record passed to Ack so far from the outbox.
func (l *Link) FlushAcks() { l.ak.flush() }

// DeadLetter moves r to buffer.LaneDead for good and acknowledges it in
// its lane (counted in DeadLettered).
func (l *Link) DeadLetter(ctx context.Context, r *Record) error {
	return l.u.deadLetter(ctx, r.Lane, []buffer.Record{r.Record})
}

// ---- counting and state ----

// Sent counts one message (request, line) of records records and bytes
// payload bytes.
func (l *Link) Sent(records, bytes int) {
	l.u.c.messages.Add(1)
	l.u.c.sent.Add(uint64(records))
	l.u.c.bytes.Add(uint64(bytes))
}

// InFlight adds delta to the records sent and not yet confirmed.
func (l *Link) InFlight(delta int) { l.u.c.inflight.Add(int64(delta)) }

// Retried counts n records that are sent again.
func (l *Link) Retried(n int) { l.u.c.retries.Add(uint64(n)) }

// CountError counts an upstream or outbox error (Stats.Errors). An error
// a Session returns becomes LastError by itself.
func (l *Link) CountError() { l.u.c.errors.Add(1) }

// SetLastError records err as LastError (for errors a Session handles
// without returning, such as an HTTP retry).
func (l *Link) SetLastError(err error) { l.u.setErr(err) }

// Connected counts a connection made and marks the uplink online;
// ConnectFailed counts a failed attempt; Disconnected counts a lost or
// closed connection and marks it offline.
func (l *Link) Connected() {
	l.u.c.connects.Add(1)
	l.u.setOnline()
}
func (l *Link) ConnectFailed() { l.u.c.connectFailures.Add(1) }
func (l *Link) Disconnected() {
	l.u.c.disconnects.Add(1)
	l.u.setOffline()
}

// Online and Offline set the state of a connectionless transport (HTTP:
// the last request got an answer; stdout: the last write worked).
func (l *Link) Online()  { l.u.setOnline() }
func (l *Link) Offline() { l.u.setOffline() }

// Seqs returns the sequence numbers of batch.
func Seqs(batch []Record) []uint64 { return seqsOf(batch) }
