package test

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/simulator/load"
	"github.com/sensorgate/sensorgate/test/internal/powerfs"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// The exactly-once tests (issue 13): a QoS 1 publisher with a truth file, a
// real mosquitto with persistence, the real binary with 10 s windows, and a
// subscriber with a persistent session upstream. After every kind of stop
// the summaries upstream, taking the highest rev per id, must account for
// every published reading exactly once per sensor, metric and window.
//
// Run them alone with
//
//	go test -race -count=1 -run 'ExactlyOnce' -v ./test
//
// They print what they measured (t.Logf) with -v.

const (
	eoWindow  = 10 * time.Second
	eoSensors = 4
	eoRate    = 200 // messages per second, all sensors
)

// eoMosquitto is the broker for both sides: the gateway subscribes to
// sensors/+/telemetry and its uplink publishes to up/{lane}. Queues are
// raised so that the broker never drops a queued QoS 1 message for a gateway
// that is down (mosquitto's default is 1000), and the in-flight window so
// that throughput is not what these tests measure.
func eoMosquitto(t *testing.T) *mqtttest.Mosquitto {
	return mqtttest.StartMosquitto(t, mqtttest.MosquittoConfig{Persistence: true,
		Conf: "allow_anonymous true\nmax_queued_messages 1000000\nmax_queued_bytes 0\nmax_inflight_messages 100\n"})
}

// eoConfig is the gateway's config: a persistent session (clean_session
// false), QoS 1, durable unless durable is false (the default once durable
// ingest exists), 10 s tumbling windows with late revisions (readings the
// broker redelivers after a window closed while the gateway was down come
// back as a higher rev), and an MQTT uplink at QoS 1.
func eoConfig(dataDir, broker, name string, durable bool, rules string) string {
	d := ""
	if !durable {
		d = "\n          durable: false"
	}
	if rules == "" {
		rules = fmt.Sprintf(`  windows:
    - {name: w, sensor: "*", metric: "*", type: tumbling, size: %s, lateness: 2s, late: revise, retention: 10m}
`, eoWindow)
	}
	return fmt.Sprintf(`gateway: {id: gw-%[3]s, data_dir: %[1]s, shutdown_grace: 5s}
log: {level: info, format: json}
metrics: {listen: ""}
buffer: {commit_delay: 20ms}
sources:
  mqtt:
    - broker: %[2]s
      client_id: gw-%[3]s-in
      clean_session: false
      subscriptions:
        - topic: "sensors/+/telemetry"
          qos: 1
          format: json
          json: {sensor_topic_segment: 1, time_field: ts, time_format: unix_ms}%[4]s
rules:
%[5]s
uplinks:
  - {name: up, type: mqtt, url: %[2]s, client_id: gw-%[3]s-up, topic: "up/%[3]s/{lane}"}
`, dataDir, broker, name, d, rules)
}

// upstreamSub subscribes to filter with a persistent session at QoS 1 and
// collects what arrives.
func upstreamSub(t *testing.T, url, id, filter string) *collector {
	t.Helper()
	col := &collector{}
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(false).
		SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).SetOrderMatters(false)
	o.SetOnConnectHandler(func(c paho.Client) {
		c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { col.add(m.Topic(), m.Payload()) })
	})
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("upstream subscriber: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return col
}

// publisher is `sensorgate simulate` at QoS 1 with a truth file, running
// until stop.
type publisher struct {
	cmd   *exec.Cmd
	out   mqtttest.SyncBuffer
	truth string
	done  chan struct{}
}

func startPublisher(t *testing.T, url, name string, seed uint64) *publisher {
	t.Helper()
	p := &publisher{truth: filepath.Join(t.TempDir(), "truth.json"), done: make(chan struct{})}
	p.cmd = exec.Command(binPath, "simulate", "--broker", url, "--qos", "1", "--sensors", fmt.Sprint(eoSensors),
		"--rate", fmt.Sprint(eoRate), "--duration", "10m", "--seed", fmt.Sprint(seed%1000000),
		"--client-id", "pub-"+name, "--truth", p.truth, "--truth-window", eoWindow.String(), "--quiet")
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// stop interrupts the publisher, which then waits for the PUBACKs of what
// it published and writes the truth.
func (p *publisher) stop(t *testing.T) *load.Truth {
	t.Helper()
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("publisher did not stop: %s", p.out.String())
	}
	tr, err := load.ReadTruth(p.truth)
	if err != nil {
		t.Fatalf("%v: %s", err, p.out.String())
	}
	if tr.Errors > 0 || tr.Messages == 0 || len(tr.Windows) == 0 {
		t.Fatalf("publisher: %d sent, %d failed, %d windows: %s", tr.Messages, tr.Errors, len(tr.Windows), p.out.String())
	}
	return tr
}

