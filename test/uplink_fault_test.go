package test

// Uplink-level fault tests: package uplink against a real buffer.Outbox (a
// bbolt file in t.TempDir()) and a real mosquitto process. Every test
// checks that all records appended before and during the fault arrive
// upstream, in order within a lane (first arrivals), and that duplicates
// carry the same record id and come only from re-sends.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	ppk "github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/uplink"
)

const uplMosquittoBin = "/usr/sbin/mosquitto"

// uplMosquitto is a mosquitto process with its own config and
// persistence directory, restartable on the same port.
type uplMosquitto struct {
	t     testing.TB
	dir   string
	port  int
	extra string
	cmd   *exec.Cmd
	done  chan struct{}
	log   *uplLockedBuf
}

type uplLockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *uplLockedBuf) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *uplLockedBuf) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func uplStartMosquitto(t testing.TB, extraConf string) *uplMosquitto {
	t.Helper()
	if _, err := os.Stat(uplMosquittoBin); err != nil {
		t.Skipf("mosquitto not installed (%s): %v", uplMosquittoBin, err)
	}
	m := &uplMosquitto{t: t, dir: t.TempDir(), port: uplFreePort(t), extra: extraConf, log: &uplLockedBuf{}}
	m.start()
	t.Cleanup(func() { m.kill(syscall.SIGKILL) })
	return m
}

// uplFreePort returns a loopback TCP port that was free a moment ago.
func uplFreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (m *uplMosquitto) addr() string { return fmt.Sprintf("127.0.0.1:%d", m.port) }

