package rules

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/test/leak"
)

// collect is a Sink that keeps copies of what it gets.
type collect struct {
	mu        sync.Mutex
	summaries []ingest.Summary
	alerts    []ingest.Alert
	order     []string // "S" / "A" in emission order
	failAfter int      // > 0: the n-th call fails with errSinkTest
	calls     int
}

var errSinkTest = errors.New("test sink failure")

func (c *collect) fail() error {
	c.calls++
	if c.failAfter > 0 && c.calls >= c.failAfter {
		return errSinkTest
	}
	return nil
}

func (c *collect) Summary(_ context.Context, s *ingest.Summary) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.fail(); err != nil {
		return err
	}
	cp := *s
	cp.Quantiles = slices.Clone(s.Quantiles)
	cp.Sketch = slices.Clone(s.Sketch)
	c.summaries = append(c.summaries, cp)
	c.order = append(c.order, "S")
	return nil
}

func (c *collect) Alert(_ context.Context, a *ingest.Alert) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.fail(); err != nil {
		return err
	}
	c.alerts = append(c.alerts, *a)
	c.order = append(c.order, "A")
	return nil
}

// wallClock is a settable wall clock for Options.Now.
type wallClock struct{ ns atomic.Int64 }

func (c *wallClock) Now() time.Time  { return time.Unix(0, c.ns.Load()) }
func (c *wallClock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// parseConfig decodes YAML the way the command does (unknown keys are
// errors), applies defaults and validates.
func parseConfig(t testing.TB, src string) Config {
	t.Helper()
	c, err := decodeConfig([]byte(src))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

func decodeConfig(b []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return c, err
	}
	c.Defaults()
	return c, c.Validate()
}

// harness runs an engine in a goroutine with hand-driven time.
type harness struct {
	t    testing.TB
	e    *Engine
	clk  *wallClock
	in   chan ingest.Reading
	tick chan time.Time
	sink *collect
	done chan error
	stop context.CancelFunc
}

func newHarness(t testing.TB, cfg Config, meta func(string) map[string]string, prestart ...func(*Engine)) *harness {
	t.Helper()
	h := &harness{t: t, clk: &wallClock{}, in: make(chan ingest.Reading), tick: make(chan time.Time), sink: &collect{}, done: make(chan error, 1)}
	h.clk.Set(time.Unix(0, 0))
	e, err := New(cfg, Options{Now: h.clk.Now, Tick: h.tick, Meta: meta})
	if err != nil {
		t.Fatal(err)
	}
	h.e = e
	for _, f := range prestart {
		f(e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	go func() { h.done <- e.Run(ctx, h.in, h.sink) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(20 * time.Second):
		}
	})
	return h
}

func (h *harness) send(r ingest.Reading) {
	h.t.Helper()
	select {
	case h.in <- r:
	case err := <-h.done:
		h.t.Fatalf("engine stopped: %v", err)
	case <-time.After(20 * time.Second):
		h.t.Fatal("engine does not take readings")
	}
}

// tickAt sets the clock and delivers a tick; it returns when the tick has
// been fully processed (a second tick at the same time is a no-op that
// can only be received once the first is done).
func (h *harness) tickAt(now time.Time) {
	h.t.Helper()
	h.clk.Set(now)
	for range 2 {
		select {
		case h.tick <- now:
		case err := <-h.done:
			h.t.Fatalf("engine stopped: %v", err)
		case <-time.After(20 * time.Second):
			h.t.Fatal("engine does not take ticks")
		}
	}
}

// close closes the input and waits for Run to return.
func (h *harness) close() error {
	h.t.Helper()
	close(h.in)
	select {
	case err := <-h.done:
		h.done <- err
		return err
	case <-time.After(20 * time.Second):
		h.t.Fatal("Run does not return after the input closed")
	}
	return nil
}

func sec(s float64) int64 { return int64(s * float64(time.Second)) }

func rd(sensor, metric string, t float64, v float64) ingest.Reading {
	return ingest.Reading{Sensor: sensor, Metric: metric, Value: v, Time: sec(t), Unit: "u"}
}

// checkNoLeak fails if goroutines started during the test are still
// running at its end.
func checkNoLeak(t *testing.T) {
	t.Helper()
	leak.Check(t)
}
