package mqttsub

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// testBroker is one of the real brokers the durable tests run against.
type testBroker struct {
	addr     string
	publish  func(t *testing.T, topic string, payload []byte) // QoS 1, returns once the broker has it
	publish2 func(t *testing.T, topic string, payload []byte) // QoS 2
	mosq     *mqtttest.Mosquitto                              // nil for mochi
}

// eachBroker runs fn against the in-process mochi broker and against
// mosquitto (with persistence), each in a subtest with its own leak check.
func eachBroker(t *testing.T, conf string, fn func(t *testing.T, b testBroker)) {
	t.Run("mochi", func(t *testing.T) {
		checkNoLeak(t)
		m := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
		fn(t, testBroker{addr: m.Addr(), publish: func(t *testing.T, topic string, p []byte) {
			t.Helper()
			if err := m.Publish(topic, p, false, 1); err != nil {
				t.Fatal(err)
			}
		}, publish2: func(t *testing.T, topic string, p []byte) {
			t.Helper()
			if err := m.Publish(topic, p, false, 2); err != nil {
				t.Fatal(err)
			}
		}})
	})
	t.Run("mosquitto", func(t *testing.T) {
		checkNoLeak(t)
		m := mqtttest.StartMosquitto(t, mqtttest.MosquittoConfig{Conf: "allow_anonymous true\n" + conf, Persistence: true})
		pub := publisher(t, m.URL(), "", "")
		fn(t, testBroker{addr: m.Addr(), mosq: m, publish: func(t *testing.T, topic string, p []byte) {
			t.Helper()
			publish(t, pub, topic, 1, p)
		}, publish2: func(t *testing.T, topic string, p []byte) {
			t.Helper()
			publish(t, pub, topic, 2, p)
		}})
	})
}

// durableConfig is a durable QoS 1 subscription (the defaults: durable,
// persistent session) with a fixed client id.
func durableConfig(url, clientID string) Config {
	return Config{Broker: url, ClientID: clientID, MaxReconnectInterval: time.Second,
		Subscriptions: []Subscription{jsonSub("d/+", 1, 1)}}
}

func startDurable(t *testing.T, cfg Config, opts Options, out chan ingest.Reading) (*Subscriber, func()) {
	t.Helper()
	opts.Logger = testLogger(t)
	s, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "the SUBACK")
	return s, stop
}

func receiptID(t *testing.T, r ingest.Reading) uint16 {
	t.Helper()
	if r.Receipt == nil || len(r.Receipt.Key) < 2 || len(r.Receipt.Value) != 8 {
		t.Fatalf("reading %+v has no usable receipt", r)
	}
	return binary.BigEndian.Uint16(r.Receipt.Key[len(r.Receipt.Key)-2:])
}

func values(rs []ingest.Reading) []float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = r.Value
	}
	sort.Float64s(v)
	return v
}

// Receipts completed out of order still acknowledge (PUBACK, or PUBREC at
// QoS 2) in receive order, and only up to the first one not completed.
func TestDurableAcksInReceiveOrder(t *testing.T) {
	t.Run("qos1", func(t *testing.T) { testAcksInReceiveOrder(t, 1) })
	t.Run("qos2", func(t *testing.T) { testAcksInReceiveOrder(t, 2) })
}

