package simulator

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
)

// ErrRunning is returned by Run when the simulator is already running or has
// run: a Simulator is a one-shot source (make a new one to start over).
var ErrRunning = errors.New("simulator: Run called twice")

// Sensor is one simulated sensor.
type Sensor struct {
	ID     string
	Config SensorConfig
}

// Options tune a Simulator.
type Options struct {
	// Seed makes runs repeatable: the same seed gives the same values.
	Seed int64
	// Now is the clock used for the schedule and the readings' times
	// (nil means time.Now).
	Now func() time.Time
	// Logger receives debug lines (nil discards).
	Logger *slog.Logger
	// After returns a channel that delivers after d, measured on the same
	// clock as Now (nil means a reused real timer). Tests pass a function
	// that advances a fake clock by d and returns a ready channel, which
	// runs the schedule as fast as the consumer reads.
	After func(d time.Duration) <-chan time.Time
}

// Stats are the simulator's counters.
type Stats struct {
	Sensors    int
	Samples    uint64 // samples taken (including those dropped by a dropout fault)
	Readings   uint64 // readings sent, duplicates included
	Spikes     uint64
	Dropouts   uint64 // samples not sent because of a dropout fault
	Stuck      uint64 // readings that repeated a stuck value
	OutOfOrder uint64 // samples sent with a past event time
	Duplicates uint64 // samples sent twice
	Malformed  uint64 // readings with a NaN or infinite value
}

// Simulator is an [ingest.Source] of simulated sensors. Create it with New.
type Simulator struct {
	sensors []*simSensor
	now     func() time.Time
	after   func(time.Duration) <-chan time.Time
	log     *slog.Logger
	ran     atomic.Bool
	c       counters
}

// New checks the sensors (after filling their defaults on a copy) and
// returns a simulator for them.
func New(sensors []Sensor, opts Options) (*Simulator, error) {
	s := &Simulator{now: opts.Now, after: opts.After, log: opts.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	seen := make(map[string]bool, len(sensors))
	var errs []error
	for i, se := range sensors {
		if se.ID == "" {
			errs = append(errs, fmt.Errorf("simulator: sensor [%d]: empty id", i))
			continue
		}
		if seen[se.ID] {
			errs = append(errs, fmt.Errorf("simulator: sensor %q: duplicate id", se.ID))
			continue
		}
		seen[se.ID] = true
		cfg := cloneConfig(se.Config)
		cfg.Defaults()
		if err := cfg.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("simulator: sensor %q: %w", se.ID, err))
			continue
		}
		s.sensors = append(s.sensors, newSimSensor(opts.Seed, se.ID, cfg))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func cloneConfig(c SensorConfig) SensorConfig {
	m := make(map[string]Signal, len(c.Metrics))
	for k, v := range c.Metrics {
		m[k] = v
	}
	c.Metrics = m
	return c
}

// Stats returns a snapshot of the counters; safe to call at any time.
func (s *Simulator) Stats() Stats {
	return Stats{
		Sensors:    len(s.sensors),
		Samples:    s.c.samples.Load(),
		Readings:   s.c.readings.Load(),
		Spikes:     s.c.spikes.Load(),
		Dropouts:   s.c.dropouts.Load(),
		Stuck:      s.c.stuck.Load(),
		OutOfOrder: s.c.outOfOrder.Load(),
		Duplicates: s.c.duplicates.Load(),
		Malformed:  s.c.malformed.Load(),
	}
}

// schedule is a min-heap of sensors by due time (ties by index, so the
// order is deterministic).
type schedule []*simSensor

func (h schedule) Len() int { return len(h) }
func (h schedule) Less(i, j int) bool {
	if h[i].due != h[j].due {
		return h[i].due < h[j].due
	}
	return h[i].id < h[j].id
}
func (h schedule) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *schedule) Push(x any)   { *h = append(*h, x.(*simSensor)) }
func (h *schedule) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Run sends the sensors' readings on out until ctx is cancelled, then
// returns nil. It runs in the calling goroutine only: one timer heap for all
// sensors. When out is full Run waits (a simulated sensor never loses a
// sample); the samples that fell due meanwhile are then sent at once, each
// stamped with the time it was sent.
func (s *Simulator) Run(ctx context.Context, out chan<- ingest.Reading) error {
	if !s.ran.CompareAndSwap(false, true) {
		return ErrRunning
	}
	s.log.Debug("simulator: start", "sensors", len(s.sensors))
	defer s.log.Debug("simulator: stop", "samples", s.c.samples.Load())
	if len(s.sensors) == 0 {
		<-ctx.Done()
		return nil
	}
	after := s.after
	if after == nil {
		t := time.NewTimer(time.Hour)
		t.Stop()
		defer t.Stop()
		after = func(d time.Duration) <-chan time.Time {
			t.Reset(d)
			return t.C
		}
	}
	start := s.now().UnixNano()
	h := make(schedule, len(s.sensors))
	for i, se := range s.sensors {
		se.start(start)
		h[i] = se
	}
	heap.Init(&h)
	for ctx.Err() == nil {
		se := h[0]
		if wait := se.due - s.now().UnixNano(); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-after(time.Duration(wait)):
			}
			continue
		}
		if !s.emit(ctx, se, out) {
			return nil
		}
		se.advance()
		heap.Fix(&h, 0)
	}
	return nil
}

// emit takes one sample of se and sends its readings; false when ctx ended.
func (s *Simulator) emit(ctx context.Context, se *simSensor, out chan<- ingest.Reading) bool {
	o := se.sample(&s.c)
	if o.drop {
		return true
	}
	now := s.now().UnixNano()
	r := ingest.Reading{Sensor: se.id, Time: now - o.lag, Arrival: now}
	n := 1
	if o.dup {
		n = 2
	}
	for range n {
		for i, ser := range se.series {
			r.Metric, r.Unit, r.Value = ser.name, ser.unit, se.vals[i]
			r.Receipt = nil
			if se.cfg.Durable && i == len(se.series)-1 {
				r.Receipt = ingest.PromptCommit
			}
			select {
			case out <- r:
				s.c.readings.Add(1)
			case <-ctx.Done():
				return false
			}
		}
	}
	return true
}
