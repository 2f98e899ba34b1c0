package uplink

import (
	"context"
	"fmt"
	"os"
)

// runStdout writes one line per message (one record per line with the
// default batch size of 1) and acknowledges the records once written.
func (u *Uplink) runStdout(ctx context.Context) error {
	w := u.opts.Stdout
	if w == nil {
		w = os.Stdout
	}
	f := newFeeder(u)
	enc := u.enc
	enc.array = u.cfg.BatchSize > 1
	bo := backoff{min: u.cfg.Backoff.Min, max: u.cfg.Backoff.Max}
	u.setOnline()
	var buf []byte
	for ctx.Err() == nil {
		ok, err := f.fill(ctx)
		if err != nil {
			u.c.errors.Add(1)
			u.log.Error("stdout uplink", "err", err)
			if !sleep(ctx, bo.next()) {
				break
			}
			continue
		}
		if !ok {
			if !u.waitData(ctx) {
				break
			}
			continue
		}
		// Write everything queued (one lane), then acknowledge it at once.
		lane := f.queue[0].rec.Lane
		var seqs []uint64
		var werr error
		for batch := f.next(); batch != nil; batch = f.next() {
			buf = enc.appendPayload(buf[:0], batch)
			buf = append(buf, '\n')
			u.c.inflight.Add(int64(len(batch)))
			if _, werr = w.Write(buf); werr != nil {
				u.c.inflight.Add(-int64(len(batch)))
				break
			}
			u.c.messages.Add(1)
			u.c.sent.Add(uint64(len(batch)))
			u.c.bytes.Add(uint64(len(buf)))
			seqs = append(seqs, seqsOf(batch)...)
		}
		if len(seqs) > 0 {
			if err := u.ob.Ack(lane, seqs...); err != nil {
				u.c.errors.Add(1)
				u.log.Error("outbox ack failed", "lane", lane.String(), "err", err)
			} else {
				u.c.acked.Add(uint64(len(seqs)))
			}
			u.c.inflight.Add(-int64(len(seqs)))
		}
		if werr != nil {
			u.c.errors.Add(1)
			u.setOffline()
			u.log.Error("stdout uplink", "err", fmt.Errorf("uplink: write: %w", werr))
			f.rewind()
			if !sleep(ctx, bo.next()) {
				break
			}
			u.setOnline()
			continue
		}
		bo.reset()
	}
	return nil
}
