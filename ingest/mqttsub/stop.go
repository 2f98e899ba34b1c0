package mqttsub

import (
	"context"
	"sync"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
)

// How long drain waits for the queue to stay empty, and at most.
const (
	drainQuiet = 100 * time.Millisecond
	drainMax   = 3 * time.Second
)

// drain hands on what is already queued when Run is told to stop. Those
// messages were received but not yet acknowledged: returning without them
// would lose them (a clean session's broker forgets unacknowledged
// messages when the client goes) while the pipeline behind out is still
// running. It stops when the queue has stayed empty for drainQuiet (a paho
// handler waiting for room gets to put its message in first), or after
// drainMax if the broker keeps sending; what is left then is not
// acknowledged (a persistent session gets it again at the next connect).
func (s *Subscriber) drain(ctx context.Context, queue chan item, out chan<- ingest.Reading, buf []ingest.Reading, acks *ackQueue) {
	quiet := time.NewTimer(drainQuiet)
	defer quiet.Stop()
	for {
		select {
		case it := <-queue:
			var ok bool
			if buf, ok = s.handle(ctx, it, buf[:0], out, acks); !ok {
				return
			}
			quiet.Reset(drainQuiet)
		case <-quiet.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// hookGroup tracks paho callbacks that may run for a while (the subscribe
// in OnConnect) so that Run can wait for them before returning.
type hookGroup struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (h *hookGroup) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.wg.Add(1)
	return true
}

func (h *hookGroup) leave() { h.wg.Done() }

func (h *hookGroup) closeAndWait() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.wg.Wait()
}
