package pulse

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/sensorgate/sensorgate/drivers/chip"
)

// Opts configure a Counter. Zero values: rising edges, pull-up, no
// debounce, time.Now, 1 per pulse, unit "pulses".
type Opts struct {
	Edge     gpio.Edge
	Pull     gpio.Pull
	Debounce time.Duration
	Now      func() time.Time
	// PerPulse and Unit say what one edge is worth in Sense (0.001 m3 for
	// a water meter at 1 l per pulse).
	PerPulse float64
	Unit     string
}

// Counter counts edges on one pin.
type Counter struct {
	pin      gpio.PinIn
	debounce time.Duration
	now      func() time.Time
	per      float64
	unit     string

	count   atomic.Uint64
	bounces atomic.Uint64
	last    atomic.Int64 // Unix ns of the last counted edge

	mu        sync.Mutex
	prevCount uint64
	prevTime  time.Time
}

// New configures pin as an input with the pull and edge detection.
func New(pin gpio.PinIn, opts *Opts) (*Counter, error) {
	var o Opts
	if opts != nil {
		o = *opts
	}
	if o.Edge == gpio.NoEdge {
		o.Edge = gpio.RisingEdge
	}
	if o.Pull == gpio.PullNoChange {
		o.Pull = gpio.PullUp
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PerPulse == 0 {
		o.PerPulse = 1
	}
	if o.Unit == "" {
		o.Unit = "pulses"
	}
	if err := pin.In(o.Pull, o.Edge); err != nil {
		return nil, fmt.Errorf("pulse: %s: %w", pin, err)
	}
	c := &Counter{pin: pin, debounce: o.Debounce, now: o.Now, per: o.PerPulse, unit: o.Unit}
	c.prevTime = o.Now()
	return c, nil
}

func (c *Counter) String() string { return "pulse{" + c.pin.String() + "}" }

// Run counts edges until ctx is done, then returns nil. It checks ctx at
// least every 100 ms.
func (c *Counter) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if !c.pin.WaitForEdge(100 * time.Millisecond) {
			continue
		}
		now := c.now().UnixNano()
		if c.debounce > 0 && c.count.Load() > 0 && now-c.last.Load() < int64(c.debounce) {
			c.bounces.Add(1)
			continue
		}
		c.last.Store(now)
		c.count.Add(1)
	}
	return nil
}

// Count returns the number of edges counted so far.
func (c *Counter) Count() uint64 { return c.count.Load() }

// Bounces returns the number of edges ignored by the debounce.
func (c *Counter) Bounces() uint64 { return c.bounces.Load() }

// Measure returns the total count and the rate in edges per second since
// the previous Measure or Sense (since New for the first).
func (c *Counter) Measure() (count uint64, rate float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	count = c.count.Load()
	if dt := now.Sub(c.prevTime).Seconds(); dt > 0 {
		rate = float64(count-c.prevCount) / dt
	}
	c.prevCount, c.prevTime = count, now
	return count, rate
}

// Halt stops edge detection on the pin.
func (c *Counter) Halt() error {
	return c.pin.In(gpio.PullNoChange, gpio.NoEdge)
}

// Sense implements chip.Sensor: count (edges since New × PerPulse, in
// Unit) and rate (Unit per second since the previous read). It never
// fails: counting happens in Run, and a pin that stops toggling reads as
// rate 0.
func (c *Counter) Sense(_ context.Context, dst []chip.Value) ([]chip.Value, error) {
	n, rate := c.Measure()
	return append(dst, chip.Value{Metric: chip.MetricCount, Unit: c.unit, V: float64(n) * c.per},
		chip.Value{Metric: chip.MetricRate, Unit: c.unit + "/s", V: rate * c.per}), nil
}

var (
	_ chip.Sensor = (*Counter)(nil)
	_ chip.Runner = (*Counter)(nil)
)
