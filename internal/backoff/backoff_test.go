package backoff

import (
	"math"
	"testing"
	"time"
)

// Fixed randomness: the bottom, the top and the middle of every range.
func lowest(int64) int64    { return 0 }
func highest(n int64) int64 { return n - 1 }

func TestNextDoublesAndCaps(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 10 * time.Second, Rand: highest}
	want := []time.Duration{1, 2, 4, 8, 10, 10, 10}
	for i, w := range want {
		if got := b.Next(); got != w*time.Second {
			t.Errorf("Next #%d = %s, want %s", i+1, got, w*time.Second)
		}
	}
	b.Reset()
	if got := b.Next(); got != time.Second {
		t.Errorf("after Reset: %s, want 1s", got)
	}
}

func TestJitterIsTheUpperHalf(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 8 * time.Second, Rand: lowest}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	for i, w := range want {
		if got := b.Next(); got != w {
			t.Errorf("Next #%d = %s, want %s", i+1, got, w)
		}
	}
}

func TestBoundsWithRealRandomness(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 3 * time.Second}
	for i := 0; i < 1000; i++ {
		d := b.Next()
		if d < 50*time.Millisecond || d > 3*time.Second {
			t.Fatalf("Next #%d = %s, outside [Min/2, Max]", i+1, d)
		}
	}
}

func TestNoOverflow(t *testing.T) {
	b := Backoff{Min: time.Hour, Max: time.Duration(math.MaxInt64), Rand: highest}
	for i := 0; i < 200; i++ {
		if d := b.Next(); d <= 0 {
			t.Fatalf("Next #%d = %s", i+1, d)
		}
	}
	if d := b.Delay(math.MaxInt32); d <= 0 || d > b.Max {
		t.Fatalf("Delay(huge) = %s", d)
	}
}

func TestDegenerateConfig(t *testing.T) {
	b := Backoff{Min: 2 * time.Second, Max: time.Second, Rand: highest}
	if d := b.Next(); d != 2*time.Second {
		t.Errorf("Max below Min: %s, want Min", d)
	}
	var z Backoff
	if d := z.Next(); d < 0 || d > 1 {
		t.Errorf("zero Backoff: %s", d)
	}
	if d := b.Delay(0); d != 2*time.Second {
		t.Errorf("Delay(0) = %s", d)
	}
}
