package mqtttest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
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

// SyncBuffer is an io.Writer that is safe for concurrent Write and String:
// a child process's output or a logger's sink that a test reads while it is
// still being written.
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Go starts run in the background and returns a stop function that cancels
// its context, waits for it to return (failing tb if it returns an error or
// is still running 20 s later) and is safe to call more than once; stop also
// runs at cleanup. It is how a test runs a part's Run(ctx) method.
func Go(tb testing.TB, run func(ctx context.Context) error) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("Run returned %v", err)
				}
			case <-time.After(20 * time.Second):
				tb.Errorf("Run did not return within 20s of cancel")
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}
