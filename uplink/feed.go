package uplink

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
)

// topicFor returns the MQTT topic of a message starting with it.
func (u *Uplink) topicFor(r *Record) string {
	if u.topic.fixed {
		return u.laneTopic[r.Lane]
	}
	return u.topic.render(u.opts.Gateway, u.cfg.Name, r)
}

// ---- reading the outbox ----

// feeder hands out the records of the served lanes in priority order,
// remembering per lane how far it has read.
type feeder struct {
	u     *Uplink
	after [len(buffer.Lanes)]uint64
	queue []Record // read, decoded, not yet handed out; all of one lane
	buf   []Record // queue's backing array, reused once the queue is empty
	chunk int
}

func newFeeder(u *Uplink) *feeder {
	chunk := max(u.cfg.BatchSize*4, 256)
	if u.cfg.Type == TypeMQTT {
		chunk = max(chunk, u.cfg.MaxInflight*u.cfg.BatchSize)
	}
	return &feeder{u: u, chunk: min(chunk, 8192)}
}

// rewind makes the feeder start again from the oldest record of every
// lane that is still in the outbox (everything not acknowledged).
func (f *feeder) rewind() {
	f.after = [len(buffer.Lanes)]uint64{}
	f.queue = nil
}

// fill makes sure the queue holds records if the outbox has any, reading
// from the highest-priority lane that has some. Undecodable records are
// dead-lettered here. It reports whether the queue is non-empty.
func (f *feeder) fill(ctx context.Context) (bool, error) {
	if len(f.queue) > 0 {
		return true, nil
	}
	// Every batch handed out before has been encoded by now: reuse.
	clear(f.buf)
	f.queue = f.buf[:0]
	for _, l := range f.u.lanes {
		recs, err := f.u.ob.Read(l, f.after[l], f.chunk)
		if err != nil {
			return false, fmt.Errorf("uplink: read %s: %w", l, err)
		}
		if len(recs) == 0 {
			continue
		}
		var bad []buffer.Record
		for _, r := range recs {
			dec, err := ingest.DecodeRecord(r.Payload)
			if err != nil {
				f.u.log.Warn("undecodable outbox record", "lane", l.String(), "seq", r.Seq, "id", r.ID, "err", err)
				bad = append(bad, r)
				continue
			}
			f.queue = append(f.queue, Record{Record: r, Decoded: dec})
		}
		if len(bad) > 0 {
			f.u.c.bad.Add(uint64(len(bad)))
			if err := f.u.deadLetter(ctx, l, bad); err != nil {
				f.queue = f.queue[:0]
				return false, err
			}
		}
		f.after[l] = recs[len(recs)-1].Seq
		if cap(f.queue) > cap(f.buf) {
			f.buf = f.queue[:cap(f.queue)]
		}
		if len(f.queue) > 0 {
			return true, nil
		}
	}
	return false, nil
}

// next removes and returns the next batch: consecutive records of one lane
// with the same topic, at most BatchSize of them and (unless a single one
// is larger) at most BatchBytes.
func (f *feeder) next() []Record {
	if len(f.queue) == 0 {
		return nil
	}
	n, size := 1, f.queue[0].size()
	var topic0 string
	perRecord := f.u.cfg.Type == TypeMQTT && !f.u.topic.fixed
	if perRecord {
		topic0 = f.u.topic.render(f.u.opts.Gateway, f.u.cfg.Name, &f.queue[0])
	}
	for n < len(f.queue) && n < f.u.cfg.BatchSize {
		s := f.queue[n].size()
		if size+s > f.u.cfg.BatchBytes {
			break
		}
		if perRecord && f.u.topic.render(f.u.opts.Gateway, f.u.cfg.Name, &f.queue[n]) != topic0 {
			break
		}
		size += s
		n++
	}
	batch := f.queue[:n:n]
	f.queue = f.queue[n:]
	return batch
}

// unread puts items back at the front of the queue.
func (f *feeder) unread(items []Record) {
	f.queue = append(append(make([]Record, 0, len(items)+len(f.queue)), items...), f.queue...)
}

// deadLetter moves recs of lane l to the dead lane, acknowledging them in
// l. Counted.
func (u *Uplink) deadLetter(ctx context.Context, l buffer.Lane, recs []buffer.Record) error {
	seqs := make([]uint64, len(recs))
	payloads := make([][]byte, len(recs))
	for i, r := range recs {
		seqs[i] = r.Seq
		payloads[i] = r.Payload
	}
	if err := u.ob.Append(ctx, buffer.LaneDead, payloads...); err != nil {
		u.c.errors.Add(1)
		return fmt.Errorf("uplink: dead-letter %d records of %s: %w", len(recs), l, err)
	}
	if err := u.ob.Ack(l, seqs...); err != nil {
		u.c.errors.Add(1)
		return fmt.Errorf("uplink: ack dead-lettered records of %s: %w", l, err)
	}
	u.c.dead.Add(uint64(len(recs)))
	u.log.Warn("records moved to the dead lane", "lane", l.String(), "count", len(recs), "first_id", recs[0].ID)
	return nil
}

// ---- acknowledging ----

// acker collects confirmed records and acknowledges them in the outbox in
// groups, off the sending path.
type acker struct {
	u       *Uplink
	mu      sync.Mutex
	pending [len(buffer.Lanes)][]uint64
	wake    chan struct{}
	ackMu   sync.Mutex // serialises flushes
	spare   [len(buffer.Lanes)][]uint64
}

func newAcker(u *Uplink) *acker {
	return &acker{u: u, wake: make(chan struct{}, 1)}
}

// add queues seqs of lane l for acknowledgement. It never blocks.
func (a *acker) add(l buffer.Lane, seqs ...uint64) {
	a.mu.Lock()
	a.pending[l] = append(a.pending[l], seqs...)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// backlog returns how many records wait for acknowledgement.
func (a *acker) backlog() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, p := range a.pending {
		n += len(p)
	}
	return n
}

// flush acknowledges everything queued so far; when it returns, every
// record passed to add before the call is acknowledged (or failed).
func (a *acker) flush() {
	a.ackMu.Lock()
	defer a.ackMu.Unlock()
	a.mu.Lock()
	a.pending, a.spare = a.spare, a.pending
	a.mu.Unlock()
	for l := range a.spare {
		seqs := a.spare[l]
		if len(seqs) == 0 {
			continue
		}
		if err := a.u.ob.Ack(buffer.Lane(l), seqs...); err != nil {
			// The records stay in the outbox and are sent again later:
			// a duplicate, never a loss.
			a.u.c.errors.Add(1)
			a.u.log.Error("outbox ack failed", "lane", buffer.Lane(l).String(), "count", len(seqs), "err", err)
		} else {
			a.u.c.acked.Add(uint64(len(seqs)))
		}
		a.spare[l] = seqs[:0]
	}
}

// run flushes whenever records are added, until ctx is done; then it
// flushes one last time.
func (a *acker) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			a.flush()
			return
		case <-a.wake:
			a.flush()
		}
	}
}

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// waitData blocks until the outbox signals new records, PollInterval
// passes, or ctx is done; it reports whether ctx is still live.
func (u *Uplink) waitData(ctx context.Context) bool {
	t := time.NewTimer(u.cfg.PollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-u.wakeup:
	case <-t.C:
	}
	return true
}

func seqsOf(items []Record) []uint64 {
	s := make([]uint64, len(items))
	for i := range items {
		s[i] = items[i].Seq
	}
	return s
}
