package rules

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/rules/window"
)

// bruteWindow is the brute-force expectation for one window.
type bruteWindow struct {
	start, end int64
	samples    []sample // arrival order
}

func (w *bruteWindow) expect() ingest.Summary {
	ss := w.samples
	s := ingest.Summary{Start: w.start, End: w.end, Count: uint64(len(ss))}
	s.Min, s.Max = math.Inf(1), math.Inf(-1)
	for _, x := range ss {
		s.Sum += x.v
		s.Min, s.Max = min(s.Min, x.v), max(s.Max, x.v)
	}
	s.Mean = s.Sum / float64(len(ss))
	var sq float64
	for _, x := range ss {
		sq += (x.v - s.Mean) * (x.v - s.Mean)
	}
	if len(ss) > 1 {
		s.Stddev = math.Sqrt(sq / float64(len(ss)-1))
	}
	sorted := slices.Clone(ss)
	slices.SortStableFunc(sorted, func(a, b sample) int { return cmp.Compare(a.t, b.t) })
	s.First, s.FirstTime = sorted[0].v, sorted[0].t
	s.Last, s.LastTime = sorted[len(sorted)-1].v, sorted[len(sorted)-1].t
	span := sorted[len(sorted)-1].t - sorted[0].t
	var area, delta float64
	for i := 1; i < len(sorted); i++ {
		area += sorted[i-1].v * float64(sorted[i].t-sorted[i-1].t)
		if sorted[i].v >= sorted[i-1].v {
			delta += sorted[i].v - sorted[i-1].v
		} else {
			delta += sorted[i].v
		}
	}
	if span > 0 {
		s.TWA = area / float64(span)
		s.Rate = delta / (float64(span) / 1e9)
	} else {
		s.TWA = s.Mean
	}
	s.Delta = delta
	return s
}

func close9(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

func checkAgainst(t *testing.T, what string, got ingest.Summary, w *bruteWindow, qs []float64, acc float64) {
	t.Helper()
	want := w.expect()
	if got.Count != want.Count || got.Min != want.Min || got.Max != want.Max || got.First != want.First ||
		got.Last != want.Last || got.FirstTime != want.FirstTime || got.LastTime != want.LastTime {
		t.Fatalf("%s [%d,%d): exact aggregates\n got %+v\nwant %+v", what, w.start, w.end, got, want)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"sum", got.Sum, want.Sum}, {"mean", got.Mean, want.Mean}, {"stddev", got.Stddev, want.Stddev},
		{"twa", got.TWA, want.TWA}, {"delta", got.Delta, want.Delta}, {"rate", got.Rate, want.Rate}} {
		if !close9(c.got, c.want) {
			t.Fatalf("%s [%d,%d): %s = %v, want %v", what, w.start, w.end, c.name, c.got, c.want)
		}
	}
	vals := make([]float64, len(w.samples))
	for i, x := range w.samples {
		vals[i] = x.v
	}
	slices.Sort(vals)
	if len(got.Quantiles) != len(qs) {
		t.Fatalf("%s: quantiles %v", what, got.Quantiles)
	}
	for i, q := range qs {
		rank := q * float64(len(vals)-1)
		lo, hi := vals[int(math.Floor(rank))], vals[int(math.Ceil(rank))]
		v := got.Quantiles[i].Value
		ok := func(x float64) bool { return math.Abs(v-x) <= acc*math.Abs(x)+1e-12 }
		if got.Quantiles[i].Q != q || !ok(lo) && !ok(hi) {
			t.Fatalf("%s [%d,%d): q%v = %v, exact %v..%v (accuracy %v)", what, w.start, w.end, q, v, lo, hi, acc)
		}
	}
}

