package mqtttest

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// pollEvery is how often WaitFor re-checks its condition.
const pollEvery = 10 * time.Millisecond

// WaitFor polls cond until it holds and fails tb (with what) when timeout
// passes first. The timeout bounds a hung test; it is not a timing check.
func WaitFor(tb testing.TB, timeout time.Duration, cond func() bool, what string) {
	tb.Helper()
	if !Poll(timeout, cond) {
		tb.Fatalf("mqtttest: timed out after %v waiting for %s", timeout, what)
	}
}

// Poll is WaitFor without a testing.TB: it reports whether cond held
// before timeout passed.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
	return true
}

// PickPort returns a loopback TCP port that was free a moment ago (see the
// package caveats).
func PickPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("mqtttest: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// FreePort is PickPort for tests: it fails tb on error.
func FreePort(tb testing.TB) int {
	tb.Helper()
	p, err := PickPort()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// FreeAddr returns "127.0.0.1:port" with a port from FreePort.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(tb))
}
