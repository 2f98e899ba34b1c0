package mqttsub

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// Stopping Run must hand on what is already queued: those messages were
// received but not acknowledged, and a clean session's broker forgets them
// when the client goes. (The end-to-end benchmark lost 914 QoS 1 readings
// at a SIGTERM this way.)
func TestStopHandsOnWhatIsQueued(t *testing.T) {
	checkNoLeak(t)
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	addr := b.Addr()
	s := newSub(t, Config{Broker: "tcp://" + addr, QueueSize: 32, Subscriptions: []Subscription{jsonSub("q/+", 1, 1)}})
	out := make(chan ingest.Reading) // stalled until the stop
	stop := running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "subscription")
	for i := range 200 {
		if err := b.Publish("q/x", payload(1714564800, "v", i), false, 1); err != nil {
			t.Fatal(err)
		}
	}
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Queued == 32 }, "the queue to fill")
	// The pipeline behind out keeps reading while the source stops (the
	// gateway closes it only after every source returned).
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case r := <-out:
				r.Receipt.Committed(nil)
				got.Add(1)
			case <-time.After(5 * time.Second):
				return
			}
		}
	}()
	stop()
	if n := got.Load(); n < 32 {
		t.Fatalf("%d readings handed on after the stop, want at least the 32 queued", n)
	}
	if st := s.Stats(); st.Readings != uint64(got.Load()) {
		t.Errorf("stats count %d readings, out got %d", st.Readings, got.Load())
	}
	<-done
}

// QoS 0 payload bytes waiting in the queue are capped by queue_bytes, so
// big payloads cannot turn the queue into a memory problem.
func TestQoS0QueueBytesBound(t *testing.T) {
	checkNoLeak(t)
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	addr := b.Addr()
	s := newSub(t, Config{Broker: "tcp://" + addr, QueueSize: 1000, QueueBytes: 1000, Subscriptions: []Subscription{jsonSub("q/+", 0, 1)}})
	out := make(chan ingest.Reading)
	running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "subscription")
	big := payload(1714564800, "v", 1, "pad", `"`+strings.Repeat("x", 280)+`"`) // ~300 bytes
	const n = 20
	for range n {
		if err := b.Publish("q/x", big, false, 0); err != nil {
			t.Fatal(err)
		}
	}
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Received == n }, "all messages received")
	st := s.Stats()
	if int(st.Queued)*len(big) > 1000 || st.Queued == 0 {
		t.Fatalf("%d messages of %d bytes queued with queue_bytes 1000", st.Queued, len(big))
	}
	// Each message is queued, dropped, or the one Run holds while it waits
	// for out.
	if held := n - st.Dropped - uint64(st.Queued); held > 1 {
		t.Fatalf("dropped %d and queued %d of %d: %+v", st.Dropped, st.Queued, n, st)
	}
}
