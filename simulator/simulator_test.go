package simulator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/test/leak"
)

// fakeClock is a clock that only moves when the simulator waits on it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), ch: make(chan time.Time, 1)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.t = c.t.Add(d)
	now := c.t
	c.mu.Unlock()
	select {
	case <-c.ch: // not consumed last time (Run was cancelled)
	default:
	}
	c.ch <- now
	return c.ch
}

func (c *fakeClock) options(seed int64) Options {
	return Options{Seed: seed, Now: c.Now, After: c.After}
}

// collect runs sim with a fake clock until n readings arrived.
func collect(t *testing.T, sensors []Sensor, seed int64, n int) ([]ingest.Reading, *Simulator) {
	t.Helper()
	clk := newFakeClock()
	sim, err := New(sensors, clk.options(seed))
	if err != nil {
		t.Fatal(err)
	}
	return runN(t, sim, n), sim
}

func runN(t *testing.T, sim *Simulator, n int) []ingest.Reading {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan ingest.Reading, 16)
	done := make(chan error, 1)
	go func() { done <- sim.Run(ctx, out) }()
	var got []ingest.Reading
	timeout := time.After(20 * time.Second)
	for len(got) < n {
		select {
		case r := <-out:
			got = append(got, r)
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		case <-timeout:
			t.Fatalf("only %d of %d readings within 20s", len(got), n)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	return got
}

func walkSensor(id string) Sensor {
	return Sensor{ID: id, Config: SensorConfig{
		Interval: time.Second,
		Jitter:   300 * time.Millisecond,
		Metrics: map[string]Signal{
			"temperature": {Model: ModelRandomWalk, Base: 20, Step: 0.5, Noise: 0.1, Min: -40, Max: 85, Unit: "°C"},
			"humidity":    {Model: ModelSine, Base: 50, Amplitude: 10, Noise: 1, Period: time.Minute, Unit: "%"},
		},
	}}
}

// byKey groups values by sensor/metric in arrival order.
func byKey(rs []ingest.Reading) map[string][]float64 {
	m := map[string][]float64{}
	for _, r := range rs {
		k := r.Sensor + "/" + r.Metric
		m[k] = append(m[k], r.Value)
	}
	return m
}

func TestRepeatable(t *testing.T) {
	a, _ := collect(t, []Sensor{walkSensor("a"), walkSensor("b")}, 42, 400)
	b, _ := collect(t, []Sensor{walkSensor("a"), walkSensor("b")}, 42, 400)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("reading %d differs: %+v vs %+v", i, a[i], b[i])
		}
	}
	// The values of sensor a do not depend on which other sensors exist or
	// on the schedule (a different jitter and interval ordering).
	other := walkSensor("a")
	other.Config.Jitter = 0
	c, _ := collect(t, []Sensor{{ID: "zzz", Config: SensorConfig{Interval: 100 * time.Millisecond, Metrics: map[string]Signal{"x": {}}}}, other}, 42, 2000)
	va, vc := byKey(a)["a/temperature"], byKey(c)["a/temperature"]
	if len(vc) < 50 || len(va) < 50 {
		t.Fatalf("too few samples: %d %d", len(va), len(vc))
	}
	for i := 0; i < 50; i++ {
		if va[i] != vc[i] {
			t.Fatalf("a/temperature sample %d: %v alone vs %v with other sensors", i, va[i], vc[i])
		}
	}
	d, _ := collect(t, []Sensor{walkSensor("a"), walkSensor("b")}, 43, 400)
	if byKey(d)["a/temperature"][5] == va[5] {
		t.Fatal("a different seed gave the same random walk")
	}
}