func testAcksInReceiveOrder(t *testing.T, qos byte) {
	eachBroker(t, "", func(t *testing.T, b testBroker) {
		p := startAckProxy(t, b.addr)
		out := make(chan ingest.Reading, 64)
		cfg := durableConfig(p.URL(), "gw-order")
		cfg.Subscriptions[0].QoS = qos
		s, _ := startDurable(t, cfg, Options{}, out)
		pub := b.publish
		if qos == 2 {
			pub = b.publish2
		}
		for i := range 5 {
			pub(t, "d/x", payload(1714564800, "v", i))
		}
		rs := collectHeld(t, out, 5)
		var ids []uint16
		for i, r := range rs {
			if r.Value != float64(i) {
				t.Fatalf("reading %d: %+v", i, r)
			}
			ids = append(ids, receiptID(t, r))
		}
		if want := StatePrefix("gw-order"); !bytes.HasPrefix(rs[0].Receipt.Key, want) {
			t.Errorf("receipt key %q, want prefix %q", rs[0].Receipt.Key, want)
		}
		if st := s.Stats(); st.PendingAcks != 5 || len(p.Acks()) != 0 {
			t.Fatalf("before any commit: %d acks sent, stats %+v", len(p.Acks()), st)
		}
		rs[2].Receipt.Done(nil)
		rs[0].Receipt.Done(nil)
		mqtttest.WaitFor(t, waitLimit, func() bool { return len(p.Acks()) >= 1 }, "the first PUBACK")
		rs[4].Receipt.Done(nil)
		rs[1].Receipt.Done(nil)
		mqtttest.WaitFor(t, waitLimit, func() bool { return len(p.Acks()) >= 3 }, "PUBACKs 2 and 3")
		rs[3].Receipt.Done(nil)
		mqtttest.WaitFor(t, waitLimit, func() bool { return len(p.Acks()) >= 5 }, "the last PUBACKs")
		if got := p.Acks(); !slices.Equal(got, ids) {
			t.Fatalf("PUBACKs in order %v, want the receive order %v", got, ids)
		}
		if st := s.Stats(); st.DurableAcked != 5 || st.PendingAcks != 0 || st.Redelivered != 0 {
			t.Errorf("stats %+v", st)
		}
	})
}

// A message is not acknowledged before its receipt is done: mosquitto's
// in-flight window holds at max_inflight_messages until the first receipt
// is done, and what was pending when the subscriber stopped comes again to
// the next one.
func TestDurableAckWithheldUntilDone(t *testing.T) {
	eachBroker(t, "max_inflight_messages 2", func(t *testing.T, b testBroker) {
		p := startAckProxy(t, b.addr)
		out := make(chan ingest.Reading, 64)
		cfg := durableConfig(p.URL(), "gw-withheld")
		s, stop := startDurable(t, cfg, Options{}, out)
		for i := range 6 {
			b.publish(t, "d/x", payload(1714564800, "v", i))
		}
		n := 6 // mochi has no window for MQTT 3.1.1 clients
		if b.mosq != nil {
			n = 2
		}
		rs := collectHeld(t, out, n)
		if st := s.Stats(); st.Received != uint64(n) || st.PendingAcks != int64(n) || len(p.Acks()) != 0 {
			t.Fatalf("before any commit: acks %v, stats %+v", p.Acks(), st)
		}
		first := receiptID(t, rs[0])
		rs[0].Receipt.Done(nil)
		if b.mosq != nil { // one PUBACK moves the window
			mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Received > 2 }, "the window to move")
		} else {
			mqtttest.WaitFor(t, waitLimit, func() bool { return len(p.Acks()) == 1 }, "the PUBACK")
		}
		if got := p.Acks(); !slices.Equal(got, []uint16{first}) {
			t.Fatalf("PUBACKs %v, want only %d", got, first)
		}
		stop() // the rest stays pending: not acknowledged
		if st := s.Stats(); st.DurableAcked != 1 || st.PendingAcks != int64(st.Received-1) {
			t.Errorf("stats at stop %+v", st)
		}

		out2 := make(chan ingest.Reading, 64)
		s2, _ := startDurable(t, cfg, Options{}, out2)
		got := collect(t, out2, 5)
		if v := values(got); !slices.Equal(v, []float64{1, 2, 3, 4, 5}) {
			t.Fatalf("next subscriber got values %v, want 1..5 (0 was acknowledged)", v)
		}
		if st := s2.Stats(); st.Redelivered != 0 {
			t.Errorf("uncommitted messages taken for committed ones: %+v", st)
		}
	})
}

