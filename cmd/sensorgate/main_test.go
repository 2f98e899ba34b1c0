package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/test/leak"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// In-process tests of Main: the wiring that enforces "a clean stop loses
// nothing" (stop order, the final flush, reload handover), with a real
// outbox in t.TempDir(), in-process MQTT brokers and metrics on port 0.
// They synchronise on counters and on Main's started hook, never on sleeps;
// the timeouts below are liveness bounds only.

const waitMax = 20 * time.Second

// mainConfig is a gateway reading JSON from source (one MQTT broker) into
// 1h windows, with one MQTT uplink to upstream.
func mainConfig(dir, source, upstream, grace string) string {
	return fmt.Sprintf(`gateway:
  id: gw-main
  data_dir: %s
  shutdown_grace: %s
  memory_limit: -1 # the process-wide limit stays as the test binary has it
metrics:
  listen: 127.0.0.1:0
sources:
  mqtt:
    - broker: %s
      client_id: gw-main-in
      subscriptions:
        - topic: "site/+/telemetry"
          qos: 1
          format: json
          json: {sensor_topic_segment: 1, time_field: ts, time_format: unix_ms}
rules:
  windows:
    - {name: w, sensor: "*", metric: "*", type: tumbling, size: 1h, lateness: 0s}
uplinks:
  - name: cloud
    type: mqtt
    url: %s
    client_id: gw-main-up
    topic: "up/{gateway}/{lane}"
`, dir, grace, source, upstream)
}

// testMain is a Main running in-process.
type testMain struct {
	t         *testing.T
	m         *Main
	dir       string
	cfgPath   string
	log       *mqtttest.SyncBuffer
	reload    chan os.Signal
	pipelines chan *pipeline
	cancel    context.CancelFunc
	done      chan error
	stopped   bool
}

// startMain writes the config that mkConfig returns for a fresh data dir,
// opens a Main on it and runs it until stop.
func startMain(t *testing.T, mkConfig func(dir string) string, extra func() []namedSource, opts ...func(*Main)) *testMain {
	t.Helper()
	return startMainIn(t, t.TempDir(), mkConfig, extra, opts...)
}

