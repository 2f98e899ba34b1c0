// Command e2ebench is sensorgate's end-to-end benchmark through a real
// broker: is the gateway ever the bottleneck? Run it from the module root:
//
//	go run ./test/e2ebench              # the full matrix, 11-13 minutes on 2 cores
//	go run ./test/e2ebench --quick      # one point (QoS 0, 20k msg/s, 10 s), under a minute
//	go run ./test/e2ebench --qos 0,1,1d,1d@1000,1@1000   # durable ingest next to the rest
//	go run ./test/e2ebench --startup 100000 --startup-only  # restart time with 100k readings in state
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
//   - modes (--qos): 0 is QoS 0; 1 is QoS 1 with durable: false (acked as
//     soon as the readings are handed on); 1d is QoS 1 left at the gateway's
//     default, durable (acked only after the commit holding the reading's
//     effect). @N sets mosquitto's max_inflight_messages N on the point's
//     broker and the gateway source's inflight: N; without it mosquitto keeps
//     its 20 and the gateway's key is unset.
//   - broker alone (once per repeat, QoS and in-flight window; the bare
//     subscriber acks at once, so 1 and 1d share it): `sensorgate simulate` publishes
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
//     file. Where windows survive a stop, the gateway runs with `run
//     --flush-on-stop` (probed once in `run --help`), so the loss check still
//     sees every window; a binary without the flag runs as before.
//
// Per point it records the achieved input rate, the loss (readings sent
// minus readings counted in the summaries), the gateway's CPU seconds per
// million readings (utime+stime from /proc/PID/stat, from load start until
// drained), its peak RSS (VmHWM) and idle RSS, mosquitto's CPU in the same
// interval, and where any loss happened (mosquitto's dropped counter, the
// source's hand-off drops, late readings, records left in the outbox), and
// the flash wear: the gateway process's /proc/PID/io write_bytes (wchar
// where write_bytes is 0) per reading, the outbox's own BytesWritten and
// WriteTxs and the rules' Checkpoints from /healthz (left out where an
// older binary lacks them), and the source's durable acks, which show
// whether a 1d point was durable at all.
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
// --startup N fills a gateway (1d, 1 h tumbling windows, so every reading
// stays in an open window) with N readings, stops it with SIGTERM and times
// the restart from exec to the first /healthz answer and to the first new
// reading counted by the source (a probe published every 50 ms); then fills
// it with N more, kills it with SIGKILL and times the restart again.
//
// # Caveats
//
// Absolute numbers depend on the machine and on whatever else runs on it:
// compare ratios (gateway vs broker alone, gateway CPU vs mosquitto CPU in
// the same run). The simulator, mosquitto, the gateway and the collector
// share the machine's cores. mosquitto's max_queued_messages is raised
// (--max-queued) so that a slow subscriber shows up as drain time and as the
// gateway's own drops rather than as broker drops. wchar counts socket
// writes too (PUBACKs, the uplink, /healthz answers): where it stands in for
// write_bytes, trust the outbox's BytesWritten for the flash. An hour
// boundary inside a --startup run closes the windows it held.
package main
