package test

// Uplink-level fault tests: package uplink against a real buffer.Outbox (a
// bbolt file in t.TempDir()) and a real mosquitto process. Every test
// checks that all records appended before and during the fault arrive
// upstream, in order within a lane (first arrivals), and that duplicates
// carry the same record id and come only from re-sends.

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/test/mqtttest"
	"github.com/sensorgate/sensorgate/uplink"
)

// hasAll reports whether every id in ids has arrived.
func (o *uplObserver) hasAll(ids []string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	seen := make(map[string]bool, len(o.ids))
	for _, id := range o.ids {
		seen[id] = true
	}
	for _, id := range ids {
		if !seen[id] {
			return false
		}
	}
	return true
}

// waitSentinel publishes a sentinel straight to the broker at url and
// waits until the observer has it: mosquitto forwards in the order it
// received, so the observer then has all that was published before.
func (o *uplObserver) waitSentinel(t testing.TB, url string) {
	t.Helper()
	before := o.sentinels.Load()
	c := client(t, url, "upl-sentinel")
	publish(t, c, uplSentinelTopic, 1, []byte("end"))
	mqtttest.WaitFor(t, 30*time.Second, func() bool { return o.sentinels.Load() > before }, "the sentinel at the observer")
	c.Disconnect(0)
}

// uplMosquittoConf is the broker of the uplink tests: anonymous, no cap
// on queued messages, state saved every second (Persistence) so that a
// killed broker loses only the last second.
const uplMosquittoConf = "allow_anonymous true\nautosave_interval 1\nmax_queued_messages 0\nmax_inflight_messages 100\n"

// uplStartMosquitto starts mosquitto with uplMosquittoConf plus extra,
// restartable on the same port with its persistence.
func uplStartMosquitto(t testing.TB, extra string) *mqtttest.Mosquitto {
	t.Helper()
	return mqtttest.StartMosquitto(t, mqtttest.MosquittoConfig{Persistence: true, Conf: uplMosquittoConf + extra})
}

// uplObserver subscribes (QoS 1, persistent session, re-subscribing at
// every connect) to everything the uplink publishes and records the
// record ids in arrival order.
type uplObserver struct {
	c          paho.Client
	mu         sync.Mutex
	ids        []string
	redeliv    int // messages the broker flagged DUP (broker-to-observer re-sends)
	subscribed atomic.Int64
	sentinels  atomic.Int64
}

func uplObserve(t testing.TB, addr, filter string) *uplObserver {
	t.Helper()
	o := &uplObserver{}
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("upl-observer").
		SetCleanSession(false).SetAutoReconnect(true).SetMaxReconnectInterval(100 * time.Millisecond).
		SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).SetKeepAlive(2 * time.Second).
		SetOrderMatters(true)
	opts.SetOnConnectHandler(func(c paho.Client) {
		go func() {
			tok := c.Subscribe(filter, 1, o.handle)
			if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
				o.subscribed.Add(1)
			}
		}()
	})
	o.c = paho.NewClient(opts)
	if tok := o.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("observer connect: %v", tok.Error())
	}
	mqtttest.WaitFor(t, 30*time.Second, func() bool { return o.subscribed.Load() >= 1 }, "observer subscribed")
	t.Cleanup(func() { o.c.Disconnect(0) })
	return o
}

// uplSentinelTopic carries the marker that finish waits for; it matches
// the observer's filter but is no record.
const uplSentinelTopic = "sg/sentinel"

func (o *uplObserver) handle(_ paho.Client, m paho.Message) {
	if m.Topic() == uplSentinelTopic {
		o.sentinels.Add(1)
		return
	}
	var ids []string
	p := m.Payload()
	if len(p) > 0 && p[0] == '[' {
		var arr []struct {
			ID string `json:"record_id"`
		}
		json.Unmarshal(p, &arr)
		for _, e := range arr {
			ids = append(ids, e.ID)
		}
	} else {
		var e struct {
			ID string `json:"record_id"`
		}
		json.Unmarshal(p, &e)
		ids = append(ids, e.ID)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if m.Duplicate() {
		o.redeliv += len(ids)
	}
	o.ids = append(o.ids, ids...)
}

func (o *uplObserver) snapshot() ([]string, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.ids...), o.redeliv
}

// uplProducer appends summaries (and one alert per 10 summaries) to the
// outbox and remembers each record's lane position by id.
type uplProducer struct {
	t     testing.TB
	ob    *buffer.Outbox
	mu    sync.Mutex
	order map[string]int // record id -> position in its lane
	n     [len(buffer.Lanes)]int
}

