// Package test holds sensorgate's end-to-end tests: they build the real
// binary, start real brokers (in-process mochi-mqtt, and Debian's mosquitto
// where installed) and drive the gateway from outside: publish readings,
// stop and restart brokers, send SIGTERM and SIGKILL, and check what arrives
// upstream against what was sent.
//
// The package has no non-test code; the brokers, the mosquitto launcher,
// the test PKI and WaitFor come from test/mqtttest, shared with every
// package's tests. Tests that need a system binary (mosquitto,
// qemu-arm-static) skip with a message when it is missing; .ci/run installs
// them so CI never skips, and under CI=true a missing mosquitto fails the
// test instead.
package test
