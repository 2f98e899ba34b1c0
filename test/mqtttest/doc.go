// Package mqtttest holds the helpers that the tests of every sensorgate
// package share: an in-process MQTT broker (mochi), a launcher for Debian's
// mosquitto, a throwaway certificate authority, a wait helper and free
// loopback addresses.
//
// # Basics
//
// StartBroker runs a mochi broker on 127.0.0.1 (port 0 unless told
// otherwise), with optional authentication (an auth.Ledger), a TLS listener
// or a websocket listener. Its inline subscriptions (Subscribe, Record)
// observe what clients publish and survive Stop/Start, which restarts the
// broker on the same address to play an outage.
//
// LaunchMosquitto starts /usr/sbin/mosquitto with a config written into a
// directory of its own, on a free loopback port, and returns once the
// broker logs that it is running (an event, not a fixed sleep). It needs no
// testing.TB, so programs such as test/e2ebench use it too; StartMosquitto
// is the test wrapper: it skips when mosquitto is missing, with the install
// command, and fails instead under CI=true.
//
// NeedTool does the same for any outside tool (mosquitto_passwd,
// mosquitto_pub, qemu-arm-static): it returns the tool's path, or skips
// with the install command, or under CI=true fails with it. Every test that
// needs a program the machine may lack goes through it, so CI cannot lose a
// test to a quiet skip. Go's test cache does not notice a tool being
// installed: run with -count=1 after installing one.
//
// NewPKI writes a CA, a server certificate (127.0.0.1 and localhost unless
// other hosts are given) and a client certificate for mutual TLS, as PEM
// files in a temporary directory.
//
// WaitFor polls a condition until it holds; its timeout is a liveness bound
// for a hung test, never a timing assertion.
//
// # Caveats
//
// FreeAddr and FreePort return a port that was free a moment ago: another
// process may take it before the caller binds it. Prefer port 0 where the
// component can report the port it bound (StartBroker does).
//
// The package imports only the standard library, mochi, paho and
// test/leak, never another sensorgate package, so that the tests of every
// package can use it without an import cycle.
package mqtttest