func (p *uplProducer) produce(count int, every time.Duration) {
	p.t.Helper()
	// Groups of 10 summaries and one alert per durable Append: a steady
	// stream without one fsync per record.
	for i := 0; i < count; i += 10 {
		p.appendN(buffer.LaneSummaries, min(10, count-i))
		p.append(buffer.LaneAlerts)
		time.Sleep(10 * every)
	}
}

func (p *uplProducer) append(l buffer.Lane) { p.appendN(l, 1) }

// appendN appends n records to lane l in one durable Append.
func (p *uplProducer) appendN(l buffer.Lane, n int) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	payloads := make([][]byte, n)
	for i := range payloads {
		p.n[l]++
		k := p.n[l]
		var b []byte
		var err error
		if l == buffer.LaneAlerts {
			b, err = ingest.AppendAlert(nil, &ingest.Alert{ID: "a" + strconv.Itoa(k), Rule: "r", Sensor: "s", Metric: "t", State: "fire", Value: float64(k)})
		} else {
			b, err = ingest.AppendSummary(nil, &ingest.Summary{ID: "s" + strconv.Itoa(k), Sensor: "s", Metric: "t", Count: uint64(k), Start: int64(k), End: int64(k + 1)})
		}
		if err != nil {
			p.t.Fatal(err)
		}
		payloads[i] = b
		// The outbox assigns consecutive seqs per lane from 1; the id is
		// "<epoch>-<lane>-<seq>".
		p.order[fmt.Sprintf("%s-%s-%d", p.ob.Epoch(), l, k)] = k
	}
	if err := p.ob.Append(context.Background(), l, payloads...); err != nil {
		p.t.Fatal(err)
	}
}

func (p *uplProducer) expected() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.order))
	for k, v := range p.order {
		out[k] = v
	}
	return out
}

// uplCheck checks that first arrivals are in order within each lane and
// returns the number of duplicates and the expected ids that never came.
func uplCheck(t testing.TB, got []string, want map[string]int) (dups int, missing []string) {
	t.Helper()
	seen := make(map[string]bool, len(want))
	last := map[string]int{}
	bad := 0
	for _, id := range got {
		pos, ok := want[id]
		if !ok {
			t.Errorf("unexpected record id %q", id)
			continue
		}
		if seen[id] {
			dups++
			continue
		}
		seen[id] = true
		lane := id[:strings.LastIndexByte(id, '-')]
		if p, ok := last[lane]; ok && pos < p {
			if bad++; bad < 10 {
				t.Errorf("out of order in lane %s: %s after position %d", lane, id, p)
			}
		}
		last[lane] = pos
	}
	for id := range want {
		if !seen[id] {
			missing = append(missing, id)
		}
	}
	return dups, missing
}

// uplRig is the common setup: outbox, broker, proxy, observer, uplink.
type uplRig struct {
	t     *testing.T
	ob    *buffer.Outbox
	mq    *mqtttest.Mosquitto
	px    *uplProxy
	obs   *uplObserver
	u     *uplink.Uplink
	prod  *uplProducer
	stopU func()
}

