// Package simulator makes simulated sensor data: an in-process
// [ingest.Source] (sensors of type "sim" in the config), and a [Sampler]
// per sensor for the load generator in simulator/load, which publishes the
// same signals to an MQTT broker (`sensorgate simulate`). This package has
// no MQTT code: the gateway's binary carries it whether or not it carries
// the load generator.
//
// # Basics
//
// A simulated sensor ([SensorConfig], the `sim:` block of a sensor entry)
// takes a sample every Interval (± Jitter) and sends one [ingest.Reading] per
// metric. Each metric is a [Signal]: a model (random_walk, sine, step,
// sawtooth, constant) plus normal noise, clamped to [min, max]:
//
//	sensors:
//	  - id: gh-1
//	    type: sim
//	    sim:
//	      interval: 10s
//	      jitter: 500ms
//	      metrics:
//	        temperature: {model: sine, base: 20, amplitude: 5, noise: 0.2, unit: "°C"}  # period 24h
//	        humidity:    {model: random_walk, base: 60, step: 0.5, min: 0, max: 100, unit: "%"}
//	      faults: {spike_prob: 0.001, dropout_prob: 0.01, duplicate_prob: 0.001}
//
// Defaults: interval 1s, jitter 0, model constant, period 24h for sine and
// 10m for step and sawtooth, dropout_len 3, stuck_len 10, out_of_order_lag 5
// intervals, spike_size 10 × amplitude (100 when the amplitude is 0).
//
// Readings carry Time = Arrival = the clock's time when the sample is sent
// (Time lies in the past for an out-of-order fault) and the Signal's Unit.
// All sensors share one goroutine, the one that calls Run: a heap of timers
// ordered by due time. Each sensor's first sample falls at a seeded offset
// within its first interval, so a thousand sensors do not fire together.
//
// # Repeatability
//
// Every sensor and every metric draws from its own random streams, seeded
// from [Options.Seed] and the sensor and metric names: one for values, one
// for faults, one for the schedule. The value of sample k of a metric
// therefore depends only on the seed, the config and k: not on the wall
// clock, the scheduling, the other sensors, or whether faults are enabled
// (a metric keeps advancing through a dropout). Time-based models use the
// nominal time k × interval, so a sine's phase is repeatable too.
// Repeatability holds on one architecture; the last bits of a float may
// differ between CPUs that fuse multiply-adds and those that do not.
//
// # Faults
//
// [Faults] injects what real sensors do: spikes (±spike_size), dropouts
// (no readings for dropout_len samples), stuck values (the last value
// repeated for stuck_len samples), drift (units per hour), out-of-order and
// duplicate timestamps, and malformed values (NaN or ±Inf in process; a
// payload that does not decode in the load generator). Every fault is
// counted in [Stats] (a Sampler's sensor-wide faults in [Sampler.Counts]).
//
// # Caveats
//
// A Simulator runs once (Run returns [ErrRunning] the second time). When
// the output channel is full, Run waits rather than dropping samples; the
// samples that fell due meanwhile go out at once.
package simulator