// winKey names one sensor, metric and window start.
type winKey struct {
	sensor, metric string
	start          int64
}

// accounting compares the highest rev per summary id upstream with the
// truth, per sensor, metric and window.
type accounting struct {
	readings   uint64 // published
	lost, dup  uint64 // readings missing, readings counted twice
	windows    int
	missing    int // truth windows with no summary upstream
	mismatches []string
}

func (a accounting) exact() bool { return a.lost == 0 && a.dup == 0 && len(a.mismatches) == 0 }

func (a accounting) String() string {
	return fmt.Sprintf("%d readings in %d windows: lost %d, counted twice %d, %d windows missing, %d windows wrong",
		a.readings, a.windows, a.lost, a.dup, a.missing, len(a.mismatches))
}

func account(tr *load.Truth, col *collector) accounting {
	got := map[winKey]summaryJSON{}
	for _, s := range col.summaries() {
		got[winKey{s.Sensor, s.Metric, s.Start}] = s
	}
	var a accounting
	seen := map[winKey]bool{}
	for _, w := range tr.Windows {
		k := winKey{w.Sensor, w.Metric, w.Start}
		seen[k] = true
		a.windows++
		a.readings += w.Count
		s, ok := got[k]
		if !ok {
			a.missing++
			a.lost += w.Count
			a.mismatches = append(a.mismatches, fmt.Sprintf("%-9s %-11s %d  truth n=%d sum=%.3f min=%g max=%g  upstream: none", w.Sensor, w.Metric, w.Start/1e9, w.Count, w.Sum, w.Min, w.Max))
			continue
		}
		if s.Count < w.Count {
			a.lost += w.Count - s.Count
		} else {
			a.dup += s.Count - w.Count
		}
		if s.Count != w.Count || s.Min != w.Min || s.Max != w.Max || math.Abs(s.Sum-w.Sum) > 1e-9*math.Max(1, math.Abs(w.Sum)) {
			a.mismatches = append(a.mismatches, fmt.Sprintf("%-9s %-11s %d  truth n=%d sum=%.3f min=%g max=%g  upstream rev %d: n=%d sum=%.3f min=%g max=%g",
				w.Sensor, w.Metric, w.Start/1e9, w.Count, w.Sum, w.Min, w.Max, s.Rev, s.Count, s.Sum, s.Min, s.Max))
		}
	}
	for k, s := range got {
		if !seen[k] {
			a.dup += s.Count
			a.mismatches = append(a.mismatches, fmt.Sprintf("%-9s %-11s %d  truth: none  upstream rev %d: n=%d", k.sensor, k.metric, k.start/1e9, s.Rev, s.Count))
		}
	}
	sort.Strings(a.mismatches)
	return a
}

// conflicts lists summary ids that arrived with two different contents at
// the same rev (a re-delivery of one record is the same content).
func conflicts(col *collector) []string {
	type idRev struct {
		id  string
		rev int
	}
	first := map[idRev]summaryJSON{}
	var out []string
	for _, m := range col.snapshot() {
		s := m.Summary
		if s == nil {
			continue
		}
		k := idRev{s.ID, s.Rev}
		f, ok := first[k]
		if !ok {
			first[k] = *s
			continue
		}
		if f.Count != s.Count || f.Sum != s.Sum || f.Min != s.Min || f.Max != s.Max {
			out = append(out, fmt.Sprintf("%s rev %d (%s %s %d): n=%d sum=%.3f and n=%d sum=%.3f",
				s.ID, s.Rev, s.Sensor, s.Metric, s.Start/1e9, f.Count, f.Sum, s.Count, s.Sum))
		}
	}
	sort.Strings(out)
	return out
}

// report logs the accounting and the first mismatches.
func (a accounting) report(t *testing.T, what string) {
	t.Logf("%s: %v", what, a)
	for i, m := range a.mismatches {
		if i == 40 {
			t.Logf("  ... %d more", len(a.mismatches)-i)
			break
		}
		t.Logf("  %s", m)
	}
}