// Committed messages whose PUBACKs never reached the broker come again
// (DUP=1) after a reconnect: recognised, counted once, acknowledged, not
// handed on again.
func TestDurableRedeliveryRecognised(t *testing.T) {
	eachBroker(t, "", func(t *testing.T, b testBroker) {
		p := startAckProxy(t, b.addr)
		out := make(chan ingest.Reading, 64)
		s, _ := startDurable(t, durableConfig(p.URL(), "gw-redeliver"), Options{}, out)
		const n = 5
		for i := range n {
			b.publish(t, "d/x", payload(1714564800, "v", i))
		}
		rs := collectHeld(t, out, n)
		p.Swallow()
		for _, r := range rs {
			r.Receipt.Done(nil)
		}
		mqtttest.WaitFor(t, waitLimit, func() bool { return p.Swallowed() == n }, "the PUBACKs to be swallowed")
		p.Cut()
		mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Redelivered == n }, "the redeliveries to be recognised")
		mqtttest.WaitFor(t, waitLimit, func() bool { return len(p.Acks()) == 2*n }, "the redeliveries to be acknowledged")
		if st := s.Stats(); st.Readings != n || len(out) != 0 || st.Reconnects < 1 {
			t.Fatalf("redelivered messages handed on again: %d readings in out, stats %+v", len(out), st)
		}
		// The stream goes on.
		b.publish(t, "d/x", payload(1714564800, "v", 99))
		if r := collect(t, out, 1)[0]; r.Value != 99 {
			t.Fatalf("after the redeliveries: %+v", r)
		}
	})
}

// A receipt completed with an error leaves its message and those after
// it unacknowledged and cuts the connection: the broker delivers them
// again; the committed one among them is recognised, the failed one comes
// through again.
func TestDurableDoneErrorRedelivers(t *testing.T) {
	eachBroker(t, "", func(t *testing.T, b testBroker) {
		p := startAckProxy(t, b.addr)
		out := make(chan ingest.Reading, 64)
		s, _ := startDurable(t, durableConfig(p.URL(), "gw-fail"), Options{}, out)
		for i := range 3 {
			b.publish(t, "d/x", payload(1714564800, "v", i))
		}
		rs := collectHeld(t, out, 3)
		first := receiptID(t, rs[0])
		rs[0].Receipt.Done(nil)
		mqtttest.WaitFor(t, waitLimit, func() bool { return len(p.Acks()) == 1 }, "the first PUBACK")
		rs[2].Receipt.Done(nil)
		rs[1].Receipt.Done(errors.New("disk full"))
		again := collect(t, out, 1)[0]
		if again.Value != 1 {
			t.Fatalf("redelivered reading %+v, want the failed message (v=1)", again)
		}
		mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Redelivered == 1 }, "the committed message to be recognised")
		mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().PendingAcks == 0 && len(p.Acks()) == 3 }, "the acks")
		if st := s.Stats(); st.AckFailures != 1 || st.Reconnects < 1 || st.Readings != 4 {
			t.Errorf("stats %+v", st)
		}
		if got := p.Acks()[0]; got != first {
			t.Errorf("first PUBACK for %d, want %d", got, first)
		}
	})
}

// stateMap stands in for the outbox's state bucket: the engine writes a
// receipt's Key/Value with its commit; a new process loads them.
type stateMap struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *stateMap) commit(r *ingest.Receipt) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[string(r.Key)] = append([]byte(nil), r.Value...)
	s.mu.Unlock()
	r.Committed(nil)
}

func (s *stateMap) load(prefix []byte, fn func(k, v []byte) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.m))
	for k := range s.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if bytes.HasPrefix([]byte(k), prefix) {
			if err := fn([]byte(k), s.m[k]); err != nil {
				return err
			}
		}
	}
	return nil
}

