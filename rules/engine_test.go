package rules

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
)

const m1Config = `
alerts:
  - {id: hot, sensor: "gh-*", metric: temperature, above: 30, clear_below: 29, severity: critical}
  - {id: cold, sensor: "gh-*", metric: temperature, below: 5, clear_above: 6}
windows:
  - {name: 10s, sensor: "*", metric: "*", type: tumbling, size: 10s, lateness: 2s}
`

func TestThresholdAlertHysteresis(t *testing.T) {
	checkNoLeak(t)
	h := newHarness(t, parseConfig(t, m1Config), func(s string) map[string]string {
		return map[string]string{"location": "house-" + s}
	})
	vals := []float64{25, 30, 30.5, 31, 29.5, 29, 28.9, 31, 4, 3, 5.5, 6, 6.1}
	for i, v := range vals {
		h.send(rd("gh-1", "temperature", float64(i), v))
	}
	// Another sensor matching no rule, and a metric no rule watches.
	h.send(rd("lab-1", "temperature", 1, 99))
	h.send(rd("gh-1", "humidity", 1, 99))
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	got := h.sink.alerts
	type want struct {
		rule, state string
		value, th   float64
		since, at   float64
		seq         uint32
	}
	wants := []want{
		{"hot", ingest.AlertFire, 30.5, 30, 2, 2, 0},
		{"hot", ingest.AlertClear, 28.9, 29, 2, 6, 1},
		{"hot", ingest.AlertFire, 31, 30, 7, 7, 0},
		{"hot", ingest.AlertClear, 4, 29, 7, 8, 1},
		{"cold", ingest.AlertFire, 4, 5, 8, 8, 0},
		{"cold", ingest.AlertClear, 6.1, 6, 8, 12, 1},
	}
	if len(got) != len(wants) {
		t.Fatalf("got %d alerts, want %d: %+v", len(got), len(wants), got)
	}
	for i, w := range wants {
		a := got[i]
		if a.Rule != w.rule || a.State != w.state || a.Value != w.value || a.Threshold != w.th ||
			a.Since != sec(w.since) || a.Time != sec(w.at) || a.Seq != w.seq || a.Sensor != "gh-1" ||
			a.Metric != "temperature" || a.Unit != "u" || a.Meta["location"] != "house-gh-1" || a.ID == "" || a.Message == "" {
			t.Errorf("alert %d = %+v, want %+v", i, a, w)
		}
	}
	if got[0].Severity != "critical" || got[4].Severity != "warning" {
		t.Errorf("severities %q %q", got[0].Severity, got[4].Severity)
	}
	if got[0].ID != got[1].ID || got[0].ID == got[2].ID {
		t.Errorf("alert ids: fire/clear must share, firings differ: %s %s %s", got[0].ID, got[1].ID, got[2].ID)
	}
	if s := h.e.Stats(); s.Alerts != 6 || s.Readings != uint64(len(vals)+2) {
		t.Errorf("stats %+v", s)
	}
}

func TestAlertHoldAndRenotify(t *testing.T) {
	cfg := parseConfig(t, `
alerts:
  - {id: hot, metric: t, above: 10, hold: 5s, renotify: 10s}
`)
	h := newHarness(t, cfg, nil)
	for _, p := range [][2]float64{{0, 11}, {3, 12}, {4, 9}, {5, 11}, {8, 11}, {10, 12}, {15, 13}, {19, 13}, {20, 13}, {21, 9}} {
		h.send(rd("s", "t", p[0], p[1]))
	}
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	a := h.sink.alerts
	// Condition from 5 on; holds 5s at 10 -> fire (since 5); renotify at 20; clear at 21.
	if len(a) != 3 || a[0].State != "fire" || a[0].Time != sec(10) || a[0].Since != sec(5) ||
		a[1].State != "fire" || a[1].Seq != 1 || a[1].Time != sec(20) ||
		a[2].State != "clear" || a[2].Seq != 2 || a[2].Time != sec(21) || a[2].Since != sec(5) {
		t.Fatalf("alerts %+v", a)
	}
}