// flushOnStop is `run --flush-on-stop` when the binary has it (a
// decommissioning stop emits open windows as final).
var flushOnStop = sync.OnceValue(func() bool {
	out, _ := exec.Command(binPath, "run", "--help").CombinedOutput()
	return strings.Contains(string(out), "flush-on-stop")
})

// eoGateway is one gateway data dir, optionally on powerfs, and its
// processes one after another.
type eoGateway struct {
	t       *testing.T
	cfg     string
	dataDir string // what the gateway sees
	backing string // powerfs: the backing directory
	pfs     *powerfs.FS
	g       *gatewayProc
	starts  int
	logs    strings.Builder // every process's log, for a failure
}

func (e *eoGateway) start(extra ...string) *gatewayProc {
	e.t.Helper()
	e.g = startGateway(e.t, e.cfg, extra...)
	e.starts++
	return e.g
}

// waitSubscribed waits until the current process has subscribed.
func (e *eoGateway) waitSubscribed() {
	e.t.Helper()
	e.g.waitLog("connected and subscribed", 60*time.Second)
}

func (e *eoGateway) ended() {
	e.logs.WriteString(e.g.logs())
}

// cut kills the gateway and cuts the power of its data dir at once, then
// powers it on again.
func (e *eoGateway) cut() {
	e.t.Helper()
	e.g.kill()
	e.ended()
	if err := e.pfs.Cut(); err != nil {
		e.t.Fatal(err)
	}
	e.mount()
}

func (e *eoGateway) mount() {
	e.t.Helper()
	f, err := powerfs.Mount(e.backing, e.dataDir)
	if err != nil {
		e.t.Fatal(err)
	}
	e.pfs = f
}

// outboxPath is the outbox file, to be read only while no gateway runs
// and, on powerfs, after a clean unmount (see powerfs' caveats).
func (e *eoGateway) outboxPath() string {
	if e.pfs != nil {
		return filepath.Join(e.backing, "outbox.db")
	}
	return filepath.Join(e.dataDir, "outbox.db")
}