// startMainIn is startMain on the data dir of an earlier one (a restart).
func startMainIn(t *testing.T, dir string, mkConfig func(dir string) string, extra func() []namedSource, opts ...func(*Main)) *testMain {
	t.Helper()
	tm := &testMain{t: t, dir: dir, cfgPath: filepath.Join(dir, "sensorgate.yaml"), log: &mqtttest.SyncBuffer{},
		reload: make(chan os.Signal, 1), pipelines: make(chan *pipeline, 4), done: make(chan error, 1)}
	tm.writeConfig(mkConfig(dir))
	cfg, err := loadConfig(tm.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	tm.m = &Main{Config: cfg, ConfigPath: tm.cfgPath, Reload: tm.reload,
		Logger:       slog.New(slog.NewTextHandler(tm.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		started:      func(p *pipeline) { tm.pipelines <- p },
		extraSources: extra}
	for _, o := range opts {
		o(tm.m)
	}
	if err := tm.m.Open(); err != nil {
		t.Fatal(err)
	}
	if tm.m.MetricsAddr() == "" || strings.HasSuffix(tm.m.MetricsAddr(), ":0") {
		t.Fatalf("metrics address %q after Open", tm.m.MetricsAddr())
	}
	ctx, cancel := context.WithCancel(context.Background())
	tm.cancel = cancel
	go func() { tm.done <- tm.m.Run(ctx) }()
	t.Cleanup(func() {
		if !tm.stopped {
			tm.stop()
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", tm.log.String())
		}
	})
	return tm
}

func (tm *testMain) writeConfig(yaml string) {
	tm.t.Helper()
	if err := os.WriteFile(tm.cfgPath, []byte(yaml), 0o600); err != nil {
		tm.t.Fatal(err)
	}
}

// pipeline waits for the next pipeline Run starts.
func (tm *testMain) pipeline() *pipeline {
	tm.t.Helper()
	select {
	case p := <-tm.pipelines:
		return p
	case err := <-tm.done:
		tm.done <- err
		tm.t.Fatalf("Run returned %v before starting a pipeline", err)
	case <-time.After(waitMax):
		tm.t.Fatal("no pipeline started")
	}
	return nil
}

// stop cancels Run (SIGTERM in the command), waits for it and closes Main.
func (tm *testMain) stop() error {
	tm.t.Helper()
	tm.stopped = true
	tm.cancel()
	var err error
	select {
	case err = <-tm.done:
	case <-time.After(2 * waitMax):
		buf := make([]byte, 1<<20)
		tm.t.Fatalf("Run did not return after cancel\n%s", buf[:runtime.Stack(buf, true)])
	}
	if cerr := tm.m.Close(); cerr != nil {
		tm.t.Errorf("Close: %v", cerr)
	}
	return err
}

// health fetches /healthz from the metrics endpoint.
func (tm *testMain) health() map[string]any {
	tm.t.Helper()
	resp, err := http.Get("http://" + tm.m.MetricsAddr() + "/healthz")
	if err != nil {
		tm.t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		tm.t.Fatal(err)
	}
	return doc
}

// sender publishes readings of sensors node-0..n-1 (two metrics each) with
// the current time as event time, and keeps count.
type sender struct {
	b    *mqtttest.Broker
	sent map[string]uint64 // sensor/metric -> readings
	n    uint64
}

func (s *sender) round(t *testing.T, sensors int) {
	t.Helper()
	now := time.Now().UnixMilli()
	for i := range sensors {
		id := fmt.Sprintf("node-%d", i)
		if err := s.b.Publish("site/"+id+"/telemetry", fmt.Appendf(nil, `{"ts":%d,"temperature":%d,"humidity":%d}`, now, 20+i, 50+i), false, 1); err != nil {
			t.Fatal(err)
		}
		s.sent[id+"/temperature"]++
		s.sent[id+"/humidity"]++
		s.n += 2
	}
}

// publishProbe leaves a retained probe reading on b: every new
// subscription of the gateway receives it exactly once, so a pipeline's
// engine counting one reading means its subscription is in place (a
// subscription count could still show the previous pipeline's, about to
// be removed). Probe summaries are left out of the checks.
func publishProbe(t *testing.T, b *mqtttest.Broker) {
	t.Helper()
	if err := b.Publish("site/probe/telemetry", fmt.Appendf(nil, `{"ts":%d,"probe":1}`, time.Now().UnixMilli()), true, 1); err != nil {
		t.Fatal(err)
	}
}

// waitIngesting waits until p's engine has taken the retained probe.
func waitIngesting(t *testing.T, p *pipeline) {
	t.Helper()
	waitRules(t, p, 1)
}

// waitRules waits until the running engine has taken n readings.
func waitRules(t *testing.T, p *pipeline, n uint64) {
	t.Helper()
	mqtttest.WaitFor(t, waitMax, func() bool { return p.engine.Stats().Readings >= n }, fmt.Sprintf("%d readings in the rules", n))
}

// outboxSummaries reads every summary in the closed outbox file.
func outboxSummaries(t *testing.T, path string) []*ingest.Summary {
	t.Helper()
	recs, err := buffer.Peek(path, buffer.LaneSummaries, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var out []*ingest.Summary
	for _, r := range recs {
		rec, err := ingest.DecodeRecord(r.Payload)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec.Summary)
	}
	return out
}

// checkOnce checks that every sensor/metric sent is summarised exactly
// once per window id, with every reading counted.
func checkOnce(t *testing.T, sums []*ingest.Summary, sent map[string]uint64) {
	t.Helper()
	ids := map[string]int{}
	got := map[string]uint64{}
	for _, s := range sums {
		ids[s.ID]++
		got[s.Sensor+"/"+s.Metric] += s.Count
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("summary %s emitted %d times", id, n)
		}
	}
	for k, n := range sent {
		if got[k] != n {
			t.Errorf("%s: %d readings summarised, %d sent", k, got[k], n)
		}
	}
}

// TestMainCleanStop: cancelling Run with FlushOnStop (run
// --flush-on-stop, decommissioning) flushes the open windows into the
// outbox and commits them, and the final drain waits (woken by the
// outbox's acks, within gateway.shutdown_grace) until the uplink delivered
// them: here the upstream broker is down when the stop begins and comes
// back only once the windows are flushed, so upstream has every reading
// when Run returns only if the drain waited for it.
func TestMainCleanStop(t *testing.T) {
	source := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	publishProbe(t, source)
	upstream := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	rec := upstream.Record("up/gw-main/summaries")
	before := runtime.NumGoroutine()
	tm := startMain(t, func(dir string) string { return mainConfig(dir, source.URL(), upstream.URL(), "60s") }, nil,
		func(m *Main) { m.FlushOnStop = true })
	p := tm.pipeline()
	waitIngesting(t, p)
	base := p.engine.Stats().Readings
	s := &sender{b: source, sent: map[string]uint64{}}
	for range 3 {
		s.round(t, 4)
	}
	waitRules(t, p, base+s.n)
	if st := p.engine.Stats(); st.Summaries != 0 || st.OpenWindows == 0 {
		t.Fatalf("before the stop: %d summaries, %d open windows; want 0 and some", st.Summaries, st.OpenWindows)
	}
	comps, _ := tm.health()["components"].(map[string]any)
	if _, ok := comps["rules"]; !ok {
		t.Fatalf("/healthz components %v: no rules", comps)
	}

	upstream.Stop()
	ob := tm.m.outbox
	tm.cancel() // SIGTERM
	mqtttest.WaitFor(t, waitMax, func() bool { return p.engine.Stats().Summaries > 0 }, "the windows flushed")
	upstream.Start()
	if err := tm.stop(); err != nil {
		t.Fatal(err)
	}
	// Read after Run returned, without waiting: the drain already did.
	var counted uint64
	for _, m := range rec.Messages() {
		counted += summaryCounts(t, m.Payload)
	}
	if counted != s.n {
		t.Fatalf("upstream has %d readings summarised when Run returned, %d sent", counted, s.n)
	}
	if d := outboxDepth(ob); d != 0 {
		t.Fatalf("%d records undelivered after a drain with a reachable upstream", d)
	}
	leak.Wait(t, before)
}

// summaryCounts adds up the counts of the summaries in one uplink message
// (one record or an array of them).
func summaryCounts(t *testing.T, payload []byte) uint64 {
	t.Helper()
	var n uint64
	for _, sm := range upSummaries(t, payload) {
		n += sm.Count
	}
	return n
}

// TestMainReloadHandsOver: a reload to a config with the same windows stops
// the old pipeline without flushing, the new engine adopts its open
// windows, and the stop after it flushes one summary per window covering
// readings from both sides of the reload. The outbox stays open across
// the reload (the upstream is unreachable, so everything stays in it).
func TestMainReloadHandsOver(t *testing.T) {
	source := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	publishProbe(t, source)
	upstream := "tcp://" + mqtttest.FreeAddr(t) // nothing listens: records stay in the outbox
	before := runtime.NumGoroutine()
	var dir string
	tm := startMain(t, func(d string) string { dir = d; return mainConfig(d, source.URL(), upstream, "10ms") }, nil,
		func(m *Main) { m.FlushOnStop = true }) // the last stop emits the windows, to count them
	ob := tm.m.outbox
	p1 := tm.pipeline()
	waitIngesting(t, p1)
	base := p1.engine.Stats().Readings
	s := &sender{b: source, sent: map[string]uint64{}}
	for range 2 {
		s.round(t, 3)
	}
	waitRules(t, p1, base+s.n)

	// A rejected reload changes nothing.
	tm.writeConfig("gateway: {id: gw-main}\nrules: {windows: [{name: w, size: nope}]}\n")
	tm.reload <- os.Interrupt
	mqtttest.WaitFor(t, waitMax, func() bool { return strings.Contains(tm.log.String(), "config reload rejected") }, "the rejected reload")

	// The same windows under another shutdown grace: handed over.
	tm.writeConfig(mainConfig(dir, source.URL(), upstream, "20ms"))
	tm.reload <- os.Interrupt
	p2 := tm.pipeline()
	if p2 == p1 {
		t.Fatal("reload kept the pipeline")
	}
	if tm.m.outbox != ob {
		t.Fatal("reload reopened the outbox")
	}
	if st := p1.engine.Stats(); st.Summaries != 0 {
		t.Fatalf("the old engine emitted %d summaries at the reload; its windows should be handed over", st.Summaries)
	}
	if st := p2.engine.Stats(); st.OpenWindows == 0 {
		t.Fatal("the new engine adopted no open windows")
	}
	waitIngesting(t, p2)
	base, first := p2.engine.Stats().Readings, s.n
	for range 2 {
		s.round(t, 3)
	}
	waitRules(t, p2, base+s.n-first)
	if err := tm.stop(); err != nil {
		t.Fatal(err)
	}
	sums := outboxSummaries(t, filepath.Join(dir, "outbox.db"))
	if len(sums) == 0 {
		t.Fatal("no summaries in the outbox after the stop")
	}
	checkOnce(t, sums, s.sent)
	leak.Wait(t, before)
}

// TestMainFailingSource: a source whose broker is unreachable is reported
// (counted, with its last error, on /healthz) while the gateway runs, and
// does not hold up the stop; a source that returns an error stops the
// pipeline the clean way (what it delivered is in the last checkpoint)
// and Run returns that error.
func TestMainFailingSource(t *testing.T) {
	t.Run("unreachable broker", func(t *testing.T) {
		before := runtime.NumGoroutine()
		source := "tcp://" + mqtttest.FreeAddr(t)
		upstream := "tcp://" + mqtttest.FreeAddr(t)
		tm := startMain(t, func(dir string) string { return mainConfig(dir, source, upstream, "10ms") }, nil)
		tm.pipeline()
		mqtttest.WaitFor(t, waitMax, func() bool {
			comps, _ := tm.health()["components"].(map[string]any)
			src, _ := comps["source_mqtt0"].(map[string]any)
			n, _ := src["ConnectFailures"].(float64)
			msg, _ := src["LastError"].(string)
			return n >= 1 && msg != ""
		}, "the source's connect failure on /healthz")
		if err := tm.stop(); err != nil {
			t.Fatal(err)
		}
		leak.Wait(t, before)
	})
	t.Run("source error", func(t *testing.T) {
		boom := errors.New("boom")
		const n = 5
		failing := ingest.SourceFunc(func(ctx context.Context, out chan<- ingest.Reading) error {
			now := time.Now().UnixNano()
			for i := range n {
				select {
				case out <- ingest.Reading{Sensor: "bad-0", Metric: "temperature", Value: float64(i), Time: now, Arrival: now}:
				case <-ctx.Done():
					return nil
				}
			}
			return boom
		})
		extra := func() []namedSource { return []namedSource{{"failing", failing, func() any { return struct{}{} }}} }
		source := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
		upstream := "tcp://" + mqtttest.FreeAddr(t)
		before := runtime.NumGoroutine()
		var dir string
		tm := startMain(t, func(d string) string { dir = d; return mainConfig(d, source.URL(), upstream, "10ms") }, extra)
		var err error
		select {
		case err = <-tm.done:
		case <-time.After(2 * waitMax):
			t.Fatal("Run did not return after its source failed")
		}
		tm.done <- err // for stop
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), "source failing") {
			t.Fatalf("Run returned %v, want the source's error", err)
		}
		if err := tm.stop(); !errors.Is(err, boom) {
			t.Fatal(err)
		}
		// What it delivered is in the last checkpoint: a start that
		// decommissions (flushes on stop) emits it, once.
		again := startMainIn(t, dir, func(d string) string { return mainConfig(d, source.URL(), upstream, "10ms") }, nil,
			func(m *Main) { m.FlushOnStop = true })
		again.pipeline()
		if err := again.stop(); err != nil {
			t.Fatal(err)
		}
		checkOnce(t, outboxSummaries(t, filepath.Join(dir, "outbox.db")), map[string]uint64{"bad-0/temperature": n})
		leak.Wait(t, before)
	})
}