func uplNewRig(t *testing.T) *uplRig {
	r := &uplRig{t: t}
	r.mq = uplStartMosquitto(t, "")
	ob, err := buffer.Open(buffer.Config{Path: filepath.Join(t.TempDir(), "outbox.db"), CommitDelay: 2 * time.Millisecond}, buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.ob = ob
	t.Cleanup(func() { ob.Close() })
	r.px = uplStartProxy(t, r.mq.Addr())
	r.obs = uplObserve(t, r.mq.Addr(), "sg/#")
	r.prod = &uplProducer{t: t, ob: ob, order: map[string]int{}}
	cfg := uplink.Config{Name: "cloud", Type: "mqtt", URL: "tcp://" + r.px.addr(), Topic: "sg/{gateway}/{lane}",
		KeepAlive: time.Second, AckTimeout: time.Second, ConnectTimeout: time.Second, MaxInflight: 32,
		Backoff: uplink.Backoff{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond}, PollInterval: 50 * time.Millisecond}
	u, err := newUplink(cfg, ob, uplink.Options{Gateway: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	r.u = u
	r.stopU = mqtttest.Go(t, u.Run)
	return r
}

// restartBroker starts the stopped mosquitto again on the same port.
func (r *uplRig) restartBroker() {
	r.t.Helper()
	if err := r.mq.Restart(); err != nil {
		r.t.Fatal(err)
	}
}

// finish waits until the outbox is empty and everything arrived, stops
// the uplink and checks delivery.
func (r *uplRig) finish(brokerMayLose bool) {
	t := r.t

	want := r.prod.expected()
	mqtttest.WaitFor(t, 30*time.Second, func() bool {
		for _, l := range []buffer.Lane{buffer.LaneAlerts, buffer.LaneSummaries} {
			if recs, err := r.ob.Read(l, 0, 1); err != nil || len(recs) > 0 {
				return false
			}
		}
		return true
	}, "outbox drained")

	// The outbox is empty, so the broker has acknowledged (and queued for
	// the observer) every record it will ever pass on; a sentinel
	// published now reaches the observer after all of them. What never
	// came is named below.
	r.obs.waitSentinel(t, r.mq.URL())
	r.stopU()
	// The outbox is empty: every record was acknowledged there. Each of
	// them must have had its PUBACK go by on the wire first (the proxy's
	// tap parses both directions), whatever paho's tokens said.
	// The tap parses on its own goroutines: give it time to catch up.
	var noPuback []string
	mqtttest.Poll(10*time.Second, func() bool {
		noPuback = noPuback[:0]
		for id := range want {
			if !r.px.wasPubacked(id) {
				noPuback = append(noPuback, id)
			}
		}
		return len(noPuback) == 0
	})
	for i, id := range noPuback {
		if i < 10 {
			t.Errorf("record %s left the outbox without a PUBACK on the wire", id)
		}
	}
	ids, redeliv := r.obs.snapshot()
	dups, missing := uplCheck(t, ids, want)
	brokerLost := 0
	for _, id := range missing {
		// A mosquitto killed with SIGKILL loses what it acknowledged
		// but had not yet passed on (it persists periodically): the
		// uplink did its part when the broker's PUBACK went by.
		if brokerMayLose && r.px.wasPubacked(id) {
			brokerLost++
			continue
		}
		t.Errorf("record %s never arrived upstream (published on the wire: %v, PUBACK on the wire: %v)",
			id, r.px.wasPublished(id), r.px.wasPubacked(id))
	}
	st := r.u.Stats()
	// Duplicates come from the uplink's re-sends (the in-flight window at
	// each fault) or from the broker re-delivering to the observer (DUP).
	if uint64(dups) > st.Retries+uint64(redeliv) {
		t.Errorf("%d duplicates, but only %d records re-sent and %d re-delivered by the broker", dups, st.Retries, redeliv)
	}
	// Re-sends happen only for what was in flight when a connection
	// ended: at most one window (32 messages of one record) per
	// connection.
	if st.Retries > st.Disconnects*32 {
		t.Errorf("%d records re-sent over %d connections: more than the in-flight window", st.Retries, st.Disconnects)
	}
	if st.Acked != uint64(len(want)) || st.DeadLettered != 0 {
		t.Errorf("acked %d of %d: %+v", st.Acked, len(want), st)
	}
	t.Logf("records %d, duplicates %d (uplink re-sends %d, broker re-deliveries %d), lost by the killed broker after its PUBACK %d, connects %d, offline total %v",
		len(want), dups, st.Retries, redeliv, brokerLost, st.Connects, st.OfflineTotal.Round(time.Millisecond))
}

// The broker is killed (SIGKILL) mid-stream and started again on the same
// port with its persistence; records keep coming in meanwhile.
func TestUplinkFaultMosquittoKilled(t *testing.T) {
	r := uplNewRig(t)
	r.prod.produce(200, time.Millisecond)
	// A burst, so that the uplink is busy draining when the broker dies.
	r.prod.appendN(buffer.LaneSummaries, 3000)
	r.prod.appendN(buffer.LaneAlerts, 100)
	mqtttest.WaitFor(t, 30*time.Second, func() bool { return r.u.Stats().Acked > 500 }, "draining the burst")
	r.px.set(true, false) // reconnects wait until the observer is back
	r.mq.Kill()

	subs := r.obs.subscribed.Load()
	r.prod.produce(300, time.Millisecond) // during the outage
	r.restartBroker()
	mqtttest.WaitFor(t, 30*time.Second, func() bool { return r.obs.subscribed.Load() > subs }, "observer re-subscribed")
	r.px.set(false, false)
	r.prod.produce(300, time.Millisecond)
	r.finish(true)
	if st := r.u.Stats(); st.Connects < 2 {
		t.Errorf("no reconnect: %+v", st)
	}
}

// The link black-holes all traffic (no RST, no FIN) for a while and then
// recovers; the ack watchdog / keepalive notice and reconnect.
func TestUplinkFaultBlackhole(t *testing.T) {
	r := uplNewRig(t)
	r.prod.produce(300, time.Millisecond)
	r.px.set(false, true)
	r.prod.produce(300, 3*time.Millisecond) // ~1s+ of black hole while producing
	mqtttest.WaitFor(t, 30*time.Second, func() bool { return !r.u.Stats().Connected }, "uplink notices the dead link")
	// Stay dark until a reconnect has hung in the black hole too and
	// timed out.
	failures := r.u.Stats().ConnectFailures
	mqtttest.WaitFor(t, 30*time.Second, func() bool { return r.u.Stats().ConnectFailures > failures }, "a reconnect lost in the black hole")
	r.px.set(false, false)
	r.prod.produce(300, time.Millisecond)
	r.finish(false)
	if st := r.u.Stats(); st.Disconnects < 1 {
		t.Errorf("black hole not detected: %+v", st)
	}
}

// The broker is restarted with its persistence wiped: it knows nothing of
// any session; whatever the uplink had in flight must be sent again.
func TestUplinkFaultBrokerWiped(t *testing.T) {
	r := uplNewRig(t)
	r.prod.produce(400, time.Millisecond)
	// Hold the broker's PUBACKs first, so that messages are in flight
	// when the broker goes: the broker got and acknowledged them (and
	// passed them to the observer) but the uplink never learns it, and
	// then the broker forgets everything.
	r.px.dropAcks()
	r.prod.produce(50, time.Millisecond)
	mqtttest.WaitFor(t, 30*time.Second, func() bool { return r.u.Stats().InFlight >= 32 }, "a full in-flight window")
	mqtttest.WaitFor(t, 30*time.Second, func() bool { return r.obs.hasAll(r.px.published()) },
		"the observer has every record that reached the broker")
	r.mq.Stop()                                    // mosquitto saves its state on SIGTERM...
	if err := r.mq.WipePersistence(); err != nil { // ...which we throw away
		t.Fatal(err)
	}
	r.px.cut() // the held PUBACKs are lost with the connection
	r.px.set(true, false)
	subs := r.obs.subscribed.Load()
	r.prod.produce(200, time.Millisecond)
	r.restartBroker()
	mqtttest.WaitFor(t, 30*time.Second, func() bool { return r.obs.subscribed.Load() > subs }, "observer re-subscribed")
	r.px.set(false, false)
	r.prod.produce(300, time.Millisecond)
	r.finish(false)
	if ids, _ := r.obs.snapshot(); len(ids) <= len(r.prod.expected()) {
		t.Errorf("the records in flight at the fault were not sent again (no duplicates)")
	}
}

// TestUplinkMosquittoMutualTLS: mosquitto with require_certificate. The
// right CA and client certificate deliver; a wrong CA or no client
// certificate fail with an error that says so.
func TestUplinkMosquittoMutualTLS(t *testing.T) {
	good := mqtttest.NewPKI(t)
	other := mqtttest.NewPKI(t)
	mq := uplStartMosquitto(t, fmt.Sprintf("cafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n",
		good.CAFile, good.ServerCertFile, good.ServerKeyFile))
	for _, tc := range []struct {
		name    string
		tls     uplink.TLS
		wantErr string
	}{
		{"mutual tls", uplink.TLS{CAFile: good.CAFile, CertFile: good.ClientCertFile, KeyFile: good.ClientKeyFile}, ""},
		{"wrong CA", uplink.TLS{CAFile: other.CAFile, CertFile: good.ClientCertFile, KeyFile: good.ClientKeyFile}, "certificate signed by unknown authority"},
		{"no client certificate", uplink.TLS{CAFile: good.CAFile}, "tls: "},
		{"client certificate of another CA", uplink.TLS{CAFile: good.CAFile, CertFile: other.ClientCertFile, KeyFile: other.ClientKeyFile}, "tls: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, left := deliverOneAlert(t, uplink.Config{Type: "mqtt", URL: "ssl://" + mq.Addr(), TLS: tc.tls, ConnectTimeout: 2 * time.Second,
				Backoff: uplink.Backoff{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond}},
				tc.wantErr, func(st uplink.Stats) uint64 { return st.ConnectFailures })
			if tc.wantErr != "" {
				if st.Connects != 0 || st.Acked != 0 || !strings.Contains(st.LastError, tc.wantErr) {
					t.Errorf("want a failure mentioning %q: %+v", tc.wantErr, st)
				}
				if left != 1 {
					t.Errorf("record left the outbox without delivery")
				}
				t.Logf("error: %s", st.LastError)
			}
		})
	}
}
