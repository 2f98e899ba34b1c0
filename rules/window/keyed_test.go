package window

import (
	"fmt"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
)

// rules compiles window configs the way the rules engine does after its
// defaults (tumbling, event time, late drop unless given).
func compileAll(cs ...Config) []*Rule {
	var out []*Rule
	for i, c := range cs {
		if c.Type == "" {
			c.Type = Tumbling
		}
		if c.Time == "" {
			c.Time = EventTime
		}
		if c.Late == "" {
			c.Late = LateDrop
		}
		out = append(out, Compile(i, c))
	}
	return out
}

// collector keeps copies of the emitted summaries.
type collector struct{ got []ingest.Summary }

func (c *collector) emit(s *ingest.Summary) error {
	cp := *s
	cp.Quantiles, cp.Sketch = nil, nil
	c.got = append(c.got, cp)
	return nil
}

// TestSamplesCap: a window instance over maxSamples is emitted without the
// order-dependent aggregates; its other aggregates stay exact. (Moved from
// the engine's tests: the windows are testable without stages.)
func TestSamplesCap(t *testing.T) {
	rules := compileAll(
		Config{Name: "w", Size: 10 * time.Second, Aggregates: []string{AggTWA, AggDelta}},
		Config{Name: "h", Type: Hopping, Size: 10 * time.Second, Slide: 5 * time.Second, Aggregates: []string{AggRate}},
	)
	for _, w := range rules {
		w.maxSamples = 4
	}
	kd := NewKeyed(nil)
	var keys []*Key
	for _, w := range rules {
		keys = append(keys, kd.Key(w, "s", "", "m", nil))
	}
	c := &collector{}
	// [0, 10) and its pane [0, 5): 5 readings (over the cap); [10, 20): 3.
	for i, ts := range []float64{0.5, 1, 2, 3, 4, 11, 12, 13} {
		r := ingest.Reading{Sensor: "s", Metric: "m", Value: float64(i), Time: int64(ts * 1e9)}
		for _, k := range keys {
			if err := kd.Add(k, &r, c.emit); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := kd.Flush(c.emit); err != nil {
		t.Fatal(err)
	}
	got := map[string]ingest.Summary{}
	for _, s := range c.got {
		got[fmt.Sprintf("%s/%d", s.Window, s.Start/1e9)] = s
	}
	if s := got["w/0"]; s.Count != 5 || s.TWA != 0 || s.Delta != 0 || s.Sum != 10 {
		t.Errorf("capped window %+v", s)
	}
	if s := got["w/10"]; s.Count != 3 || s.Delta != 2 || s.TWA != 5.5 {
		t.Errorf("window under the cap %+v", s)
	}
	// Hopping: panes of 5 s; [0, 10) includes the capped pane [0, 5).
	if s := got["h/0"]; s.Count != 5 || s.Rate != 0 {
		t.Errorf("capped hopping window %+v", s)
	}
	if s := got["h/10"]; s.Count != 3 || s.Rate != 1 {
		t.Errorf("hopping window under the cap %+v", s)
	}
	if st := kd.Stats(); st.Capped == 0 {
		t.Errorf("stats %+v", st)
	}
}