// Across a restart: a new Subscriber that loads the committed messages
// through Options.State recognises their redelivery; the messages whose
// receipts were never completed are handed on again. The first Run stops
// promptly with receipts pending, leaving them unacknowledged.
func TestDurableRestartLoadsState(t *testing.T) {
	eachBroker(t, "", func(t *testing.T, b testBroker) {
		p := startAckProxy(t, b.addr)
		out := make(chan ingest.Reading, 64)
		cfg := durableConfig(p.URL(), "gw-restart")
		s, stop := startDurable(t, cfg, Options{}, out)
		const committed, uncommitted = 4, 2
		for i := range committed + uncommitted {
			b.publish(t, "d/x", payload(1714564800, "v", i))
		}
		rs := collectHeld(t, out, committed+uncommitted)
		var state stateMap
		state.commit(&ingest.Receipt{Key: []byte("src/mqtt/gw-other/\x00\x01"), Value: make([]byte, 8)}) // another source's
		p.Swallow()
		for _, r := range rs[:committed] {
			state.commit(r.Receipt)
		}
		mqtttest.WaitFor(t, waitLimit, func() bool { return p.Swallowed() == committed }, "the PUBACKs to be swallowed")
		stop() // with 2 receipts pending
		p.Cut()
		if st := s.Stats(); st.PendingAcks != uncommitted {
			t.Fatalf("stats at stop %+v", st)
		}
		if b.mosq != nil { // the broker restarts too, from its persistence file
			b.mosq.Stop()
			if err := b.mosq.Restart(); err != nil {
				t.Fatal(err)
			}
		}

		s2, _ := startDurable(t, cfg, Options{State: state.load}, out)
		got := collect(t, out, uncommitted)
		if v := values(got); !slices.Equal(v, []float64{4, 5}) {
			t.Fatalf("after the restart: values %v, want the uncommitted 4 and 5", v)
		}
		mqtttest.WaitFor(t, waitLimit, func() bool { return s2.Stats().Redelivered == committed }, fmt.Sprintf("%d recognised redeliveries", committed))
		if st := s2.Stats(); st.Readings != uncommitted {
			t.Errorf("stats %+v", st)
		}
	})
}

// A message handed on before a connection ended may still wait for its
// commit when the broker delivers it again on the next connection: Run
// does not reconnect before every receipt is settled, so that the
// redelivery finds the commit.
func TestDurableReconnectWaitsForCommits(t *testing.T) {
	eachBroker(t, "", func(t *testing.T, b testBroker) {
		p := startAckProxy(t, b.addr)
		out := make(chan ingest.Reading, 64)
		var logs mqtttest.SyncBuffer
		s, err := New(durableConfig(p.URL(), "gw-wait"), Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		s.settleLogEvery = 20 * time.Millisecond
		running(t, s, out)
		mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "the SUBACK")
		const n = 3
		for i := range n {
			b.publish(t, "d/x", payload(1714564800, "v", i))
		}
		rs := collectHeld(t, out, n)
		p.Cut() // the connection goes with the receipts pending
		mqtttest.WaitFor(t, waitLimit, func() bool { return strings.Contains(logs.String(), "before connecting again") }, "Run to wait for the commits")
		if st := s.Stats(); st.Connects != 1 {
			t.Fatalf("reconnected with %d receipts pending: %+v", st.PendingAcks, st)
		}
		for _, r := range rs {
			r.Receipt.Done(nil)
		}
		mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Redelivered == n }, "the redeliveries to be recognised")
		if st := s.Stats(); st.Readings != n || len(out) != 0 {
			t.Fatalf("redeliveries handed on again: %+v", st)
		}
	})
}

