package mqttsub

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/decode"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

func newSub(t *testing.T, cfg Config) *Subscriber {
	t.Helper()
	s, err := New(cfg, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestWildcardSubscriptionsAndMappings(t *testing.T) {
	checkNoLeak(t)
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	addr := b.Addr()

	cfg := Config{
		Broker: "tcp://" + addr,
		Subscriptions: []Subscription{
			jsonSub("site/+/telemetry", 0, 1),
			{Topic: "env/#", QoS: 1, JSON: decode.JSONMapping{SensorField: "dev.id", TimeField: "t", TimeFormat: decode.TimeRFC3339,
				Metrics: map[string]decode.MetricField{"temperature": {Field: "dev.temp", Unit: "°C"}}}},
		},
	}
	s := newSub(t, cfg)
	out := make(chan ingest.Reading, 16)
	stop := running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Connected }, "connection")
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "subscription")

	ts := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	if err := b.Publish("site/gh-1/telemetry", payload(ts.Unix(), "temp", 21.5), false, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish("env/hall/a", []byte(`{"dev":{"id":"hall-3","temp":19},"t":"2024-05-01T12:00:00Z"}`), false, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish("other/x", payload(1, "temp", 1), false, 0); err != nil { // not subscribed
		t.Fatal(err)
	}
	got := collect(t, out, 2)
	slices.SortFunc(got, func(a, b ingest.Reading) int { return strings.Compare(a.Sensor, b.Sensor) })
	want := []ingest.Reading{
		{Sensor: "gh-1", Metric: "temp", Value: 21.5, Time: ts.UnixNano()},
		{Sensor: "hall-3", Metric: "temperature", Value: 19, Unit: "°C", Time: ts.UnixNano()},
	}
	for i := range want {
		got[i].Arrival = 0
		if got[i] != want[i] {
			t.Errorf("reading %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	stop()
	st := s.Stats()
	if st.Received != 2 || st.Readings != 2 || st.Connected {
		t.Errorf("stats %+v", st)
	}
}

func TestBadPayloadsCountedAndSkipped(t *testing.T) {
	checkNoLeak(t)
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	addr := b.Addr()
	cfg := Config{Broker: "tcp://" + addr, MaxPayload: 1024, Subscriptions: []Subscription{
		{Topic: "s/+", QoS: 1, JSON: decode.JSONMapping{SensorField: "id", TimeField: "ts",
			Metrics: map[string]decode.MetricField{"v": {}}}},
	}}
	s := newSub(t, cfg)
	out := make(chan ingest.Reading, 64)
	running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "subscription")

	msgs := []struct {
		payload string
		reason  string
	}{
		{`{"id":"a","v":1}`, ""},
		{`{"id":"a","v":`, decode.ReasonMalformed},
		{`{"v":2}`, decode.ReasonNoSensor},
		{`{"id":"a","x":2}`, decode.ReasonNoMetrics},
		{`{"id":"a","v":"hot"}`, decode.ReasonBadValue},
		{`{"id":"a","v":3,"ts":"soon"}`, decode.ReasonBadTime},
		{`{"id":"a","v":4,"pad":"` + strings.Repeat("x", 2000) + `"}`, decode.ReasonTooLarge},
		{`{"id":"b","v":5}`, ""},
	}
	want := map[string]uint64{}
	for _, m := range msgs {
		if err := b.Publish("s/x", []byte(m.payload), false, 1); err != nil {
			t.Fatal(err)
		}
		if m.reason != "" {
			want[m.reason]++
		}
	}
	got := collect(t, out, 2)
	if got[0].Sensor != "a" || got[0].Value != 1 || got[1].Sensor != "b" || got[1].Value != 5 {
		t.Errorf("readings %+v", got)
	}
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Received == uint64(len(msgs)) }, "all messages")
	mqtttest.WaitFor(t, waitLimit, func() bool {
		st := s.Stats()
		for r, n := range want {
			if st.DecodeErrors[r] != n {
				return false
			}
		}
		return true
	}, "error counts")
}

func TestQoS0OverloadDropsAndCounts(t *testing.T) {
	checkNoLeak(t)
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	addr := b.Addr()
	s := newSub(t, Config{Broker: "tcp://" + addr, QueueSize: 4, Subscriptions: []Subscription{jsonSub("q/+", 0, 1)}})
	out := make(chan ingest.Reading) // nobody reads yet: Run blocks on the first reading
	running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "subscription")
	const n = 50
	for i := range n {
		if err := b.Publish("q/x", payload(1714564800+int64(i), "v", i), false, 0); err != nil {
			t.Fatal(err)
		}
	}
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Received == n }, "all messages received")
	st := s.Stats()
	if st.Dropped == 0 {
		t.Fatalf("nothing dropped with a full queue: %+v", st)
	}
	kept := int(n - st.Dropped)
	got := collect(t, out, kept)
	for i := 1; i < len(got); i++ {
		if got[i].Value <= got[i-1].Value {
			t.Errorf("out of order: %v after %v", got[i].Value, got[i-1].Value)
		}
	}
	select {
	case r := <-out:
		t.Errorf("extra reading %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	if st := s.Stats(); st.Readings != uint64(kept) || st.Readings+st.Dropped != n {
		t.Errorf("stats %+v", st)
	}
}