// TestAggregatesProperty feeds random out-of-order streams (disorder within
// the lateness, so nothing is late) to tumbling, hopping and session
// windows and compares every aggregate with a brute-force computation.
func TestAggregatesProperty(t *testing.T) {
	kinds := []string{
		"{name: w, type: tumbling, size: 10s, lateness: 30s",
		"{name: w, type: hopping, size: 20s, slide: 5s, lateness: 30s",
		"{name: w, type: session, gap: 3s, lateness: 30s",
		"{name: w, type: hopping, size: 10s, slide: 4s, lateness: 30s",
	}
	const acc = 0.01
	for ki, kind := range kinds {
		for seed := range uint64(20) {
			t.Run(fmt.Sprintf("%d/%d", ki, seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, uint64(ki)))
				cfg := parseConfig(t, "windows:\n  - "+kind+", aggregates: [twa, delta, rate, quantiles]}\n")
				e, err := New(cfg, Options{})
				if err != nil {
					t.Fatal(err)
				}
				sink := &collect{}
				em := newEmitter(context.Background(), sink)

				n := 1 + rng.IntN(400)
				// Event times: increasing with random gaps (sometimes equal,
				// sometimes longer than the session gap), values of
				// various signs and scales.
				type ev struct {
					t int64
					v float64
				}
				evs := make([]ev, n)
				var ts int64 = int64(rng.IntN(1000)) * int64(time.Second)
				for i := range evs {
					switch rng.IntN(10) {
					case 0: // same time as the previous one
					case 1:
						ts += int64(rng.IntN(8)) * int64(time.Second)
					default:
						ts += int64(rng.IntN(1500)) * int64(time.Millisecond)
					}
					v := rng.NormFloat64() * math.Pow(10, float64(rng.IntN(5)-1))
					if rng.IntN(20) == 0 {
						v = 0
					}
					evs[i] = ev{ts, v}
				}
				// Arrival order: by event time plus a random delay under 20 s
				// (less than the lateness), ties in event order.
				type arrival struct {
					key int64
					ev
				}
				as := make([]arrival, n)
				for i, x := range evs {
					as[i] = arrival{x.t + rng.Int64N(int64(20*time.Second)), x}
				}
				slices.SortStableFunc(as, func(a, b arrival) int { return cmp.Compare(a.key, b.key) })
				arr := make([]ev, n)
				for i, a := range as {
					arr[i] = a.ev
				}
				for _, x := range arr {
					r := ingest.Reading{Sensor: "s", Metric: "m", Value: x.v, Time: x.t}
					if err := e.process(em, &r); err != nil {
						t.Fatal(err)
					}
				}
				if err := e.flush(em); err != nil {
					t.Fatal(err)
				}
				// Brute force windows.
				w := propWindow(e.windows[0].Config())
				var want []*bruteWindow
				switch w.kind {
				case kindSession:
					sorted := slices.Clone(evs)
					var cur *bruteWindow
					for i, x := range sorted {
						if i == 0 || x.t-sorted[i-1].t >= w.gap {
							cur = &bruteWindow{start: x.t}
							want = append(want, cur)
						}
						cur.end = x.t + w.gap
					}
					for _, x := range arr {
						for _, bw := range want {
							if x.t >= bw.start && x.t < bw.end {
								bw.samples = append(bw.samples, sample{x.t, x.v})
								break
							}
						}
					}
				default:
					m := map[int64]*bruteWindow{}
					for _, x := range arr {
						for s := floorDiv(x.t, w.slide) * w.slide; s+w.size > x.t; s -= w.slide {
							bw := m[s]
							if bw == nil {
								bw = &bruteWindow{start: s, end: s + w.size}
								m[s] = bw
								want = append(want, bw)
							}
							bw.samples = append(bw.samples, sample{x.t, x.v})
						}
					}
				}
				got := map[int64]ingest.Summary{}
				for _, s := range sink.summaries {
					if _, dup := got[s.Start]; dup {
						t.Fatalf("window %d emitted twice", s.Start)
					}
					if s.Late != 0 {
						t.Fatalf("late readings: %+v", s)
					}
					got[s.Start] = s
				}
				if len(got) != len(want) {
					t.Fatalf("%d summaries, want %d", len(got), len(want))
				}
				for _, bw := range want {
					s, ok := got[bw.start]
					if !ok || s.End != bw.end {
						t.Fatalf("window [%d,%d) missing (got %+v)", bw.start, bw.end, s)
					}
					checkAgainst(t, "window", s, bw, cfg.Windows[0].Quantiles, acc)
				}
				// Merging adjacent tumbling windows gives the brute force of
				// their union.
				if w.kind == kindTumbling {
					slices.SortFunc(want, func(a, b *bruteWindow) int { return cmp.Compare(a.start, b.start) })
					for i := 0; i+1 < len(want); i++ {
						if want[i].end != want[i+1].start {
							continue
						}
						m := got[want[i].start]
						m.Sketch = slices.Clone(m.Sketch)
						if err := window.Merge(&m, ptr(got[want[i+1].start])); err != nil {
							t.Fatal(err)
						}
						union := &bruteWindow{start: want[i].start, end: want[i+1].end,
							samples: append(slices.Clone(want[i].samples), want[i+1].samples...)}
						checkAgainst(t, "merged", m, union, cfg.Windows[0].Quantiles, acc)
						if m.ID != ingest.SummaryID("w", "s", "", "m", union.start, union.end) {
							t.Fatalf("merged id")
						}
					}
					// RollUp of all the summaries: each output covers a run
					// of adjacent windows and equals their brute force.
					var payloads [][]byte
					for _, s := range sink.summaries {
						payloads = append(payloads, enc(t, &s))
					}
					rolled, err := window.RollUp(payloads)
					if err != nil {
						t.Fatal(err)
					}
					var total uint64
					for _, p := range rolled {
						r := decSum(t, p)
						union := &bruteWindow{start: r.Start, end: r.End}
						for _, bw := range want {
							if bw.start >= r.Start && bw.end <= r.End {
								union.samples = append(union.samples, bw.samples...)
							}
						}
						checkAgainst(t, "rolled up", *r, union, cfg.Windows[0].Quantiles, acc)
						total += r.Count
					}
					if total != uint64(n) {
						t.Fatalf("rolled up summaries count %d readings, want %d", total, n)
					}
				}
			})
		}
	}
}

func ptr[T any](v T) *T { return &v }

// sample is one (event time, value) pair of the brute-force windows.
type sample struct {
	t int64
	v float64
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

const (
	kindTumbling uint8 = iota
	kindHopping
	kindSession
)

// propWin is what the brute force needs of a window rule.
type propWin struct {
	kind             uint8
	size, slide, gap int64
}

func propWindow(c WindowConfig) propWin {
	w := propWin{size: int64(c.Size), slide: int64(c.Slide), gap: int64(c.Gap)}
	switch c.Type {
	case Hopping:
		w.kind = kindHopping
	case Session:
		w.kind = kindSession
	default:
		w.slide = w.size
	}
	return w
}

func enc(t testing.TB, s *ingest.Summary) []byte {
	b, err := ingest.AppendSummary(nil, s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
func decSum(t testing.TB, b []byte) *ingest.Summary {
	r, err := ingest.DecodeRecord(b)
	if err != nil || r.Summary == nil {
		t.Fatalf("decode: %v", err)
	}
	return r.Summary
}