func TestModels(t *testing.T) {
	const n = 8
	// Interval 1s, period 4s: sample k is at nominal time k seconds.
	for _, tc := range []struct {
		sig  Signal
		want [n]float64
	}{
		{Signal{Model: ModelConstant, Base: 3.5}, [n]float64{3.5, 3.5, 3.5, 3.5, 3.5, 3.5, 3.5, 3.5}},
		{Signal{Model: ModelSine, Base: 10, Amplitude: 2, Period: 4 * time.Second}, [n]float64{10, 12, 10, 8, 10, 12, 10, 8}},
		{Signal{Model: ModelStep, Base: 1, Amplitude: 5, Period: 2 * time.Second}, [n]float64{1, 1, 6, 6, 1, 1, 6, 6}},
		{Signal{Model: ModelSawtooth, Base: 0, Amplitude: 8, Period: 4 * time.Second}, [n]float64{0, 2, 4, 6, 0, 2, 4, 6}},
		{Signal{Model: ModelSawtooth, Base: 0, Amplitude: 8, Period: 4 * time.Second, Max: 5, Min: 1}, [n]float64{1, 2, 4, 5, 1, 2, 4, 5}},
		{Signal{Model: ModelRandomWalk, Base: 7}, [n]float64{7, 7, 7, 7, 7, 7, 7, 7}},
	} {
		t.Run(tc.sig.Model, func(t *testing.T) {
			rs, _ := collect(t, []Sensor{{ID: "s", Config: SensorConfig{Interval: time.Second, Metrics: map[string]Signal{"m": tc.sig}}}}, 1, n)
			for i, r := range rs {
				if math.Abs(r.Value-tc.want[i]) > 1e-9 {
					t.Errorf("sample %d: %v, want %v", i, r.Value, tc.want[i])
				}
			}
		})
	}
}

func TestRandomWalkStaysInRange(t *testing.T) {
	sig := Signal{Model: ModelRandomWalk, Base: 5, Step: 3, Noise: 1, Min: 0, Max: 10}
	rs, _ := collect(t, []Sensor{{ID: "s", Config: SensorConfig{Metrics: map[string]Signal{"m": sig}}}}, 9, 3000)
	distinct := map[float64]bool{}
	for _, r := range rs {
		if r.Value < 0 || r.Value > 10 {
			t.Fatalf("value %v outside [0, 10]", r.Value)
		}
		distinct[r.Value] = true
	}
	if len(distinct) < 100 {
		t.Fatalf("random walk took only %d distinct values", len(distinct))
	}
}

