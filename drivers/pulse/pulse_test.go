package pulse

import (
	"context"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/sensorgate/sensorgate/drivers/chip"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// waitFor is mqtttest.WaitFor in the argument order of these tests.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	mqtttest.WaitFor(t, 10*time.Second, cond, what)
}

func TestCountRateDebounce(t *testing.T) {
	pin := &gpiotest.Pin{N: "GPIO17", EdgesChan: make(chan gpio.Level)}
	clk := &clock{t: time.Unix(1000, 0)}
	c, err := New(pin, &Opts{Debounce: 5 * time.Millisecond, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if pin.P != gpio.PullUp {
		t.Fatalf("pull %v", pin.P)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	// 10 pulses 1 s apart (an S0 meter at 1,000 imp/kWh and 3.6 kW), each
	// followed by a bounce 1 ms later.
	for i := range 10 {
		pin.EdgesChan <- gpio.High
		waitFor(t, "edge counted", func() bool { return c.Count() == uint64(i+1) })
		clk.Add(time.Millisecond)
		pin.EdgesChan <- gpio.High
		waitFor(t, "bounce", func() bool { return c.Bounces() == uint64(i+1) })
		clk.Add(999 * time.Millisecond)
	}
	n, rate := c.Measure()
	if n != 10 || rate != 1 {
		t.Fatalf("count %d rate %v, want 10 and 1/s", n, rate)
	}
	clk.Add(2 * time.Second)
	if n, rate := c.Measure(); n != 10 || rate != 0 {
		t.Fatalf("idle: count %d rate %v", n, rate)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := c.Halt(); err != nil {
		t.Fatal(err)
	}
}

func TestPinUnavailableThenBack(t *testing.T) {
	// A pin without edge support (gpiotest refuses edge detection without
	// an edge channel) fails New; once it supports edges, New works.
	pin := &gpiotest.Pin{N: "GPIO27"}
	if _, err := New(pin, nil); err == nil {
		t.Fatal("New succeeded on a pin without edge detection")
	}
	pin.EdgesChan = make(chan gpio.Level, 1)
	c, err := New(pin, &Opts{Edge: gpio.FallingEdge, Pull: gpio.PullDown})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	pin.EdgesChan <- gpio.Low
	waitFor(t, "edge", func() bool { return c.Count() == 1 })
	cancel()
	<-done
}

// The chip.Sensor view: count and rate scaled by PerPulse, in Unit and
// Unit/s, read while the poller-style Runner counts.
func TestSenseValues(t *testing.T) {
	pin := &gpiotest.Pin{N: "GPIO22", EdgesChan: make(chan gpio.Level)}
	clk := &clock{t: time.Unix(1000, 0)}
	c, err := New(pin, &Opts{Now: clk.Now, PerPulse: 0.5, Unit: "l"})
	if err != nil {
		t.Fatal(err)
	}
	var r chip.Runner = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	for i := range 4 {
		pin.EdgesChan <- gpio.High
		waitFor(t, "edge counted", func() bool { return c.Count() == uint64(i+1) })
	}
	clk.Add(2 * time.Second)
	vs, err := c.Sense(context.Background(), nil)
	want := []chip.Value{{Metric: chip.MetricCount, Unit: "l", V: 2}, {Metric: chip.MetricRate, Unit: "l/s", V: 1}}
	if err != nil || len(vs) != 2 || vs[0] != want[0] || vs[1] != want[1] {
		t.Fatalf("%+v %v, want %+v", vs, err, want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := c.Halt(); err != nil {
		t.Fatal(err)
	}
	if d, _ := New(&gpiotest.Pin{N: "GPIO23", EdgesChan: make(chan gpio.Level)}, nil); d.unit != "pulses" || d.per != 1 {
		t.Fatalf("defaults %q %v", d.unit, d.per)
	}
}