func (m *uplMosquitto) start() {
	m.t.Helper()
	conf := filepath.Join(m.dir, "mosquitto.conf")
	user := ""
	if os.Getuid() == 0 {
		// mosquitto started as root switches to user "mosquitto", which
		// cannot read or write our temporary directory.
		user = "user root\n"
	}
	body := user + fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
persistence true
persistence_location %s/
persistence_file mosquitto.db
autosave_interval 1
max_queued_messages 0
max_inflight_messages 100
log_dest stderr
log_type error
log_type warning
%s
`, m.port, m.dir, m.extra)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		m.t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		cmd := exec.Command(uplMosquittoBin, "-c", conf)
		cmd.Stdout, cmd.Stderr = m.log, m.log
		if err := cmd.Start(); err != nil {
			m.t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		// Ready when the port accepts connections (or retry if it died,
		// e.g. the port was still in TIME_WAIT use).
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-done:
				goto retry
			default:
			}
			if c, err := net.DialTimeout("tcp", m.addr(), 200*time.Millisecond); err == nil {
				c.Close()
				m.cmd, m.done = cmd, done
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		cmd.Process.Kill()
		<-done
	retry:
		if attempt > 20 {
			m.t.Fatalf("mosquitto did not start on %s:\n%s", m.addr(), m.log.String())
		}
		if strings.Contains(m.log.String(), "Error") {
			m.t.Logf("mosquitto: %s", m.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (m *uplMosquitto) kill(sig syscall.Signal) {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(sig)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}

// wipe deletes the persistence file (the broker must be stopped).
func (m *uplMosquitto) wipe() {
	os.Remove(filepath.Join(m.dir, "mosquitto.db"))
}

// uplProxy is a loopback TCP proxy in front of the broker. hold() makes
// new connections wait before they reach the broker; blackhole() stops
// moving bytes in both directions on every connection without closing
// anything (no RST, no FIN: what a dead cellular link looks like), and
// release() lets everything through again, nothing lost.
type uplProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cond   *sync.Cond
	held   bool // new connections wait
	black  bool // no bytes move
	// blackAcks stops only the broker-to-client direction: publishes
	// reach the broker, its PUBACKs do not come back.
	blackAcks bool
	conns     []net.Conn
	wg        sync.WaitGroup
	closed    bool
	nconn     int
	// tap: what went over the wire, parsed as MQTT. For every
	// (connection, message id) the n-th PUBACK answers the n-th PUBLISH;
	// the two directions are parsed by separate goroutines, so either can
	// be seen first.
	tapMu  sync.Mutex
	pubs   map[[2]int][]string // record ids published, in order
	acks   map[[2]int]int      // PUBACKs seen
	pubPos map[string][][3]int // record id -> (conn, mid, index in pubs)
}

func uplStartProxy(t testing.TB, target string) *uplProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &uplProxy{ln: ln, target: target, pubs: map[[2]int][]string{}, acks: map[[2]int]int{}, pubPos: map[string][][3]int{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *uplProxy) addr() string { return p.ln.Addr().String() }

func (p *uplProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// wait blocks while cond holds and the proxy is open; false if closed.
func (p *uplProxy) wait(cond func() bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for cond() && !p.closed {
		p.cond.Wait()
	}
	return !p.closed
}

func (p *uplProxy) serve(c net.Conn) {
	defer p.wg.Done()
	p.track(c)
	if !p.wait(func() bool { return p.held || p.black }) {
		c.Close()
		return
	}
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.track(u)
	p.mu.Lock()
	p.nconn++
	id := p.nconn
	p.mu.Unlock()
	upR, upW := io.Pipe()
	downR, downW := io.Pipe()
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); p.pipe(u, c, upW, func() bool { return p.black }) }()
	go func() { defer wg.Done(); p.pipe(c, u, downW, func() bool { return p.black || p.blackAcks }) }()
	go func() { defer wg.Done(); p.tap(id, upR, true) }()
	go func() { defer wg.Done(); p.tap(id, downR, false) }()
	wg.Wait()
}

// tap parses one direction of a connection and records which records
// were published under which message id, and which were PUBACKed.
func (p *uplProxy) tap(conn int, r *io.PipeReader, up bool) {
	defer io.Copy(io.Discard, r)
	for {
		pk, err := ppk.ReadPacket(r)
		if err != nil {
			return
		}
		p.tapMu.Lock()
		switch m := pk.(type) {
		case *ppk.PublishPacket:
			if up {
				var e struct {
					ID string `json:"record_id"`
				}
				json.Unmarshal(m.Payload, &e)
				k := [2]int{conn, int(m.MessageID)}
				p.pubPos[e.ID] = append(p.pubPos[e.ID], [3]int{conn, int(m.MessageID), len(p.pubs[k])})
				p.pubs[k] = append(p.pubs[k], e.ID)
			}
		case *ppk.PubackPacket:
			if !up {
				p.acks[[2]int{conn, int(m.MessageID)}]++
			}
		}
		p.tapMu.Unlock()
	}
}

func (p *uplProxy) wasPublished(id string) bool {
	p.tapMu.Lock()
	defer p.tapMu.Unlock()
	return len(p.pubPos[id]) > 0
}

// wasPubacked reports whether the broker's PUBACK for a message carrying
// id went through the proxy to the uplink.
func (p *uplProxy) wasPubacked(id string) bool {
	p.tapMu.Lock()
	defer p.tapMu.Unlock()
	for _, pos := range p.pubPos[id] {
		if p.acks[[2]int{pos[0], pos[1]}] > pos[2] {
			return true
		}
	}
	return false
}

func (p *uplProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	closed := p.closed
	p.mu.Unlock()
	if closed {
		c.Close()
	}
}

// pipe copies src to dst (and to the tap); while dark it holds what it
// read and stops reading.
func (p *uplProxy) pipe(dst, src net.Conn, tap *io.PipeWriter, dark func() bool) {
	defer tap.Close()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait(dark) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			tap.Write(buf[:n])
		}
		if err != nil {
			return
		}
		// While black-holed, stop reading too, so the sender's socket
		// buffers fill up like on a dead link.
		if !p.wait(dark) {
			return
		}
	}
}

func (p *uplProxy) set(held, black bool) {
	p.mu.Lock()
	p.held, p.black, p.blackAcks = held, black, false
	p.cond.Broadcast()
	p.mu.Unlock()
}

// cut closes every open connection at once; bytes held by a black hole
// are lost, as on a link that dies with packets in flight.
func (p *uplProxy) cut() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// dropAcks holds everything the broker sends back (PUBACKs).
func (p *uplProxy) dropAcks() {
	p.mu.Lock()
	p.blackAcks = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *uplProxy) close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.cond.Broadcast()
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
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
	uplWait(t, "observer subscribed", func() bool { return o.subscribed.Load() >= 1 })
	t.Cleanup(func() { o.c.Disconnect(0) })
	return o
}

func (o *uplObserver) handle(_ paho.Client, m paho.Message) {
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

// uplWait polls cond until it holds, failing after 30 s.
func uplWait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 30s waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
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
	mq    *uplMosquitto
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
	r.px = uplStartProxy(t, r.mq.addr())
	r.obs = uplObserve(t, r.mq.addr(), "sg/#")
	r.prod = &uplProducer{t: t, ob: ob, order: map[string]int{}}
	cfg := uplink.Config{Name: "cloud", Type: "mqtt", URL: "tcp://" + r.px.addr(), Topic: "sg/{gateway}/{lane}",
		KeepAlive: time.Second, AckTimeout: time.Second, ConnectTimeout: time.Second, MaxInflight: 32,
		Backoff: uplink.Backoff{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond}, PollInterval: 50 * time.Millisecond}
	u, err := uplink.New(cfg, ob, uplink.Options{Gateway: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	r.u = u
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	var once sync.Once
	r.stopU = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("Run did not return within 20s")
			}
		})
	}
	t.Cleanup(r.stopU)
	return r
}

// finish waits until the outbox is empty and everything arrived, stops
// the uplink and checks delivery.
func (r *uplRig) finish(brokerMayLose bool) {
	t := r.t

	want := r.prod.expected()
	uplWait(t, "outbox drained", func() bool {
		for _, l := range []buffer.Lane{buffer.LaneAlerts, buffer.LaneSummaries} {
			if recs, err := r.ob.Read(l, 0, 1); err != nil || len(recs) > 0 {
				return false
			}
		}
		return true
	})
	// Wait for the observer until it has everything or nothing new came
	// for 3 s (the outbox is empty: every record has been acknowledged);
	// what never came is named below.
	lastN, lastChange := -1, time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ids, _ := r.obs.snapshot()
		seen := map[string]bool{}
		for _, id := range ids {
			seen[id] = true
		}
		if len(seen) >= len(want) {
			break
		}
		if len(ids) != lastN {
			lastN, lastChange = len(ids), time.Now()
		} else if time.Since(lastChange) > 3*time.Second {
			break
		}
	}
	r.stopU()
	// The outbox is empty: every record was acknowledged there. Each of
	// them must have had its PUBACK go by on the wire first (the proxy's
	// tap parses both directions), whatever paho's tokens said.
	var noPuback []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		noPuback = noPuback[:0]
		for id := range want {
			if !r.px.wasPubacked(id) {
				noPuback = append(noPuback, id)
			}
		}
		if len(noPuback) == 0 || time.Now().After(deadline) {
			break
		}
	}
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
	uplWait(t, "draining the burst", func() bool { return r.u.Stats().Acked > 500 })
	r.px.set(true, false) // reconnects wait until the observer is back
	r.mq.kill(syscall.SIGKILL)

	subs := r.obs.subscribed.Load()
	r.prod.produce(300, time.Millisecond) // during the outage
	r.mq.start()
	uplWait(t, "observer re-subscribed", func() bool { return r.obs.subscribed.Load() > subs })
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
	uplWait(t, "uplink notices the dead link", func() bool { return !r.u.Stats().Connected })
	time.Sleep(500 * time.Millisecond) // stay dark a bit longer: reconnects hang too
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
	uplWait(t, "a full in-flight window", func() bool { return r.u.Stats().InFlight >= 32 })
	time.Sleep(200 * time.Millisecond) // let the broker pass what it got to the observer
	r.mq.kill(syscall.SIGTERM)         // mosquitto saves its state on SIGTERM...
	r.mq.wipe()                        // ...which we throw away
	r.px.cut()                         // the held PUBACKs are lost with the connection
	r.px.set(true, false)
	subs := r.obs.subscribed.Load()
	r.prod.produce(200, time.Millisecond)
	r.mq.start()
	uplWait(t, "observer re-subscribed", func() bool { return r.obs.subscribed.Load() > subs })
	r.px.set(false, false)
	r.prod.produce(300, time.Millisecond)
	r.finish(false)
	if ids, _ := r.obs.snapshot(); len(ids) <= len(r.prod.expected()) {
		t.Errorf("the records in flight at the fault were not sent again (no duplicates)")
	}
}

// uplBenchRecords is the backlog size of the drain benchmarks
// (UPL_BENCH_RECORDS overrides the default of 1,000,000).
func uplBenchRecords() int {
	if v, err := strconv.Atoi(os.Getenv("UPL_BENCH_RECORDS")); err == nil && v > 0 {
		return v
	}
	return 1_000_000
}

// uplBacklog opens an outbox in dir holding n summaries and returns it
// with one sample payload.
func uplBacklog(b *testing.B, dir string, n int) (*buffer.Outbox, []byte) {
	ob, err := buffer.Open(buffer.Config{Path: filepath.Join(dir, "outbox.db"), MaxBytes: 4 << 30, MaxFileSize: 8 << 30, CompactMinSize: -1}, buffer.Options{})
	if err != nil {
		b.Fatal(err)
	}
	var sample []byte
	const chunk = 10000
	payloads := make([][]byte, 0, chunk)
	for i := 0; i < n; i += chunk {
		payloads = payloads[:0]
		for j := i; j < min(i+chunk, n); j++ {
			p, err := ingest.AppendSummary(nil, &ingest.Summary{ID: ingest.SummaryID("w", "sensor-"+strconv.Itoa(j%1000), "", "temperature", int64(j), int64(j+1)),
				Window: "w", Sensor: "sensor-" + strconv.Itoa(j%1000), Metric: "temperature", Unit: "Cel",
				Start: 1700000000e9 + int64(j)*1e10, End: 1700000000e9 + int64(j+1)*1e10,
				Count: 10, Sum: 215.5, Min: 20.5, Max: 22.5, Mean: 21.55, Stddev: 0.6})
			if err != nil {
				b.Fatal(err)
			}
			payloads = append(payloads, p)
			sample = p
		}
		if err := ob.Append(context.Background(), buffer.LaneSummaries, payloads...); err != nil {
			b.Fatal(err)
		}
	}
	return ob, sample
}

// uplDrain runs u until the outbox has acknowledged n records and returns
// the time it took.
func uplDrain(b *testing.B, u *uplink.Uplink, n int) time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- u.Run(ctx) }()
	for u.Stats().Acked < uint64(n) {
		time.Sleep(time.Millisecond)
		if time.Since(start) > 30*time.Minute {
			b.Fatalf("drain stuck: %+v", u.Stats())
		}
	}
	elapsed := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return elapsed
}

// BenchmarkUplinkDrainMQTT drains a backlog of records from a real outbox
// to a local mosquitto (QoS 1, one record per message, 64 in flight) and,
// in the same run, measures the broker-only ceiling: a bare paho client
// publishing the same number of messages of the same size with the same
// window straight to the broker.
//
//	UPL_BENCH_RECORDS=1000000 go test ./test -run '^$' -bench BenchmarkUplinkDrainMQTT -benchtime 1x
func BenchmarkUplinkDrainMQTT(b *testing.B) {
	n := uplBenchRecords()
	mq := uplStartMosquitto(b, "")
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ob, _ := uplBacklog(b, b.TempDir(), n)
		cfg := uplink.Config{Name: "bench", Type: "mqtt", URL: "tcp://" + mq.addr(), MaxInflight: uplBenchInflight(), DisableStatus: true,
			BatchSize: uplBenchBatch()}
		u, err := uplink.New(cfg, ob, uplink.Options{Gateway: "gw-1"})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		elapsed := uplDrain(b, u, n)
		b.StopTimer()
		ob.Close()
		// The broker-only ceiling with payloads of the same size.
		payload := bytes.Repeat([]byte{'x'}, int(u.Stats().Bytes/u.Stats().Messages))
		ceiling := uplBareMQTT(b, mq.addr(), int(u.Stats().Messages), uplBenchInflight(), payload)
		b.ReportMetric(float64(n)/elapsed.Seconds(), "records/s")
		b.ReportMetric(float64(u.Stats().Messages)/ceiling.Seconds(), "ceiling-msgs/s")
		b.ReportMetric(float64(u.Stats().Messages)/elapsed.Seconds(), "msgs/s")
		b.ReportMetric(100*ceiling.Seconds()/elapsed.Seconds(), "%-of-ceiling")
		b.StartTimer()
	}
}

// uplBareMQTT is the broker-only ceiling: a minimal MQTT client that
// writes n QoS 1 PUBLISH packets through a buffered writer, with at most
// window unacknowledged, and returns how long it took until the last
// PUBACK. No outbox, no encoding, no paho: only what the broker must do.
func uplBareMQTT(b *testing.B, addr string, n, window int, payload []byte) time.Duration {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	cp := ppk.NewControlPacket(ppk.Connect).(*ppk.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion, cp.CleanSession, cp.ClientIdentifier, cp.Keepalive = "MQTT", 4, true, "upl-bare", 60
	if err := cp.Write(conn); err != nil {
		b.Fatal(err)
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	if ack, err := ppk.ReadPacket(r); err != nil || ack.(*ppk.ConnackPacket).ReturnCode != 0 {
		b.Fatalf("bare connect: %v %v", ack, err)
	}
	sem := make(chan struct{}, window)
	acked := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if _, err := ppk.ReadPacket(r); err != nil {
				acked <- err
				return
			}
			<-sem
		}
		acked <- nil
	}()
	w := bufio.NewWriterSize(conn, 64<<10)
	pub := ppk.NewControlPacket(ppk.Publish).(*ppk.PublishPacket)
	pub.Qos, pub.TopicName, pub.Payload = 1, "bench/bare", payload
	start := time.Now()
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		default:
			w.Flush() // window full: push out what is buffered, then wait
			sem <- struct{}{}
		}
		pub.MessageID = uint16(i%65535 + 1)
		if err := pub.Write(w); err != nil {
			b.Fatal(err)
		}
		if w.Buffered() > 32<<10 {
			w.Flush()
		}
	}
	w.Flush()
	if err := <-acked; err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// BenchmarkUplinkDrainHTTP drains a backlog to a local HTTP server (JSON
// batches of 500 records) and, in the same run, measures the server-only
// ceiling: a bare client posting the same number of batches of the same
// size.
//
//	UPL_BENCH_RECORDS=1000000 go test ./test -run '^$' -bench BenchmarkUplinkDrainHTTP -benchtime 1x
func BenchmarkUplinkDrainHTTP(b *testing.B) {
	n := uplBenchRecords()
	var bodyBytes atomic.Int64
	var reqs atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, _ := io.Copy(io.Discard, r.Body)
		bodyBytes.Add(m)
		reqs.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	const batch = 500
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ob, _ := uplBacklog(b, b.TempDir(), n)
		u, err := uplink.New(uplink.Config{Name: "bench", Type: "http", URL: srv.URL, BatchSize: batch, BatchBytes: 4 << 20},
			ob, uplink.Options{Gateway: "gw-1"})
		if err != nil {
			b.Fatal(err)
		}
		bodyBytes.Store(0)
		reqs.Store(0)
		b.StartTimer()
		elapsed := uplDrain(b, u, n)
		b.StopTimer()
		ob.Close()
		avg := int(bodyBytes.Load() / max(reqs.Load(), 1))
		body := bytes.Repeat([]byte{'x'}, avg)
		nreq := int(reqs.Load())
		start := time.Now()
		for j := 0; j < nreq; j++ {
			resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		ceiling := time.Since(start)
		b.ReportMetric(float64(n)/elapsed.Seconds(), "records/s")
		b.ReportMetric(float64(n)/ceiling.Seconds(), "ceiling-records/s")
		b.ReportMetric(100*ceiling.Seconds()/elapsed.Seconds(), "%-of-ceiling")
		b.StartTimer()
	}
}

// uplBenchBatch is the MQTT batch size of the drain benchmark
// (UPL_BENCH_BATCH; default 1, one record per message).
func uplBenchBatch() int {
	if v, err := strconv.Atoi(os.Getenv("UPL_BENCH_BATCH")); err == nil && v > 0 {
		return v
	}
	return 1
}

// uplBenchInflight is the MQTT window of the drain benchmark
// (UPL_BENCH_INFLIGHT overrides the uplink's default of 64).
func uplBenchInflight() int {
	if v, err := strconv.Atoi(os.Getenv("UPL_BENCH_INFLIGHT")); err == nil && v > 0 {
		return v
	}
	return uplink.DefaultMaxInflight
}

// TestUplinkMosquittoMutualTLS: mosquitto with require_certificate. The
// right CA and client certificate deliver; a wrong CA or no client
// certificate fail with an error that says so.
func TestUplinkMosquittoMutualTLS(t *testing.T) {
	dir := t.TempDir()
	good := uplNewPKI(t, dir, "good")
	other := uplNewPKI(t, dir, "other")
	mq := uplStartMosquitto(t, fmt.Sprintf("cafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n",
		good.ca, good.serverCert, good.serverKey))
	for _, tc := range []struct {
		name    string
		tls     uplink.TLS
		wantErr string
	}{
		{"mutual tls", uplink.TLS{CAFile: good.ca, CertFile: good.clientCert, KeyFile: good.clientKey}, ""},
		{"wrong CA", uplink.TLS{CAFile: other.ca, CertFile: good.clientCert, KeyFile: good.clientKey}, "certificate signed by unknown authority"},
		{"no client certificate", uplink.TLS{CAFile: good.ca}, "tls: "},
		{"client certificate of another CA", uplink.TLS{CAFile: good.ca, CertFile: other.clientCert, KeyFile: other.clientKey}, "tls: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ob, err := buffer.Open(buffer.Config{Path: filepath.Join(t.TempDir(), "outbox.db")}, buffer.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer ob.Close()
			b, _ := ingest.AppendAlert(nil, &ingest.Alert{ID: "a1", Rule: "r", Sensor: "s", Metric: "t", State: "fire"})
			if err := ob.Append(context.Background(), buffer.LaneAlerts, b); err != nil {
				t.Fatal(err)
			}
			u, err := uplink.New(uplink.Config{Type: "mqtt", URL: "ssl://" + mq.addr(), TLS: tc.tls, ConnectTimeout: 2 * time.Second,
				Backoff: uplink.Backoff{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond}}, ob, uplink.Options{Gateway: "gw-1"})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- u.Run(ctx) }()
			if tc.wantErr == "" {
				uplWait(t, "delivery over mutual TLS", func() bool { return u.Stats().Acked == 1 })
			} else {
				uplWait(t, "failed connects", func() bool { return u.Stats().ConnectFailures >= 2 })
			}
			cancel()
			<-done
			st := u.Stats()
			if tc.wantErr != "" {
				if st.Connects != 0 || st.Acked != 0 || !strings.Contains(st.LastError, tc.wantErr) {
					t.Errorf("want a failure mentioning %q: %+v", tc.wantErr, st)
				}
				t.Logf("error: %s", st.LastError)
			}
		})
	}
}
