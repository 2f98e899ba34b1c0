package simulator

import "testing"

// A Sampler draws the values the in-process Simulator sends for the same
// seed and sensor: the load generator and the gateway's simulated sensors
// agree.
func TestSamplerMatchesSimulator(t *testing.T) {
	s := walkSensor("gh-1")
	rs, _ := collect(t, []Sensor{s}, 5, 40)
	cfg := cloneConfig(s.Config)
	cfg.Defaults()
	sp := NewSampler(5, "gh-1", cfg)
	ms := sp.Metrics()
	if sp.ID() != "gh-1" || len(ms) != 2 || ms[0] != (Metric{"humidity", "%"}) || ms[1] != (Metric{"temperature", "°C"}) {
		t.Fatalf("%s %+v", sp.ID(), ms)
	}
	for k := 0; k < len(rs)/2; k++ {
		o := sp.Next()
		if o.Drop || o.Dup || o.Lag != 0 {
			t.Fatalf("sample %d: fault without faults configured: %+v", k, o)
		}
		for i, v := range o.Values {
			if r := rs[2*k+i]; r.Metric != ms[i].Name || r.Value != v {
				t.Fatalf("sample %d %s: sampler %v, simulator %+v", k, ms[i].Name, v, r)
			}
		}
	}
	if c := sp.Counts(); c != (SamplerCounts{}) {
		t.Fatalf("counts %+v", c)
	}
}
