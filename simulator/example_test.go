package simulator_test

import (
	"context"
	"fmt"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/simulator"
)

// A simulated sensor as an in-process source. The clock is fake (Now and
// After) so that the example runs instantly and prints the same thing every
// time.
func Example() {
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	opts := simulator.Options{
		Seed: 1,
		Now:  func() time.Time { return t },
		After: func(d time.Duration) <-chan time.Time {
			t = t.Add(d)
			ch := make(chan time.Time, 1)
			ch <- t
			return ch
		},
	}
	sim, err := simulator.New([]simulator.Sensor{{ID: "boiler-1", Config: simulator.SensorConfig{
		Interval: 10 * time.Second,
		Metrics: map[string]simulator.Signal{
			"pressure": {Model: simulator.ModelSawtooth, Base: 1.2, Amplitude: 0.6, Period: time.Minute, Unit: "bar"},
		},
	}}}, opts)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan ingest.Reading)
	go sim.Run(ctx, out)
	for range 7 {
		r := <-out
		fmt.Printf("%s %s %.1f %s\n", r.Sensor, r.Metric, r.Value, r.Unit)
	}
	cancel()
	// Output:
	// boiler-1 pressure 1.2 bar
	// boiler-1 pressure 1.3 bar
	// boiler-1 pressure 1.4 bar
	// boiler-1 pressure 1.5 bar
	// boiler-1 pressure 1.6 bar
	// boiler-1 pressure 1.7 bar
	// boiler-1 pressure 1.2 bar
}
