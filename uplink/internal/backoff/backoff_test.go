package backoff

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	prevMax := time.Duration(0)
	for i := 0; i < 10; i++ {
		d := b.Next()
		if d < b.cur/2 || d > b.cur || b.cur > time.Second {
			t.Fatalf("step %d: %v (cur %v)", i, d, b.cur)
		}
		if b.cur < prevMax {
			t.Fatal("backoff shrank")
		}
		prevMax = b.cur
	}
	if b.cur != time.Second {
		t.Errorf("cur = %v", b.cur)
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Errorf("after reset: %v", d)
	}
}
