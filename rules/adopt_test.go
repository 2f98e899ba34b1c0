package rules

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
)

// TestAdoptAcrossReload: a reload hands the open windows and alert state
// to the new engine, so the window that spans the reload is emitted once
// with all its readings and a firing alert does not fire again.
func TestAdoptAcrossReload(t *testing.T) {
	oldCfg := parseConfig(t, `
alerts:
  - {id: hot, metric: t, above: 30}
  - {id: cold, metric: t, below: 0}
windows:
  - {name: w, size: 1m, lateness: 5s}
  - {name: gone, size: 1m}
`)
	newCfg := parseConfig(t, `
alerts:
  - {id: hot, metric: t, above: 30}
  - {id: cold, metric: t, below: -5}
windows:
  - {name: new, size: 10s}
  - {name: w, sensor: "s*", size: 1m, lateness: 10s}
`)
	sink := &collect{}
	ctx := context.Background()
	old, err := New(oldCfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Run the old engine until its context is cancelled (a hard stop:
	// nothing flushed).
	in := make(chan ingest.Reading)
	octx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- old.Run(octx, in, sink) }()
	in <- rd("s1", "t", 1, 31) // hot fires
	in <- rd("s1", "t", 2, 32)
	in <- rd("s1", "t", 3, 33)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("old Run = %v", err)
	}
	if len(sink.summaries) != 0 || len(sink.alerts) != 1 {
		t.Fatalf("before reload: %d summaries, %d alerts", len(sink.summaries), len(sink.alerts))
	}

	e, err := New(newCfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Adopt(ctx, old, sink); err != nil {
		t.Fatal(err)
	}
	// The window rule that went away was flushed by Adopt.
	if len(sink.summaries) != 1 || sink.summaries[0].Window != "gone" || sink.summaries[0].Count != 3 {
		t.Fatalf("after adopt: %+v", sink.summaries)
	}
	if st := e.Stats(); st.OpenWindows != 1 || st.Keys != 1 {
		t.Fatalf("adopted %+v", st)
	}
	in2 := make(chan ingest.Reading, 8)
	in2 <- rd("s1", "t", 4, 35) // hot still firing: no new alert
	in2 <- rd("s1", "t", 5, 20) // hot clears
	close(in2)
	if err := e.Run(ctx, in2, sink); err != nil {
		t.Fatal(err)
	}
	var w []ingest.Summary
	for _, s := range sink.summaries {
		if s.Window == "w" {
			w = append(w, s)
		}
	}
	if len(w) != 1 || w[0].Count != 5 || w[0].Sum != 31+32+33+35+20 || w[0].ID != ingest.SummaryID("w", "s1", "", "t", 0, int64(time.Minute)) {
		t.Fatalf("window across the reload: %+v", w)
	}
	a := sink.alerts
	if len(a) != 2 || a[1].Rule != "hot" || a[1].State != "clear" || a[1].ID != a[0].ID || a[1].Since != sec(1) {
		t.Fatalf("alerts %+v", a)
	}
	// Errors.
	if err := e.Adopt(ctx, e, sink); !errors.Is(err, ErrAdopt) {
		t.Errorf("self adopt: %v", err)
	}
	e2, _ := New(newCfg, Options{})
	if err := e2.Adopt(ctx, e, sink); err != nil {
		t.Errorf("adopt of a drained engine: %v", err)
	}
	if err := e2.Adopt(ctx, old, sink); !errors.Is(err, ErrAdopt) {
		t.Errorf("adopt into an engine with state: %v", err)
	}
	e3, _ := New(newCfg, Options{})
	if err := e3.Adopt(ctx, old, sink); err != nil || e3.Stats().Keys != 0 {
		t.Errorf("adopt of an already adopted engine: %v %+v", err, e3.Stats())
	}
}

func TestPrepareHandoverSkipsFlush(t *testing.T) {
	cfg := parseConfig(t, m1Config)
	old, _ := New(cfg, Options{})
	in := make(chan ingest.Reading, 2)
	in <- rd("a", "m", 1, 1)
	close(in)
	sink := &collect{}
	old.PrepareHandover()
	if err := old.Run(context.Background(), in, sink); err != nil || len(sink.summaries) != 0 {
		t.Fatalf("Run = %v, %d summaries", err, len(sink.summaries))
	}
	e, _ := New(cfg, Options{})
	if err := e.Adopt(context.Background(), old, sink); err != nil {
		t.Fatal(err)
	}
	in2 := make(chan ingest.Reading, 1)
	in2 <- rd("a", "m", 2, 2)
	close(in2)
	if err := e.Run(context.Background(), in2, sink); err != nil {
		t.Fatal(err)
	}
	if s := sink.summaries; len(s) != 1 || s[0].Count != 2 {
		t.Fatalf("summaries %+v", s)
	}
}
