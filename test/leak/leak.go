// Package leak is the goroutine-leak check that the package tests share:
// every component that starts goroutines (sources, engine, outbox,
// uplinks, broker, poller) must have stopped them all when its Run or
// Close returns.
//
// The check counts goroutines, so a test using it must not run in
// parallel with others that start goroutines.
package leak

import (
	"runtime"
	"testing"
	"time"
)

// settle is how long goroutines get to finish after a test: exits after a
// cancel are asynchronous, and a loaded CI machine is slow.
var settle = 10 * time.Second

// Check records how many goroutines run now and, when the test ends, fails
// it (with every goroutine's stack) if more are still running after settle.
func Check(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		if n, ok := wait(before); !ok {
			t.Errorf("goroutine leak: %d before, %d after\n%s", before, n, stacks())
		}
	})
}

// Wait fails t now unless the goroutines fall back to before within settle.
func Wait(t testing.TB, before int) {
	t.Helper()
	if n, ok := wait(before); !ok {
		t.Fatalf("goroutine leak: %d before, %d after\n%s", before, n, stacks())
	}
}

func wait(before int) (int, bool) {
	deadline := time.Now().Add(settle)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return n, true
		}
		if time.Now().After(deadline) {
			return n, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func stacks() []byte {
	buf := make([]byte, 1<<20)
	return buf[:runtime.Stack(buf, true)]
}
