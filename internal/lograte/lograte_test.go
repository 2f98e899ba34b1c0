package lograte

import (
	"sync"
	"testing"
	"time"
)

// clock is a hand-driven monotonic clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestOnePerInterval(t *testing.T) {
	c := &clock{t: time.Now()}
	l := Limiter{Interval: time.Second, Now: c.now}
	if !l.Allow() {
		t.Fatal("first line held back")
	}
	for i := 0; i < 5; i++ {
		if l.Allow() {
			t.Fatalf("line %d let through within the interval", i)
		}
	}
	if n := l.TakeSuppressed(); n != 5 {
		t.Errorf("suppressed %d, want 5", n)
	}
	if n := l.TakeSuppressed(); n != 0 {
		t.Errorf("suppressed after take %d, want 0", n)
	}
	c.add(999 * time.Millisecond)
	if l.Allow() {
		t.Error("let through before the interval ended")
	}
	c.add(time.Millisecond)
	if !l.Allow() {
		t.Error("held back after the interval")
	}
}

func TestDefaultsAndZeroValue(t *testing.T) {
	c := &clock{t: time.Now()}
	l := Limiter{Now: c.now}
	l.Allow()
	c.add(DefaultInterval - time.Nanosecond)
	if l.Allow() {
		t.Error("default interval shorter than DefaultInterval")
	}
	var z Limiter
	if !z.Allow() || z.Allow() {
		t.Error("zero Limiter: want one line through, then none")
	}
}

func TestConcurrentUse(t *testing.T) {
	t0 := time.Now()
	l := Limiter{Now: func() time.Time { return t0 }}
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if l.Allow() {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if allowed != 1 {
		t.Errorf("%d lines through, want 1", allowed)
	}
	if n := l.TakeSuppressed(); n != 799 {
		t.Errorf("suppressed %d, want 799", n)
	}
}
