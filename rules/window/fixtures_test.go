package window

import (
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
)

// The window rules and the readings the state tests run: every kind of
// window, sketches, samples, late readings dropped and revised.
func snapshotRules() []*Rule {
	return compileAll(
		Config{Name: "t", Size: 10 * time.Second, Lateness: time.Second, Aggregates: []string{AggTWA, AggDelta, AggQuantiles},
			Quantiles: []float64{0.5, 0.9}, SketchAccuracy: 0.01},
		Config{Name: "h", Type: Hopping, Size: 10 * time.Second, Slide: 5 * time.Second, Aggregates: []string{AggRate}},
		Config{Name: "s", Type: Session, Gap: 3 * time.Second},
		Config{Name: "r", Size: 5 * time.Second, Late: LateRevise, Retention: 50 * time.Second},
	)
}

func snapshotReadings() []ingest.Reading {
	var rs []ingest.Reading
	for i := range 400 {
		sensor := []string{"a", "b", "c"}[i%3]
		ts := int64(i) * int64(150*time.Millisecond)
		if i%17 == 0 {
			ts -= int64(6 * time.Second) // late: dropped or revised
		}
		rs = append(rs, ingest.Reading{Sensor: sensor, Metric: "m", Value: float64(i%23) + 0.5, Time: ts, Unit: "u",
			Quality: ingest.Quality(i % 2)})
	}
	return rs
}

// keepAll is an emit that keeps every summary with its sketch.
type keepAll struct{ got []ingest.Summary }

func (c *keepAll) emit(s *ingest.Summary) error {
	cp := *s
	cp.Quantiles = append([]ingest.Quantile(nil), s.Quantiles...)
	cp.Sketch = append([]byte(nil), s.Sketch...)
	c.got = append(c.got, cp)
	return nil
}

func feedAll(t *testing.T, kd *Keyed, rules []*Rule, rs []ingest.Reading, emit Emit) {
	t.Helper()
	for i := range rs {
		r := rs[i]
		for _, w := range rules {
			k := kd.Key(w, r.Sensor, "", r.Metric, map[string]string{"site": "x"})
			k.Release()
			if err := kd.Add(k, &r, emit); err != nil {
				t.Fatal(err)
			}
		}
	}
}
