package main

import (
	"context"
	"errors"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
)

// outboxSink encodes what the rules emit and queues it in the outbox lane
// for its kind. Enqueue copies the payload, so one buffer is reused; the
// engine calls the sink from one goroutine.
type outboxSink struct {
	ob  *buffer.Outbox
	buf *[]byte
}

func newOutboxSink(ob *buffer.Outbox) outboxSink {
	b := make([]byte, 0, 512)
	return outboxSink{ob: ob, buf: &b}
}

func (s outboxSink) Summary(ctx context.Context, sum *ingest.Summary) error {
	b, err := ingest.AppendSummary((*s.buf)[:0], sum)
	if err != nil {
		return err
	}
	*s.buf = b
	return s.enqueue(ctx, buffer.LaneSummaries, b)
}

func (s outboxSink) Alert(ctx context.Context, a *ingest.Alert) error {
	b, err := ingest.AppendAlert((*s.buf)[:0], a)
	if err != nil {
		return err
	}
	*s.buf = b
	return s.enqueue(ctx, buffer.LaneAlerts, b)
}

// enqueue hands a record to the outbox. A lane with the reject policy that
// is at its cap refuses it with ErrFull: that is the lane's declared drop,
// already counted by the outbox (reason "full"), so the pipeline goes on
// rather than stopping the gateway. Any other error stops the pipeline.
func (s outboxSink) enqueue(ctx context.Context, lane buffer.Lane, b []byte) error {
	err := s.ob.Enqueue(ctx, lane, b)
	if errors.Is(err, buffer.ErrFull) {
		return nil
	}
	return err
}

// outboxDepth is what the uplinks still have to deliver (the dead-letter
// lane is kept for inspection, not delivered).
func outboxDepth(ob *buffer.Outbox) int64 {
	st := ob.Stats()
	n := int64(st.Pending)
	for _, l := range st.Lanes {
		if l.Lane != buffer.LaneDead {
			n += l.Depth
		}
	}
	return n
}