// outboxIDs lists the record ids still in the outbox.
func outboxIDs(t *testing.T, path string) []string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	var ids []string
	for _, lane := range buffer.Lanes {
		recs, err := buffer.Peek(path, lane, math.MaxInt)
		if err != nil {
			t.Fatalf("peek outbox: %v", err)
		}
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

// finish runs the last gateway until every window of the truth has a
// summary upstream, stops it cleanly (a decommissioning stop with
// --flush-on-stop when the binary has it), and restarts it until the outbox
// is empty, so that everything the gateway will ever send has arrived.
func (e *eoGateway) finish(tr *load.Truth, col *collector) {
	e.t.Helper()
	// Each key's windows close in order and a lane is FIFO, so once the
	// last window of every sensor and metric is upstream, every earlier one
	// that will ever come has come: a window lost for good shows in the
	// accounting, not as a wait.
	last := map[[2]string]int64{}
	for _, w := range tr.Windows {
		k := [2]string{w.Sensor, w.Metric}
		last[k] = max(last[k], w.Start)
	}
	lastSeen := func() bool {
		n := 0
		for _, s := range col.summaries() {
			if st, ok := last[[2]string{s.Sensor, s.Metric}]; ok && st == s.Start {
				n++
			}
		}
		return n == len(last)
	}
	// The last window closes about lateness after its end.
	if !mqtttest.Poll(eoWindow+90*time.Second, lastSeen) {
		e.t.Errorf("the last window of some sensors never arrived upstream")
	}
	for round := 0; ; round++ {
		e.g.terminate()
		e.ended()
		if e.pfs != nil {
			if err := e.pfs.Unmount(); err != nil {
				e.t.Fatal(err)
			}
			e.pfs = nil
		}
		left := outboxIDs(e.t, e.outboxPath())
		if len(left) == 0 {
			return
		}
		if round == 3 {
			e.t.Errorf("outbox still holds %d records after %d clean runs", len(left), round+1)
			return
		}
		if e.backing != "" {
			e.mount()
		}
		e.start(flags()...)
		want := map[string]bool{}
		for _, id := range left {
			want[id] = true
		}
		mqtttest.Poll(60*time.Second, func() bool {
			n := 0
			for _, m := range col.snapshot() {
				if want[m.RecordID] {
					n++
					delete(want, m.RecordID)
				}
			}
			return len(want) == 0
		})
	}
}

func flags() []string {
	if flushOnStop() {
		return []string{"--flush-on-stop"}
	}
	return nil
}

// eoStop is how one cycle stops the gateway.
type eoStop int

const (
	stopKill eoStop = iota
	stopTerm
	stopPower
	stopReload // SIGHUP: the same process reloads its config
)

func (s eoStop) String() string {
	return [...]string{"kill -9", "SIGTERM", "power cut", "SIGHUP"}[s]
}

// runExactlyOnce runs the publisher against a gateway that is stopped
// `cycles` times at random moments and restarted on the same data dir,
// then accounts for what arrived upstream.
func runExactlyOnce(t *testing.T, name string, how eoStop, durable bool, cycles int) (accounting, *collector) {
	mq := eoMosquitto(t)
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 13))
	t.Logf("%s: seed %d, %d × %v, durable %v, --flush-on-stop %v", name, seed, cycles, how, durable, flushOnStop())
	col := upstreamSub(t, mq.URL(), "col-"+name, "up/"+name+"/#")
	e := &eoGateway{t: t, dataDir: t.TempDir()}
	if how == stopPower {
		powerfs.Require(t)
		e.backing = e.dataDir
		e.dataDir = t.TempDir()
		e.mount()
		t.Cleanup(func() {
			if e.pfs != nil {
				if e.g != nil {
					e.g.kill()
				}
				e.pfs.Cut()
			}
		})
	}
	e.cfg = writeConfig(t, t.TempDir(), eoConfig(e.dataDir, mq.URL(), name, durable, ""))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("earlier gateway processes' logs (tail):\n%s", tail(e.logs.String(), 40))
		}
	})

	// The first run creates the persistent session, so the broker queues
	// from the first message on.
	e.start()
	e.waitSubscribed()
	pub := startPublisher(t, mq.URL(), name, seed)
	for i := 0; i < cycles; i++ {
		if how == stopReload {
			// 30 reloads in about 15 s under load (hardening finding 7).
			time.Sleep(time.Duration(300+rng.IntN(400)) * time.Millisecond)
			if err := e.g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if i > 0 {
			e.start()
		}
		if i%4 == 3 {
			// Now and then during start-up and restore.
			time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		} else {
			e.waitSubscribed()
			time.Sleep(time.Duration(200+rng.IntN(1800)) * time.Millisecond)
		}
		switch how {
		case stopKill:
			e.g.kill()
			e.ended()
		case stopTerm:
			e.g.terminate()
			e.ended()
		case stopPower:
			e.cut()
		}
	}
	if how == stopReload {
		e.g.terminate()
		e.ended()
	}
	e.start(flags()...)
	e.waitSubscribed()
	tr := pub.stop(t)
	e.finish(tr, col)
	a := account(tr, col)
	t.Logf("%s: publisher sent %d messages (%d readings, %.0f msg/s) in %d windows; gateway started %d times; %d records upstream",
		name, tr.Messages, tr.Total.Count, tr.Rate, len(tr.Windows), e.starts, len(col.snapshot()))
	return a, col
}

// TestExactlyOnceKill: kill -9 at random moments, at least 30 times; then
// the same with durable: false, which is expected to lose and only
// reported.
func TestExactlyOnceKill(t *testing.T) {
	t.Parallel()
	kills := 30
	var durable, nondurable accounting
	t.Run("durable", func(t *testing.T) {
		t.Parallel()
		durable, _ = runExactlyOnce(t, "kill", stopKill, true, kills)
		durable.report(t, "durable")
		if !durable.exact() {
			t.Errorf("after %d × kill -9 the summaries upstream do not account for every reading exactly once: %v", kills, durable)
		}
	})
	t.Run("nondurable", func(t *testing.T) {
		t.Parallel()
		nondurable, _ = runExactlyOnce(t, "killnd", stopKill, false, kills)
		nondurable.report(t, "durable: false")
	})
	t.Cleanup(func() {
		t.Logf("durable: lost %d of %d (counted twice %d); durable: false: lost %d of %d (counted twice %d)",
			durable.lost, durable.readings, durable.dup, nondurable.lost, nondurable.readings, nondurable.dup)
	})
}