func TestTumblingExactAccounting(t *testing.T) {
	checkNoLeak(t)
	h := newHarness(t, parseConfig(t, m1Config), nil)
	rng := rand.New(rand.NewPCG(1, 2))
	type agg struct {
		n        uint64
		sum      float64
		min, max float64
	}
	want := map[[3]any]*agg{}
	const n = 5000
	sensors := []string{"gh-1", "gh-2", "x"}
	metrics := []string{"temperature", "humidity"}
	base := 1_700_000_000.0
	for i := range n {
		s, m := sensors[rng.IntN(3)], metrics[rng.IntN(2)]
		// Mostly in order with jitter smaller than the lateness, so none is late.
		ts := base + float64(i)*0.01 - rng.Float64()*1.5
		v := math.Round(rng.NormFloat64()*1000) / 100
		h.send(ingest.Reading{Sensor: s, Metric: m, Value: v, Time: sec(ts), Unit: "u"})
		st := sec(ts) - sec(ts)%sec(10)
		k := [3]any{s, m, st}
		a := want[k]
		if a == nil {
			a = &agg{min: v, max: v}
			want[k] = a
		}
		a.n++
		a.sum += v
		a.min, a.max = min(a.min, v), max(a.max, v)
	}
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, s := range h.sink.summaries {
		total += s.Count
		k := [3]any{s.Sensor, s.Metric, s.Start}
		a := want[k]
		if a == nil {
			t.Fatalf("unexpected summary %+v", s)
		}
		delete(want, k)
		if s.End-s.Start != sec(10) || s.Start%sec(10) != 0 || s.Window != "10s" || s.Unit != "u" {
			t.Errorf("bounds %+v", s)
		}
		if s.Count != a.n || s.Min != a.min || s.Max != a.max || math.Abs(s.Mean-a.sum/float64(a.n)) > 1e-9 {
			t.Errorf("summary %+v, want %+v", s, *a)
		}
		if s.ID != ingest.SummaryID("10s", s.Sensor, "", s.Metric, s.Start, s.End) {
			t.Errorf("id %s", s.ID)
		}
	}
	if total != n || len(want) != 0 {
		t.Fatalf("summaries account for %d readings, want %d; %d windows missing", total, n, len(want))
	}
	if st := h.e.Stats(); st.Late != 0 || st.OpenWindows != 0 || st.Summaries != uint64(len(h.sink.summaries)) {
		t.Errorf("stats %+v", st)
	}
}

func TestWatermarkLateAndRejected(t *testing.T) {
	h := newHarness(t, parseConfig(t, m1Config), nil)
	h.send(rd("a", "m", 1, 1))
	h.send(rd("a", "m", 5, 2))
	h.send(rd("a", "m", 11.9, 3)) // watermark 9.9: [0,10) still open
	h.send(rd("a", "m", 8, 4))    // in time
	h.send(rd("a", "m", 12, 5))   // watermark 10: [0,10) closes
	h.send(rd("a", "m", 9, 6))    // late: dropped and counted
	h.send(rd("a", "m", 13, math.NaN()))
	h.send(ingest.Reading{Sensor: "a", Metric: "m", Value: math.Inf(1), Time: sec(13)})
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	s := h.sink.summaries
	if len(s) != 2 {
		t.Fatalf("summaries %+v", s)
	}
	if s[0].Start != 0 || s[0].Count != 3 || s[0].Sum != 7 || s[0].Late != 0 || s[0].First != 1 || s[0].Last != 4 {
		t.Errorf("first window %+v", s[0])
	}
	// The late and the rejected readings are reported with the key's next summary.
	if s[1].Start != sec(10) || s[1].Count != 2 || s[1].Late != 1 || s[1].Rejected != 2 {
		t.Errorf("second window %+v", s[1])
	}
	if st := h.e.Stats(); st.Late != 1 || st.Rejected != 2 || st.Readings != 8 {
		t.Errorf("stats %+v", st)
	}
}

func TestTickClosesIdleKeys(t *testing.T) {
	h := newHarness(t, parseConfig(t, m1Config), nil)
	t0 := time.Unix(1_700_000_000, 0) // a multiple of 10 s
	h.tickAt(t0)
	h.send(ingest.Reading{Sensor: "a", Metric: "m", Value: 1, Time: t0.Add(time.Second).UnixNano()})
	h.tickAt(t0.Add(1 * time.Second)) // anchors the key: event 1s at wall 1s
	h.tickAt(t0.Add(11 * time.Second))
	if n := len(h.snapshot()); n != 0 {
		t.Fatalf("window closed before end+lateness: %d summaries", n)
	}
	h.tickAt(t0.Add(12 * time.Second))
	if got := h.snapshot(); len(got) != 1 || got[0].Count != 1 || got[0].Start != t0.UnixNano() {
		t.Fatalf("idle key not closed by the tick: %+v", got)
	}
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	if len(h.sink.summaries) != 1 {
		t.Fatalf("flush emitted again: %+v", h.sink.summaries)
	}
}

func (h *harness) snapshot() []ingest.Summary {
	h.sink.mu.Lock()
	defer h.sink.mu.Unlock()
	return append([]ingest.Summary(nil), h.sink.summaries...)
}

