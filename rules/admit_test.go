package rules

import (
	"context"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
)

// Options.Admit sees every reading first, may change it and may skip it,
// without costing an allocation per reading.
func TestAdmit(t *testing.T) {
	cfg := parseConfig(t, m1Config)
	var asked int
	e, err := New(cfg, Options{Admit: func(r ingest.Reading) (ingest.Reading, bool) {
		asked++
		if r.Sensor == "gh-3" {
			return r, false
		}
		r.Quality |= ingest.QualityClockUnsynced
		return r, true
	}})
	if err != nil {
		t.Fatal(err)
	}
	e.ctx, e.sink = context.Background(), discard{}
	sensors := []string{"gh-1", "gh-2", "gh-3"}
	var i int64
	step := func() {
		r := ingest.Reading{Sensor: sensors[i%3], Metric: "temperature", Value: float64(20 + i%7), Time: i * int64(time.Millisecond), Unit: "degC"}
		i++
		if err := e.process(&r); err != nil {
			t.Fatal(err)
		}
	}
	for range 30_000 {
		step()
	}
	if asked != 30_000 {
		t.Fatalf("admit asked %d times, want 30000", asked)
	}
	if got := e.Stats().Readings; got != 20_000 {
		t.Fatalf("engine took %d readings, want the 20000 admitted", got)
	}
	if n := testing.AllocsPerRun(20_000, step); n != 0 {
		t.Fatalf("%v allocations per reading with Admit set", n)
	}
}