func TestQoS1HoldsAckInsteadOfDropping(t *testing.T) {
	checkNoLeak(t)
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	addr := b.Addr()
	s := newSub(t, Config{Broker: "tcp://" + addr, QueueSize: 2, Subscriptions: []Subscription{jsonSub("q/+", 1, 1)}})
	out := make(chan ingest.Reading)
	running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "subscription")
	const n = 300
	for i := range n {
		if err := b.Publish("q/x", payload(1714564800, "v", i), false, 1); err != nil {
			t.Fatal(err)
		}
	}
	// Let the broker push what it can into the stalled subscriber.
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Queued == 2 }, "the queue to fill")
	got := collect(t, out, n)
	seen := map[float64]bool{}
	for _, r := range got {
		seen[r.Value] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct readings, want %d", len(seen), n)
	}
	if st := s.Stats(); st.Dropped != 0 {
		t.Errorf("QoS 1 messages dropped: %+v", st)
	}
}

func TestBrokerRestartResumes(t *testing.T) {
	checkNoLeak(t)
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	addr := b.Addr()
	s := newSub(t, Config{Broker: "tcp://" + addr, KeepAlive: 2 * time.Second, Subscriptions: []Subscription{jsonSub("r/+", 1, 1)}})
	out := make(chan ingest.Reading, 16)
	running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "subscription")
	if err := b.Publish("r/before", payload(1714564800, "v", 1), false, 1); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, out, 1); got[0].Sensor != "before" {
		t.Fatalf("got %+v", got)
	}

	b.Stop()
	mqtttest.WaitFor(t, waitLimit, func() bool { return !s.Stats().Connected }, "disconnect")
	b.Start() // a fresh broker on the same address: no session, no subscriptions
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Subscribed > 1 }, "re-subscription")
	if err := b.Publish("r/after", payload(1714564801, "v", 2), false, 1); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, out, 1); got[0].Sensor != "after" {
		t.Fatalf("got %+v", got)
	}
	if st := s.Stats(); st.Reconnects < 1 || !st.Connected {
		t.Errorf("stats %+v", st)
	}
}

func TestBrokerDownAtStartKeepsRetrying(t *testing.T) {
	checkNoLeak(t)
	addr := mqtttest.FreeAddr(t)
	s := newSub(t, Config{Broker: "tcp://" + addr, ConnectTimeout: time.Second, MaxReconnectInterval: time.Second,
		Subscriptions: []Subscription{jsonSub("d/+", 0, 1)}})
	out := make(chan ingest.Reading, 16)
	running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().ConnectFailures > 0 }, "a failed attempt")
	if s.LastError() == nil {
		t.Fatal("no LastError after a failed connect")
	}
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{Addr: addr})
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "subscription")
	if err := b.Publish("d/late", payload(1714564800, "v", 1), false, 0); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, out, 1); got[0].Sensor != "late" {
		t.Fatalf("got %+v", got)
	}
}