func TestSeveralWindowsMatch(t *testing.T) {
	cfg := parseConfig(t, `
windows:
  - {name: all, size: 10s}
  - {name: temps, metric: "temp*", size: 1m}
  - {name: gh, sensor: "gh-?", metric: temperature, size: 10s}
`)
	h := newHarness(t, cfg, nil)
	h.send(rd("gh-1", "temperature", 1, 20))
	h.send(rd("gh-10", "temperature", 2, 21))
	h.send(rd("gh-1", "humidity", 3, 50))
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, s := range h.sink.summaries {
		got[s.Window+"/"+s.Sensor+"/"+s.Metric] += int(s.Count)
	}
	want := map[string]int{
		"all/gh-1/temperature": 1, "all/gh-10/temperature": 1, "all/gh-1/humidity": 1,
		"temps/gh-1/temperature": 1, "temps/gh-10/temperature": 1,
		"gh/gh-1/temperature": 1,
	}
	if len(got) != len(want) {
		t.Fatalf("got %v want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}

func TestRunCancelAndSinkError(t *testing.T) {
	checkNoLeak(t)
	cfg := parseConfig(t, m1Config)
	t.Run("cancel", func(t *testing.T) {
		e, _ := New(cfg, Options{})
		in := make(chan ingest.Reading, 1)
		in <- rd("a", "m", 1, 1)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		sink := &collect{}
		go func() { done <- e.Run(ctx, in, sink) }()
		time.Sleep(10 * time.Millisecond)
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Run ignores ctx")
		}
		if len(sink.summaries) != 0 {
			t.Fatal("hard stop flushed")
		}
	})
	t.Run("sink", func(t *testing.T) {
		e, _ := New(cfg, Options{})
		in := make(chan ingest.Reading, 4)
		in <- rd("a", "m", 1, 1)
		in <- rd("a", "m", 20, 1) // closes [0,10)
		sink := &collect{failAfter: 1}
		err := e.Run(context.Background(), in, sink)
		if !errors.Is(err, errSinkTest) {
			t.Fatalf("Run = %v, want the sink error", err)
		}
	})
	t.Run("twice", func(t *testing.T) {
		e, _ := New(cfg, Options{})
		in := make(chan ingest.Reading)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx, in, &collect{}) }()
		in <- rd("a", "m", 1, 1) // Run is running once this is taken
		if err := e.Run(ctx, in, &collect{}); !errors.Is(err, ErrRunning) {
			t.Errorf("second Run = %v", err)
		}
		cancel()
		<-done
	})
}

func TestNewRejectsInvalid(t *testing.T) {
	_, err := New(Config{Windows: []WindowConfig{{Name: "x", Type: Tumbling, Time: EventTime, Late: LateDrop, Sensor: "*", Metric: "*"}}}, Options{})
	var fe *ingest.FieldError
	if !errors.As(err, &fe) || fe.Path != "windows[0].size" {
		t.Fatalf("New = %v", err)
	}
}

func TestProcessSteadyStateAllocs(t *testing.T) {
	cfg := parseConfig(t, m1Config)
	e, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	em := newEmitter(context.Background(), discard{})
	sensors := []string{"gh-1", "gh-2", "gh-3"}
	var i int64
	step := func() {
		r := ingest.Reading{Sensor: sensors[i%3], Metric: "temperature", Value: float64(20 + i%7), Time: i * int64(time.Millisecond), Unit: "degC"}
		i++
		if err := e.process(em, &r); err != nil {
			t.Fatal(err)
		}
	}
	for range 100_000 { // warm up: routes, keys, bucket free list
		step()
	}
	// Includes window closes every 10 s of event time (summaries are
	// emitted from a reused struct; their ID string is the only
	// allocation, amortised over a window's readings).
	if n := testing.AllocsPerRun(20_000, step); n != 0 {
		t.Fatalf("%v allocations per reading", n)
	}
}

type discard struct{}

func (discard) Summary(context.Context, *ingest.Summary) error { return nil }
func (discard) Alert(context.Context, *ingest.Alert) error     { return nil }

