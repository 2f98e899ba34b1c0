// Command e2ebench is sensorgate's end-to-end benchmark through a real
// broker: is the gateway ever the bottleneck? Run it from the module root:
//
//	go run ./test/e2ebench              # the full matrix, 11-13 minutes on 2 cores
//	go run ./test/e2ebench --quick      # one point (QoS 0, 20k msg/s, 10 s), under a minute
//
// It prints markdown tables for BENCHMARKS.md on stdout and progress on
// stderr. It is a program, not a test: `go test ./...` never runs it.
//
// # Basics
//
// The benchmark builds ./cmd/sensorgate as releases are built
// (CGO_ENABLED=0, -trimpath, -ldflags "-s -w"; no -race) and, for every point,
// starts a fresh Debian mosquitto (/usr/sbin/mosquitto) on a free loopback
// port, then:
//
//   - broker alone (once per repeat and QoS): `sensorgate simulate` publishes
//     as fast as it can and a bare paho subscriber in this process counts
//     what mosquitto delivers. The delivered rate is the ceiling of that
//     repeat.
//   - through the gateway: `sensorgate run` subscribes to the simulator's
//     topic (JSON, 1,000 sensors, 2 readings per message), aggregates in 10 s
//     tumbling windows and publishes the summaries over MQTT QoS 1 to the same
//     mosquitto under bench/; a paho collector in this process keeps them.
//     `sensorgate simulate --truth` runs at the point's rate; once the
//     gateway has taken in everything, SIGTERM flushes its open windows and
//     the summaries' counts per sensor and metric are compared with the truth
//     file.
//
// Per point it records the achieved input rate, the loss (readings sent
// minus readings counted in the summaries), the gateway's CPU seconds per
// million readings (utime+stime from /proc/PID/stat, from load start until
// drained), its peak RSS (VmHWM) and idle RSS, mosquitto's CPU in the same
// interval, and where any loss happened (mosquitto's dropped counter, the
// source's hand-off drops, late readings, records left in the outbox).
// Points repeat (--repeat) and the tables show medians; a fixed rate above
// the ceiling of its repeat is skipped (it would be the max point again).
//
// --cpuprofile FILE adds one profiled point: the gateway is built with `go
// build -overlay` adding a file to package main that starts a CPU profile on
// SIGUSR1 and writes it on SIGUSR2 (plus FILE.heap); the tree is not
// modified and the normal binary has no such code. The report then shows
// the share of CPU samples per goroutine and `go tool pprof -top`.
// --uplink-down measures memory while the summaries pile up in the outbox.
//
// # Caveats
//
// Absolute numbers depend on the machine and on whatever else runs on it:
// compare ratios (gateway vs broker alone, gateway CPU vs mosquitto CPU in
// the same run). The simulator, mosquitto, the gateway and the collector
// share the machine's cores. mosquitto's max_queued_messages is raised
// (--max-queued) so that a slow subscriber shows up as drain time and as the
// gateway's own drops rather than as broker drops.
package main
