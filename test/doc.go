// Package test holds sensorgate's end-to-end tests: they build the real
// binary, start real brokers (in-process mochi-mqtt, and Debian's mosquitto
// where installed) and drive the gateway from outside: publish readings,
// stop and restart brokers, send SIGTERM and SIGKILL, and check what arrives
// upstream against what was sent.
//
// The package has no non-test code; the brokers, the mosquitto launcher,
// the test PKI and WaitFor come from test/mqtttest, shared with every
// package's tests. Tests that need a system binary (mosquitto,
// qemu-arm-static) ask for it with mqtttest.NeedTool: without it they skip
// with the install command, and under CI=true they fail with it instead.
// .ci/run installs them, and lists every skipped test at the end.
//
// exactlyonce_test.go holds the exactly-once tests of issue 13: a QoS 1
// publisher with a truth file per event-time window (sensorgate simulate
// --truth --truth-window), mosquitto with persistence, and the gateway
// stopped at random moments by kill -9, SIGTERM or a power cut of its data
// dir (test/internal/powerfs, a FUSE file system that drops unsynced
// writes; it needs /dev/fuse and fuse3), then every window upstream checked
// against the truth. Run them alone with
// go test -race -count=1 -run ExactlyOnce -v ./test.
//
// docs_test.go keeps the docs true: every sensorgate command that README.md,
// BENCHMARKS.md and docs/*.md show must exist, and their YAML config
// examples must pass sensorgate validate.
package test