func TestEvictionAndOverflow(t *testing.T) {
	cfg := parseConfig(t, `
max_routes: 3
key_ttl: 1m
alerts:
  - {id: hot, metric: m, above: 10}
stages:
  - {type: deadband, delta: 1}
windows:
  - {name: 10s, size: 10s}
`)
	h := newHarness(t, cfg, nil)
	t0 := time.Unix(1000, 0)
	h.tickAt(t0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	h.send(ingest.Reading{Sensor: "a", Metric: "m", Value: 1, Time: at(1).UnixNano(), Arrival: at(1).UnixNano()})
	h.send(ingest.Reading{Sensor: "b", Metric: "m", Value: 11, Time: at(1).UnixNano(), Arrival: at(1).UnixNano()}) // fires
	h.send(ingest.Reading{Sensor: "c", Metric: "m", Value: 1, Time: at(1).UnixNano(), Arrival: at(1).UnixNano()})
	h.send(ingest.Reading{Sensor: "d", Metric: "m", Value: 1, Time: at(1).UnixNano(), Arrival: at(1).UnixNano()}) // overflow
	h.tickAt(at(2))
	if st := h.e.Stats(); st.Routes != 3 || st.Keys != 3 || st.Overflow != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Windows close after 10 s; after the TTL the idle routes go, except
	// b with its firing alert.
	h.tickAt(at(30))
	h.tickAt(at(90))
	if st := h.e.Stats(); st.Routes != 1 || st.Keys != 1 || st.OpenWindows != 0 {
		t.Fatalf("after ttl: %+v", st)
	}
	// Room again: d gets a route; a's deadband memory is gone, so the same
	// value passes again.
	h.send(ingest.Reading{Sensor: "d", Metric: "m", Value: 1, Time: at(91).UnixNano()})
	h.send(ingest.Reading{Sensor: "a", Metric: "m", Value: 1, Time: at(91).UnixNano()})
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	var counts = map[string]uint64{}
	for _, s := range h.sink.summaries {
		counts[s.Sensor] += s.Count
	}
	if counts["a"] != 2 || counts["b"] != 1 || counts["c"] != 1 || counts["d"] != 1 {
		t.Fatalf("counts %v", counts)
	}
	if st := h.e.Stats(); st.Overflow != 1 || st.Alerts != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAbsurdTimesRejected(t *testing.T) {
	h := newHarness(t, parseConfig(t, m1Config), nil)
	h.send(ingest.Reading{Sensor: "a", Metric: "m", Value: 1, Time: math.MaxInt64})
	h.send(ingest.Reading{Sensor: "a", Metric: "m", Value: 1, Time: math.MinInt64})
	h.send(rd("a", "m", 1, 2))
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	if s := h.sink.summaries; len(s) != 1 || s[0].Count != 1 || s[0].Rejected != 2 {
		t.Fatalf("summaries %+v", s)
	}
}

func TestAlertIgnoresOutOfOrder(t *testing.T) {
	h := newHarness(t, parseConfig(t, "alerts:\n  - {id: hot, above: 10, clear_below: 9}\n"), nil)
	h.send(rd("s", "m", 10, 11)) // fire
	h.send(rd("s", "m", 5, 1))   // older than the state: ignored, no clear
	h.send(rd("s", "m", 11, 8))  // clear
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	a := h.sink.alerts
	if len(a) != 2 || a[0].State != "fire" || a[1].State != "clear" || a[1].Time != sec(11) {
		t.Fatalf("alerts %+v", a)
	}
}

func TestSessionLateExtension(t *testing.T) {
	h := newHarness(t, parseConfig(t, "windows:\n  - {type: session, gap: 5s, lateness: 1s}\n"), nil)
	h.send(rd("s", "m", 10, 1))
	h.send(rd("s", "m", 16, 1)) // watermark 15: [10, 15) closes
	// 12 is within the gap after the emitted session: it would extend it, so it is late
	h.send(rd("s", "m", 12, 1))
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	s := h.sink.summaries
	if len(s) != 2 || s[0].Start != sec(10) || s[0].End != sec(15) || s[0].Count != 1 ||
		s[1].Start != sec(16) || s[1].Count != 1 || s[1].Late != 1 {
		t.Fatalf("summaries %+v", s)
	}
}

// TestDefaultTickerClosesIdleWindow uses the internal ticker and the real
// clock: a window of an idle sensor is emitted without more input.
func TestDefaultTickerClosesIdleWindow(t *testing.T) {
	checkNoLeak(t)
	e, err := New(parseConfig(t, "windows:\n  - {size: 100ms}\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := make(chan ingest.Reading)
	sink := &collect{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, in, sink) }()
	now := time.Now().UnixNano()
	in <- ingest.Reading{Sensor: "a", Metric: "m", Value: 1, Time: now, Arrival: now}
	deadline := time.Now().Add(20 * time.Second)
	for e.Stats().Summaries == 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle window not closed by the internal ticker within 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.summaries) != 1 || sink.summaries[0].Count != 1 {
		t.Fatalf("summaries %+v", sink.summaries)
	}
}

func TestClosedTickChannel(t *testing.T) {
	tick := make(chan time.Time)
	close(tick)
	e, _ := New(parseConfig(t, m1Config), Options{Tick: tick})
	in := make(chan ingest.Reading, 1)
	in <- rd("a", "m", 1, 1)
	close(in)
	sink := &collect{}
	if err := e.Run(context.Background(), in, sink); err != nil || len(sink.summaries) != 1 {
		t.Fatalf("Run = %v, %d summaries", err, len(sink.summaries))
	}
}