// TestExactlyOnceCleanStop: 20 clean stop/start cycles inside open
// windows: no summary id twice with different contents at one rev, and the
// same exact accounting.
func TestExactlyOnceCleanStop(t *testing.T) {
	t.Parallel()
	const cycles = 20
	a, col := runExactlyOnce(t, "term", stopTerm, true, cycles)
	a.report(t, "clean stops")
	c := conflicts(col)
	t.Logf("clean stops: %d summary ids with two contents at one rev", len(c))
	for i, s := range c {
		if i == 20 {
			break
		}
		t.Logf("  %s", s)
	}
	if len(c) > 0 {
		t.Errorf("%d summary ids arrived with different contents at the same rev (a stop must not be an event upstream)", len(c))
	}
	if !a.exact() {
		t.Errorf("after %d clean stops: %v", cycles, a)
	}
}

// TestExactlyOnceReloads (hardening finding 7): 30 SIGHUP reloads in about
// 15 s under steady QoS 1 input, with the default session settings, lose
// nothing and count nothing twice. Each reload stops the old pipeline with
// receipts pending; the persistent session that durable subscriptions get
// by default makes the broker deliver them again, and the committed ones
// are recognised.
func TestExactlyOnceReloads(t *testing.T) {
	t.Parallel()
	const reloads = 30
	a, col := runExactlyOnce(t, "hup", stopReload, true, reloads)
	a.report(t, "reloads")
	if c := conflicts(col); len(c) > 0 {
		t.Errorf("%d summary ids arrived with different contents at the same rev: %v", len(c), c[:min(len(c), 5)])
	}
	if !a.exact() {
		t.Errorf("after %d reloads: %v", reloads, a)
	}
}

// TestExactlyOncePowerCut: the data dir on powerfs; kill -9 and a power
// cut at once, at least 20 times, restarting on what survived.
func TestExactlyOncePowerCut(t *testing.T) {
	t.Parallel()
	powerfs.Require(t)
	const cuts = 20
	a, _ := runExactlyOnce(t, "power", stopPower, true, cuts)
	a.report(t, "power cuts")
	if !a.exact() {
		t.Errorf("after %d power cuts: %v", cuts, a)
	}
}

// alertJSON is the part of an alert record these tests read.
type alertJSON struct {
	ID     string `json:"id"`
	Rule   string `json:"rule"`
	Sensor string `json:"sensor"`
	State  string `json:"state"`
}

func alerts(col *collector) []alertJSON {
	seen := map[string]bool{}
	var out []alertJSON
	for _, m := range col.snapshot() {
		if m.Kind != "alert" || seen[m.RecordID] {
			continue
		}
		seen[m.RecordID] = true
		var a alertJSON
		if json.Unmarshal(m.Alert, &a) == nil {
			out = append(out, a)
		}
	}
	return out
}

// TestExactlyOnceAlertKill: an alert that fires, a kill -9 while it is
// firing, more readings over the threshold after the restart (no second
// fire), then readings under the clear threshold and a kill -9 right after
// them (the clear is not lost).
func TestExactlyOnceAlertKill(t *testing.T) {
	t.Parallel()
	mq := eoMosquitto(t)
	col := upstreamSub(t, mq.URL(), "col-alert", "up/alert/#")
	rules := `  alerts:
    - {id: hot, sensor: "*", metric: temperature, above: 30, clear_below: 28}
  windows:
    - {name: w, sensor: "*", metric: "*", type: tumbling, size: 10s, lateness: 2s}
`
	e := &eoGateway{t: t, dataDir: t.TempDir()}
	e.cfg = writeConfig(t, t.TempDir(), eoConfig(e.dataDir, mq.URL(), "alert", true, rules))
	pub := client(t, mq.URL(), "alert-pub")
	send := func(v float64, n int) {
		for i := 0; i < n; i++ {
			publish(t, pub, "sensors/node-1/telemetry", 1, fmt.Appendf(nil, `{"ts":%d,"temperature":%g}`, time.Now().UnixMilli(), v))
			time.Sleep(20 * time.Millisecond) // distinct event times
		}
	}
	// Counted by alert id: one firing keeps its id through its clear, so a
	// second firing of the same condition is a second id (a re-delivery
	// of one record is the same id too).
	count := func(state string) int {
		ids := map[string]bool{}
		for _, a := range alerts(col) {
			if a.Rule == "hot" && a.State == state {
				ids[a.ID] = true
			}
		}
		return len(ids)
	}
	e.start()
	e.waitSubscribed()
	send(40, 5)
	mqtttest.WaitFor(t, 60*time.Second, func() bool { return count("fire") > 0 }, "the alert fired upstream")
	e.g.kill()
	e.start()
	e.waitSubscribed()
	send(41, 5) // still over: the alert is still firing, no new fire
	send(20, 3) // under clear_below: clear
	e.g.kill()  // right after: the clear may be in flight
	e.start()
	e.waitSubscribed()
	cleared := mqtttest.Poll(60*time.Second, func() bool { return count("clear") > 0 })
	e.g.terminate()
	as := alerts(col)
	t.Logf("alert: %d firings, %d clears upstream (%d alert records): %+v", count("fire"), count("clear"), len(as), as)
	if n := count("fire"); n != 1 {
		t.Errorf("%d fire records for one firing condition across kill -9, want 1", n)
	}
	if !cleared || count("clear") != 1 {
		t.Errorf("%d clear records, want 1 (the clear was lost across kill -9)", count("clear"))
	}
	var fireID string
	for _, a := range as {
		if a.State == "fire" && fireID == "" {
			fireID = a.ID
		}
		if a.State == "clear" && a.ID != fireID {
			t.Errorf("clear %s does not carry the firing's id %s", a.ID, fireID)
		}
	}
}

