// Package load is the load generator behind `sensorgate simulate`: it
// publishes simulated sensors (simulator.Sampler, the same signals and
// faults as the in-process simulator) to an MQTT broker at a fixed rate
// and records what it sent, for tests and benchmarks.
//
// # Basics
//
// [Run] publishes N simulated sensors to an MQTT broker at a fixed total
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
// and 2 (or [Config].Paho) use paho with a bounded number in flight.
//
// [Truth] records what was sent per sensor and metric (count, sum, min,
// max, and totals) so that a test can compare the gateway's summaries
// exactly. With [Config].TruthWindow (`simulate --truth-window 10s`) it
// also records the same per sensor, metric and event-time window
// ([Truth].Windows): tumbling, aligned to the Unix epoch as the gateway's
// windows are, keyed by the event time the payload carries (whole
// milliseconds for json and senml), so that a test can check each summary a
// gateway emits, not only the totals. Sensors are named sim-0001, sim-0002, ... ([SensorID]); the
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
// # Build tag
//
// This package carries two MQTT clients (paho and a minimal QoS 0
// publisher), which a gateway in the field has no use for. The command
// imports it only from cmd/sensorgate/simulate.go, which is built unless
// the tag nosimulate is set:
//
//	go build -tags nosimulate ./cmd/sensorgate
//
// gives a binary without the simulate command and without this package in
// its import graph (check with `go list -deps -tags nosimulate
// ./cmd/sensorgate`). Simulated sensors of type "sim" still work there:
// they come from package simulator.
//
// # Caveats
//
// The raw publisher speaks only MQTT 3.1.1 QoS 0 over tcp:// without TLS;
// anything else goes through paho. The rate is paced by the wall clock, so
// a run on a loaded machine reports an achieved rate below the target
// rather than failing.
package load
