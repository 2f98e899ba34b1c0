// Package simulator makes simulated sensor data: as an in-process
// [ingest.Source] (sensors of type "sim" in the config) and as a load
// generator that publishes to an MQTT broker ([RunLoad], behind
// `sensorgate simulate`).
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
// counted in [Stats].
//
// # Load generator
//
// [RunLoad] publishes N simulated sensors to an MQTT broker at a fixed total
// rate (one message = one sample of one sensor, all its metrics), paced
// against an absolute schedule: message m is due at start + m/rate, so short
// stalls are caught up and the average rate holds; a broker that cannot keep
// up shows as an achieved rate below the target. Sensors are spread over a
// few connections (default 2), each sensor on one, so its messages stay in
// order. At QoS 0 over tcp:// each connection is a minimal MQTT 3.1.1
// publisher that batches packets into one write per scheduling tick (about
// 2 CPU-seconds per million messages here, against 17 with paho's write per
// packet) and ends with DISCONNECT, waiting until the broker has closed the
// connection, so everything counted as sent has reached the broker. QoS 1
// and 2 (or [LoadConfig].Paho) use paho with a bounded number in flight.
//
// [Truth] records what was sent per sensor and metric (count, sum, min,
// max, and totals) so that a test can compare the gateway's summaries
// exactly. Sensors are named sim-0001, sim-0002, ... ([SensorID]); the
// default metrics are temperature and humidity random walks. Payload
// formats, with the sensor id in the topic (default
// "sensors/{sensor}/telemetry"); values are rounded to 3 decimals:
//
//	json     {"ts":1700000000123,"humidity":50.2,"temperature":21.5}    ts: Unix milliseconds (event time)
//	senml    [{"bn":"sim-0001:","bt":1700000000.123,"n":"humidity","u":"%RH","v":50.2},{"n":"temperature","u":"Cel","v":21.5}]
//	msgpack  a MessagePack ingest.ReadingBatch (ingest/reading.go), one reading per metric, Time in Unix ns
//
// Metrics appear in name order. A malformed message (fault injection) is a
// valid payload cut short; it is counted in Truth.Malformed and its values
// are not in the aggregates. Both copies of a duplicate are counted.
//
// For SenML, units are mapped to their SenML names where one exists (°C to
// Cel, % to %RH; Pa, V, A, W, lx, K and ppm as they are) and omitted
// otherwise; bt is Unix seconds with millisecond precision. A
// gateway subscription for the json format is
// {format: json, json: {sensor_topic_segment: 1, time_field: ts, time_format: unix_ms}}.
//
// # Caveats
//
// A Simulator runs once (Run returns [ErrRunning] the second time). When
// the output channel is full, Run waits rather than dropping samples; the
// samples that fell due meanwhile go out at once.
package simulator
