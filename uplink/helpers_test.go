package uplink

import (
	"context"
	"errors"
	"sync"
)

// lineTransport is the smallest transport: it encodes each batch as one
// line and confirms it at once. A session fails after failAfter messages
// while fails > 0, to drive the core's restart path.
type lineTransport struct {
	mu        sync.Mutex
	lines     []string
	sessions  int
	fails     int
	failAfter int
}

var errLineFail = errors.New("line transport: failing as told")

func (t *lineTransport) Session(ctx context.Context, l *Link) (bool, error) {
	t.mu.Lock()
	t.sessions++
	t.mu.Unlock()
	l.Connected()
	defer l.Disconnected()
	sent := 0
	for ctx.Err() == nil {
		ok, err := l.Fill(ctx)
		if err != nil {
			return sent > 0, err
		}
		if !ok {
			l.WaitData(ctx)
			continue
		}
		batch := l.Next()
		t.mu.Lock()
		if t.fails > 0 && sent == t.failAfter {
			t.fails--
			t.mu.Unlock()
			return sent > 0, errLineFail
		}
		b := l.AppendPayload(nil, batch, len(batch) > 1)
		t.lines = append(t.lines, string(b))
		t.mu.Unlock()
		l.Sent(len(batch), len(b))
		l.Ack(batch[0].Lane, Seqs(batch)...)
		sent++
	}
	return sent > 0, nil
}

func (t *lineTransport) snapshot() (lines []string, sessions int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.lines...), t.sessions
}