// A message with nothing to hand on (malformed) is done at once but still
// waits for the messages before it; the receipts of the good ones decide.
func TestDurableBadMessageWaitsItsTurn(t *testing.T) {
	eachBroker(t, "", func(t *testing.T, b testBroker) {
		p := startAckProxy(t, b.addr)
		out := make(chan ingest.Reading, 64)
		s, _ := startDurable(t, durableConfig(p.URL(), "gw-bad"), Options{}, out)
		b.publish(t, "d/x", payload(1714564800, "v", 0))
		b.publish(t, "d/x", []byte("{not json"))
		b.publish(t, "d/x", payload(1714564800, "v", 2))
		rs := collectHeld(t, out, 2)
		mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().DecodeErrors["malformed"] == 1 }, "the bad message")
		ids := []uint16{receiptID(t, rs[0]), 0, receiptID(t, rs[1])}
		ids[1] = ids[0] + 1 // brokers number a client's messages in sequence
		rs[1].Receipt.Done(nil)
		if n := len(p.Acks()); n != 0 {
			t.Fatalf("%d acks before the first message's commit", n)
		}
		rs[0].Receipt.Done(nil)
		mqtttest.WaitFor(t, waitLimit, func() bool { return len(p.Acks()) == 3 }, "the three acks")
		if got := p.Acks(); !slices.Equal(got, ids) {
			t.Fatalf("acks %v, want %v", got, ids)
		}
	})
}

// A durable QoS 0 subscription has no acknowledgement to hold: its
// readings carry a receipt with no key (nothing to recognise) that only
// asks for a prompt commit; completing it is harmless.
func TestDurableQoS0ReceiptOnly(t *testing.T) {
	checkNoLeak(t)
	m := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	yes := true
	sub := jsonSub("d/+", 0, 1)
	sub.Durable = &yes
	out := make(chan ingest.Reading, 8)
	s, _ := startDurable(t, Config{Broker: "tcp://" + m.Addr(), Subscriptions: []Subscription{sub}}, Options{}, out)
	if err := m.Publish("d/x", payload(1714564800, "a", 1, "b", 2), false, 0); err != nil {
		t.Fatal(err)
	}
	rs := collectHeld(t, out, 2)
	if rs[0].Receipt != nil || rs[1].Receipt == nil || len(rs[1].Receipt.Key) != 0 {
		t.Fatalf("receipts %+v %+v: want one, on the last reading, without a key", rs[0].Receipt, rs[1].Receipt)
	}
	rs[1].Receipt.Committed(nil)
	if st := s.Stats(); st.PendingAcks != 0 || st.DurableAcked != 0 {
		t.Errorf("stats %+v", st)
	}
}

// New loads the committed messages only for its own client id, and
// reports a state store that cannot be read.
func TestNewLoadsState(t *testing.T) {
	var asked []string
	load := func(prefix []byte, fn func(k, v []byte) error) error {
		asked = append(asked, string(prefix))
		for _, kv := range [][2]string{
			{"src/mqtt/gw/\x00\x07", "\x01\x02\x03\x04\x05\x06\x07\x08"},
			{"src/mqtt/gw/x/\x00\x07", "\x01\x02\x03\x04\x05\x06\x07\x08"}, // client "gw/x"
			{"src/mqtt/gw/\x00\x08", "short"},
		} {
			if err := fn([]byte(kv[0]), []byte(kv[1])); err != nil {
				return err
			}
		}
		return nil
	}
	s, err := New(durableConfig("tcp://127.0.0.1:1", "gw"), Options{State: load})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(asked, []string{"src/mqtt/gw/"}) {
		t.Errorf("asked for %q", asked)
	}
	if !s.seen.has(7, 0x0102030405060708) || s.seen.h[8] != 0 || s.seen.h[0x7802] != 0 {
		t.Errorf("table not loaded as expected")
	}
	broken := errors.New("bolt: closed")
	_, err = New(durableConfig("tcp://127.0.0.1:1", "gw"), Options{State: func([]byte, func(k, v []byte) error) error { return broken }})
	if !errors.Is(err, broken) {
		t.Errorf("New with a broken state store: %v", err)
	}
	// Without a subscription that holds acks, nothing is loaded.
	cfg := durableConfig("tcp://127.0.0.1:1", "gw")
	cfg.Subscriptions[0].QoS = 0
	asked = nil
	if _, err := New(cfg, Options{State: load}); err != nil || asked != nil {
		t.Errorf("QoS 0 source loaded state: %v %q", err, asked)
	}
}
