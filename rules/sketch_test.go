package rules

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/rules/internal/sketch"
)

// TestSketchAccuracyPerWindow: window buckets (and their sketches) are
// recycled across window rules; each summary's sketch must have its own
// rule's accuracy, and its quantiles must hold to it.
func TestSketchAccuracyPerWindow(t *testing.T) {
	cfg := parseConfig(t, `windows:
  - {name: coarse, size: 1s, aggregates: [quantiles], quantiles: [0, 0.5, 1], sketch_accuracy: 0.2}
  - {name: fine, size: 1s, aggregates: [quantiles], quantiles: [0, 0.5, 1], sketch_accuracy: 0.001}
  - {name: hop, type: hopping, size: 2s, slide: 1s, aggregates: [quantiles], quantiles: [0, 0.5, 1], sketch_accuracy: 0.05}
`)
	e, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := &collect{}
	em := newEmitter(context.Background(), c)
	vals := map[[2]int64][]float64{} // by window [start, end)
	for i := range int64(200) {
		v := 10 + float64(i%13)*0.37
		ts := i * int64(100*time.Millisecond)
		r := ingest.Reading{Sensor: "s", Metric: "m", Value: v, Time: ts}
		if err := e.process(em, &r); err != nil {
			t.Fatal(err)
		}
		for _, size := range []int64{1, 2} {
			for start := (ts/1e9 - size + 1) * 1e9; start <= ts; start += 1e9 {
				k := [2]int64{start, start + size*1e9}
				vals[k] = append(vals[k], v)
			}
		}
	}
	if err := e.flush(em); err != nil {
		t.Fatal(err)
	}
	acc := map[string]float64{"coarse": 0.2, "fine": 0.001, "hop": 0.05}
	seen := map[string]int{}
	for _, s := range c.summaries {
		sk, err := sketch.Decode(s.Sketch)
		if err != nil {
			t.Fatalf("%s [%d, %d): %v", s.Window, s.Start, s.End, err)
		}
		if sk.RelativeAccuracy() != acc[s.Window] || sk.Count() != s.Count {
			t.Fatalf("%s: sketch of accuracy %v and count %d (summary count %d)", s.Window, sk.RelativeAccuracy(), sk.Count(), s.Count)
		}
		v := vals[[2]int64{s.Start, s.End}]
		slices.Sort(v)
		for _, q := range s.Quantiles {
			x := v[int(math.Floor(q.Q*float64(len(v)-1)))]
			if math.Abs(q.Value-x) > acc[s.Window]*x*(1+1e-9) {
				t.Fatalf("%s [%d, %d): q%v = %v, exact %v", s.Window, s.Start, s.End, q.Q, q.Value, x)
			}
		}
		seen[s.Window]++
	}
	if seen["coarse"] != 20 || seen["fine"] != 20 || seen["hop"] < 20 {
		t.Fatalf("summaries per window: %v", seen)
	}
}

// TestQuantileSteadyStateAllocs: with quantile sketches in tumbling and
// hopping windows, a reading does not allocate in steady state (window
// closes included: the sketches, quantile lists and encodings are reused).
func TestQuantileSteadyStateAllocs(t *testing.T) {
	cfg := parseConfig(t, `windows:
  - {name: t, size: 10s, aggregates: [quantiles]}
  - {name: h, type: hopping, size: 1m, slide: 10s, aggregates: [quantiles]}
`)
	e, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	em := newEmitter(context.Background(), discard{})
	sensors := []string{"a", "b", "c"}
	var i int64
	step := func() {
		r := ingest.Reading{Sensor: sensors[i%3], Metric: "m", Value: float64(i%101) - 30, Time: i * int64(time.Millisecond)}
		i++
		if err := e.process(em, &r); err != nil {
			t.Fatal(err)
		}
	}
	for range 200_000 {
		step()
	}
	if n := testing.AllocsPerRun(50_000, step); n != 0 {
		t.Fatalf("%v allocations per reading", n)
	}
}