func TestScheduleAndFields(t *testing.T) {
	s := walkSensor("gh-1")
	rs, sim := collect(t, []Sensor{s}, 5, 200)
	var prev int64
	first := rs[0].Time
	for i, r := range rs {
		if r.Time != r.Arrival {
			t.Fatalf("reading %d: Time %d != Arrival %d", i, r.Time, r.Arrival)
		}
		if r.Sensor != "gh-1" {
			t.Fatalf("sensor %q", r.Sensor)
		}
		want := map[string]string{"temperature": "°C", "humidity": "%"}[r.Metric]
		if r.Unit != want {
			t.Fatalf("metric %q unit %q, want %q", r.Metric, r.Unit, want)
		}
		// Metrics of one sample share a time; samples are nominally 1s
		// apart, each within ±300ms (the jitter) of its nominal time. The
		// first sample is jittered too, so against first + k s the bound
		// is ±600ms.
		k := int64(i / 2)
		nominal := first + k*int64(time.Second)
		if d := r.Time - nominal; d < -int64(600*time.Millisecond) || d > int64(600*time.Millisecond) {
			t.Fatalf("sample %d at %v from nominal", k, time.Duration(d))
		}
		if r.Time < prev {
			t.Fatalf("time went back without an out-of-order fault")
		}
		prev = r.Time
	}
	// Metrics go out in name order.
	if rs[0].Metric != "humidity" || rs[1].Metric != "temperature" {
		t.Fatalf("metric order %q %q", rs[0].Metric, rs[1].Metric)
	}
	st := sim.Stats()
	if st.Readings < 200 || st.Samples < 100 || st.Sensors != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFaults(t *testing.T) {
	clean := walkSensor("s")
	clean.Config.Jitter = 0
	faulty := clean
	faulty.Config.Faults = Faults{SpikeProb: 0.05, SpikeSize: 1000, DropoutProb: 0.02, StuckProb: 0.01,
		OutOfOrderProb: 0.05, DuplicateProb: 0.05, MalformedProb: 0.02}
	cr, _ := collect(t, []Sensor{clean}, 11, 4000)
	fr, sim := collect(t, []Sensor{faulty}, 11, 4000)
	st := sim.Stats()
	if st.Spikes == 0 || st.Dropouts == 0 || st.Stuck == 0 || st.OutOfOrder == 0 || st.Duplicates == 0 || st.Malformed == 0 {
		t.Fatalf("some fault never happened: %+v", st)
	}
	// Classify the faulty stream against the clean one: the clean value of
	// sample k is recovered from the nominal time.
	t0 := cr[0].Time
	cleanAt := map[string]float64{}
	for _, r := range cr {
		cleanAt[key(r.Metric, (r.Time-t0)/int64(time.Second))] = r.Value
	}
	var spikes, malformed, ooo, equal int
	seen := map[string]int{}
	for _, r := range fr {
		k := (r.Arrival - t0) / int64(time.Second)
		if lag := r.Arrival - r.Time; lag > 0 {
			if lag > int64(5*time.Second) {
				t.Fatalf("lag %v beyond out_of_order_lag (5 intervals)", time.Duration(lag))
			}
			ooo++
		}
		seen[key(r.Metric, r.Time)]++
		cv, ok := cleanAt[key(r.Metric, k)]
		if !ok {
			continue
		}
		switch {
		case math.IsNaN(r.Value) || math.IsInf(r.Value, 0):
			malformed++
		case math.Abs(math.Abs(r.Value-cv)-1000) < 1e-6:
			spikes++
		case r.Value == cv:
			equal++
		}
	}
	dups := 0
	for _, n := range seen {
		if n == 2 {
			dups++
		}
	}
	if spikes == 0 || malformed == 0 || ooo == 0 || dups == 0 {
		t.Fatalf("spikes %d malformed %d out-of-order %d dups %d", spikes, malformed, ooo, dups)
	}
	// Faults draw from their own stream: most values equal the clean run.
	if equal < len(fr)*3/4 {
		t.Fatalf("only %d of %d faulty readings equal the clean values", equal, len(fr))
	}
}

func key(m string, k int64) string { return fmt.Sprintf("%s@%d", m, k) }

func TestDriftAndStuck(t *testing.T) {
	sig := Signal{Model: ModelConstant, Base: 10}
	cfg := SensorConfig{Interval: time.Minute, Metrics: map[string]Signal{"m": sig}, Faults: Faults{Drift: 6}}
	rs, _ := collect(t, []Sensor{{ID: "d", Config: cfg}}, 1, 21)
	// 6 units per hour = 0.1 per one-minute sample.
	if got := rs[20].Value; math.Abs(got-12) > 1e-9 {
		t.Fatalf("after 20 minutes of drift 6/h: %v, want 12", got)
	}
	cfg = SensorConfig{Metrics: map[string]Signal{"m": {Model: ModelSawtooth, Amplitude: 100, Period: time.Hour}}, Faults: Faults{StuckProb: 1, StuckLen: 4}}
	rs, _ = collect(t, []Sensor{{ID: "st", Config: cfg}}, 1, 10)
	// Sample 0 is fresh, then stuck for 4 samples at sample 0's value, then
	// stuck again (probability 1) at that same value.
	for i := 1; i < 10; i++ {
		if rs[i].Value != rs[0].Value {
			t.Fatalf("sample %d: %v, want stuck at %v", i, rs[i].Value, rs[0].Value)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   SensorConfig
		paths []string
	}{
		{"ok", SensorConfig{Metrics: map[string]Signal{"t": {Model: ModelSine}}}, nil},
		{"no metrics", SensorConfig{}, []string{"metrics"}},
		{"bad interval", SensorConfig{Interval: -1, Metrics: map[string]Signal{"t": {}}}, []string{"interval"}},
		{"jitter", SensorConfig{Interval: time.Second, Jitter: time.Second, Metrics: map[string]Signal{"t": {}}}, []string{"jitter"}},
		{"signal", SensorConfig{Metrics: map[string]Signal{
			"t": {Model: "square", Noise: -1, Min: 5, Max: 1},
			"u": {Model: ModelSine, Period: -time.Second, Base: math.NaN()},
		}}, []string{"metrics.t.model", "metrics.t.noise", "metrics.t.max", "metrics.u.base", "metrics.u.period"}},
		{"faults", SensorConfig{Metrics: map[string]Signal{"t": {}}, Faults: Faults{SpikeProb: 2, DuplicateProb: -0.1, StuckLen: -1}},
			[]string{"faults.spike_prob", "faults.duplicate_prob", "faults.stuck_len"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cloneConfig(tc.cfg)
			c.Defaults()
			err := c.Validate()
			var got []string
			for _, e := range ingest.FlattenErrors(err) {
				var fe *ingest.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("not a FieldError: %v", e)
				}
				got = append(got, fe.Path)
			}
			if strings.Join(got, ",") != strings.Join(tc.paths, ",") {
				t.Fatalf("paths %v, want %v (%v)", got, tc.paths, err)
			}
		})
	}
	if _, err := New([]Sensor{{ID: "a", Config: SensorConfig{}}}, Options{}); err == nil {
		t.Fatal("New accepted a sensor without metrics")
	}
	ok := SensorConfig{Metrics: map[string]Signal{"t": {}}}
	if _, err := New([]Sensor{{ID: "a", Config: ok}, {ID: "a", Config: ok}}, Options{}); err == nil {
		t.Fatal("New accepted a duplicate id")
	}
}

func TestYAML(t *testing.T) {
	src := `
interval: 10s
jitter: 500ms
metrics:
  temperature: {model: sine, base: 20, amplitude: 5, noise: 0.2, unit: "°C"}
  humidity: {model: random_walk, base: 60, step: 0.5, min: 0, max: 100, unit: "%"}
faults: {spike_prob: 0.001, out_of_order_lag: 1m}
`
	var c SensorConfig
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Interval != 10*time.Second || c.Jitter != 500*time.Millisecond || c.Metrics["temperature"].Period != 24*time.Hour ||
		c.Metrics["humidity"].Max != 100 || c.Faults.OutOfOrderLag != time.Minute || c.Faults.DropoutLen != DefaultDropoutLen {
		t.Fatalf("decoded %+v", c)
	}
}

func TestRunRealClockAndLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	s := Sensor{ID: "r", Config: SensorConfig{Interval: 5 * time.Millisecond, Metrics: map[string]Signal{"m": {Base: 1}}}}
	sim, err := New([]Sensor{s}, Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	rs := runN(t, sim, 20)
	for i := 1; i < len(rs); i++ {
		if rs[i].Time <= rs[i-1].Time {
			t.Fatalf("times not increasing: %d %d", rs[i-1].Time, rs[i].Time)
		}
	}
	if err := sim.Run(context.Background(), make(chan ingest.Reading)); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v, want ErrRunning", err)
	}
	// Run with no sensors waits for the context.
	empty, _ := New(nil, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- empty.Run(ctx, make(chan ingest.Reading)) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A blocked send gives way to cancellation.
	blocked, _ := New([]Sensor{s}, Options{})
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- blocked.Run(ctx, make(chan ingest.Reading)) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkGoroutines(t, before)
}

func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	leak.Wait(t, before)
}

func TestEmitAllocs(t *testing.T) {
	clk := newFakeClock()
	sim, err := New([]Sensor{walkSensor("a")}, clk.options(1))
	if err != nil {
		t.Fatal(err)
	}
	se := sim.sensors[0]
	se.start(clk.Now().UnixNano())
	out := make(chan ingest.Reading, 4)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		sim.emit(ctx, se, out)
		se.advance()
		<-out
		<-out
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per sample, want 0", allocs)
	}
}

func BenchmarkRun(b *testing.B) {
	var sensors []Sensor
	for i := range 1000 {
		sensors = append(sensors, walkSensor(fmt.Sprintf("sensor-%04d", i)))
	}
	clk := newFakeClock()
	sim, err := New(sensors, clk.options(1))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan ingest.Reading, 1024)
	done := make(chan error)
	go func() { done <- sim.Run(ctx, out) }()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		<-out
	}
	b.StopTimer()
	cancel()
	<-done
}