func TestWrongPasswordRefused(t *testing.T) {
	checkNoLeak(t)
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{Ledger: &auth.Ledger{Auth: auth.AuthRules{{Username: "gw", Password: "right", Allow: true}}}})
	addr := b.Addr()
	dir := t.TempDir()
	pw := dir + "/pw"
	if err := writeFile(pw, "wrong\n"); err != nil {
		t.Fatal(err)
	}
	s := newSub(t, Config{Broker: "tcp://" + addr, Username: "gw", PasswordFile: pw, ConnectTimeout: time.Second,
		MaxReconnectInterval: time.Second, Subscriptions: []Subscription{jsonSub("a/+", 0, 1)}})
	out := make(chan ingest.Reading, 1)
	stop := running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().ConnectFailures > 0 }, "refusal")
	err := s.LastError()
	if !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) && !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		t.Fatalf("LastError = %v, want a bad-credentials refusal", err)
	}
	if strings.Contains(err.Error(), "wrong") || strings.Contains(fmt.Sprint(s.cfg), "wrong") {
		t.Errorf("password leaked: %v", err)
	}
	stop()

	if err := writeFile(pw, "right\n"); err != nil {
		t.Fatal(err)
	}
	s = newSub(t, Config{Broker: "tcp://" + addr, Username: "gw", PasswordFile: pw, Subscriptions: []Subscription{jsonSub("a/+", 0, 1)}})
	running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Connected }, "connection with the right password")
}

// The password file is read again at every connect: a rotated password
// is used by the next attempt, without a restart.
func TestRotatedPasswordFile(t *testing.T) {
	checkNoLeak(t)
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{Ledger: &auth.Ledger{Auth: auth.AuthRules{{Username: "gw", Password: "new", Allow: true}}}})
	addr := b.Addr()
	pw := t.TempDir() + "/pw"
	if err := writeFile(pw, "old\n"); err != nil {
		t.Fatal(err)
	}
	s := newSub(t, Config{Broker: "tcp://" + addr, Username: "gw", PasswordFile: pw, ConnectTimeout: time.Second,
		MaxReconnectInterval: time.Second, Subscriptions: []Subscription{jsonSub("a/+", 0, 1)}})
	out := make(chan ingest.Reading, 1)
	running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().ConnectFailures > 0 }, "refusal of the old password")
	if err := writeFile(pw, "new\n"); err != nil {
		t.Fatal(err)
	}
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "connection with the rotated password")
}

func TestRunTwice(t *testing.T) {
	s := newSub(t, Config{Broker: "tcp://" + mqtttest.FreeAddr(t), Subscriptions: []Subscription{jsonSub("a/+", 0, 1)}})
	out := make(chan ingest.Reading)
	running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.running.Load() }, "Run to start")
	if err := s.Run(t.Context(), out); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v", err)
	}
}

// TestStopWhileBrokerDoesNotAnswer: a "broker" that accepts TCP but never
// sends CONNACK must not hold up Run's return after cancel (connect_timeout
// is set far beyond the 20 s the helper waits for Run to return).
func TestStopWhileBrokerDoesNotAnswer(t *testing.T) {
	checkNoLeak(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	s := newSub(t, Config{Broker: "tcp://" + l.Addr().String(), ConnectTimeout: time.Minute, Subscriptions: []Subscription{jsonSub("a/+", 0, 1)}})
	stop := running(t, s, make(chan ingest.Reading))
	var c net.Conn
	select {
	case c = <-accepted:
	case <-time.After(20 * time.Second):
		t.Fatal("no connection attempt")
	}
	defer c.Close()
	stop() // fails the test if Run does not return within 20 s
}
