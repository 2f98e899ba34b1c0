package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/decode"
	"github.com/sensorgate/sensorgate/ingest/mqttsub"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// localDurable runs the gateway's own durable QoS 1 source on the
// broker's private listener, with the InFlight the broker advises.
func localDurable(t *testing.T, b *Broker, out chan ingest.Reading) *mqttsub.Subscriber {
	t.Helper()
	url, user, pass := b.LocalClient()
	seg := 1
	sub, err := mqttsub.New(mqttsub.Config{Broker: url, Username: user, Password: pass, ClientID: "sensorgate-local",
		InFlight: b.LocalInFlight(), QueueSize: 8192, Subscriptions: []mqttsub.Subscription{
			{Topic: "sensors/+/telemetry", QoS: 1, JSON: decode.JSONMapping{SensorTopicSegment: &seg}},
		}}, mqttsub.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx, out) }()
	t.Cleanup(func() { cancel(); <-done })
	mqtttest.WaitFor(t, 20*time.Second, func() bool { return sub.Stats().Subscribed > 0 }, "the local subscription")
	return sub
}

// With its acknowledgements held until a commit, the gateway's own durable
// source is not throttled by the embedded broker: thousands of messages
// arrive while none is acknowledged, and nothing is dropped.
func TestLocalDurableSourceIsNotThrottled(t *testing.T) {
	checkNoLeak(t)
	b := start(t, Config{Listen: "127.0.0.1:0"})
	if got := b.LocalInFlight(); got != 1024 {
		t.Errorf("LocalInFlight = %d, want 1024", got)
	}
	out := make(chan ingest.Reading, 8192)
	sub := localDurable(t, b, out)
	node := mustConnect(t, "tcp://"+b.Addr(), "", "", nil)
	const n = 3000
	for i := range n {
		if err := node.pub(t, "sensors/n1/telemetry", 1, fmt.Sprintf(`{"v":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	mqtttest.WaitFor(t, 20*time.Second, func() bool { return sub.Stats().Received == n }, "every message with no PUBACK sent")
	if st := sub.Stats(); st.PendingAcks != n || st.DurableAcked != 0 {
		t.Fatalf("subscriber %+v", st)
	}
	for range n {
		r := <-out
		r.Receipt.Committed(nil)
	}
	mqtttest.WaitFor(t, 20*time.Second, func() bool { return sub.Stats().DurableAcked == n }, "every PUBACK")
	if st := b.Stats(); st.InflightDropped != 0 || st.MessagesDropped != 0 {
		t.Errorf("broker dropped: %+v", st)
	}
}

// max_inflight is applied: with acknowledgements held, the broker keeps
// that many for the client and drops (and counts) the rest.
func TestMaxInflightIsApplied(t *testing.T) {
	checkNoLeak(t)
	b := start(t, Config{Listen: "127.0.0.1:0", MaxInflight: 100})
	if got := b.LocalInFlight(); got != 25 {
		t.Errorf("LocalInFlight = %d, want 25", got)
	}
	out := make(chan ingest.Reading, 1024)
	sub := localDurable(t, b, out)
	node := mustConnect(t, "tcp://"+b.Addr(), "", "", nil)
	for i := range 300 {
		if err := node.pub(t, "sensors/n1/telemetry", 1, fmt.Sprintf(`{"v":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	mqtttest.WaitFor(t, 20*time.Second, func() bool { return b.Stats().InflightDropped == 200 }, "the drops over max_inflight")
	if st := sub.Stats(); st.Received != 100 {
		t.Errorf("subscriber received %d, want 100: %+v", st.Received, st)
	}
}

func TestConfigInflightRanges(t *testing.T) {
	for _, c := range []Config{{MaxInflight: 65536}, {ReceiveMaximum: -1}, {MaxWritesPending: 1 << 21}} {
		c.Defaults()
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	var c Config
	c.Defaults()
	if c.MaxInflight != DefaultMaxInflight || c.ReceiveMaximum != DefaultReceiveMaximum || c.MaxWritesPending != DefaultMaxWritesPending {
		t.Errorf("defaults %+v", c)
	}
}
