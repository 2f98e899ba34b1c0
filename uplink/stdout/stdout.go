package stdout

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/uplink"
)

// Transport writes one line per message to a writer.
type Transport struct {
	w   io.Writer
	buf []byte
}

var _ uplink.Transport = (*Transport)(nil)

// New returns a transport writing to w; nil means os.Stdout.
func New(w io.Writer) *Transport {
	if w == nil {
		w = os.Stdout
	}
	return &Transport{w: w}
}

// Session writes until ctx is done or a write fails. Everything queued
// (one lane) is written, then acknowledged at once.
func (t *Transport) Session(ctx context.Context, l *uplink.Link) (progressed bool, err error) {
	array := l.Config().BatchSize > 1
	l.Online()
	for ctx.Err() == nil {
		ok, err := l.Fill(ctx)
		if err != nil {
			l.CountError()
			l.Logger().Error("stdout uplink", "err", err)
			return progressed, err
		}
		if !ok {
			if !l.WaitData(ctx) {
				break
			}
			continue
		}
		// Write everything queued (one lane), then acknowledge it at once.
		var (
			lane buffer.Lane
			n    int
			werr error
		)
		for batch := l.Next(); batch != nil; batch = l.Next() {
			lane = batch[0].Lane
			t.buf = l.AppendPayload(t.buf[:0], batch, array)
			t.buf = append(t.buf, '\n')
			l.InFlight(len(batch))
			if _, werr = t.w.Write(t.buf); werr != nil {
				l.InFlight(-len(batch))
				break
			}
			l.Sent(len(batch), len(t.buf))
			l.Ack(lane, uplink.Seqs(batch)...)
			n += len(batch)
		}
		if n > 0 {
			l.FlushAcks()
			l.InFlight(-n)
		}
		if werr != nil {
			l.CountError()
			l.Offline()
			err := fmt.Errorf("stdout: write: %w", werr)
			l.Logger().Error("stdout uplink", "err", err)
			return progressed, err
		}
		progressed = true
	}
	return progressed, nil
}