// TestExactlyOnceAccountingSelfCheck keeps the accounting honest without a
// broker: exact summaries pass, a partial rev 0 superseded by a complete
// rev 1 passes, and a lost reading, a double count, a missing window and
// two contents at one rev are each caught.
func TestExactlyOnceAccountingSelfCheck(t *testing.T) {
	tr := &load.Truth{Windows: []load.WindowAgg{
		{Sensor: "s1", Metric: "t", Start: 10e9, End: 20e9, Agg: load.Agg{Count: 3, Sum: 6.6, Min: 1.1, Max: 3.3}},
		{Sensor: "s1", Metric: "t", Start: 20e9, End: 30e9, Agg: load.Agg{Count: 1, Sum: 4, Min: 4, Max: 4}},
	}}
	rec := func(seq int, id string, rev int, start int64, n uint64, sum, lo, hi float64) string {
		return fmt.Sprintf(`{"record_id":"e-summaries-%d","kind":"summary","summary":{"id":%q,"rev":%d,"sensor":"s1","metric":"t","start":%d,"count":%d,"sum":%g,"min":%g,"max":%g}}`,
			seq, id, rev, start, n, sum, lo, hi)
	}
	run := func(recs ...string) (accounting, []string) {
		col := &collector{}
		for _, r := range recs {
			col.add("up", []byte(r))
		}
		return account(tr, col), conflicts(col)
	}
	exact := []string{rec(1, "a", 0, 10e9, 3, 6.6, 1.1, 3.3), rec(2, "b", 0, 20e9, 1, 4, 4, 4)}
	if a, c := run(exact...); !a.exact() || len(c) > 0 || a.readings != 4 {
		t.Errorf("exact summaries: %v, conflicts %v", a, c)
	}
	// A re-delivery of one record and a superseding rev are fine.
	if a, c := run(rec(1, "a", 0, 10e9, 2, 3.3, 1.1, 2.2), rec(1, "a", 0, 10e9, 2, 3.3, 1.1, 2.2), rec(3, "a", 1, 10e9, 3, 6.6, 1.1, 3.3), exact[1]); !a.exact() || len(c) > 0 {
		t.Errorf("rev 1 superseding rev 0: %v, conflicts %v", a, c)
	}
	if a, _ := run(rec(1, "a", 0, 10e9, 2, 3.3, 1.1, 2.2), exact[1]); a.lost != 1 || a.exact() {
		t.Errorf("a lost reading: %v", a)
	}
	if a, _ := run(rec(1, "a", 0, 10e9, 4, 7.7, 1.1, 3.3), exact[1]); a.dup != 1 || a.exact() {
		t.Errorf("a reading counted twice: %v", a)
	}
	if a, _ := run(exact[0]); a.missing != 1 || a.lost != 1 {
		t.Errorf("a missing window: %v", a)
	}
	if _, c := run(rec(1, "a", 0, 10e9, 2, 3.3, 1.1, 2.2), rec(2, "a", 0, 10e9, 3, 6.6, 1.1, 3.3)); len(c) != 1 {
		t.Errorf("two contents at one rev: conflicts %v", c)
	}
}
