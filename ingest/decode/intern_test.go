package decode

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
)

func TestInternerCanonicalAndBounded(t *testing.T) {
	in := newInterner(100)
	a := in.bytes([]byte("sensor-1"))
	for range 300 { // enough lookups to publish the dirty strings
		if got := in.bytes([]byte("sensor-1")); got != a || in.str("sensor-1") != a {
			t.Fatalf("interned %q, then %q", a, got)
		}
	}
	if m := in.m.Load(); m == nil || (*m)["sensor-1"] != a {
		t.Fatal("repeated lookups did not publish the string to the lock-free map")
	}
	if n := testing.AllocsPerRun(100, func() { in.bytes([]byte("sensor-1")) }); n != 0 {
		t.Fatalf("lookup of a known string allocates %v times", n)
	}
	for i := range 500 {
		in.str(fmt.Sprint("s", i))
	}
	if n := in.len(); n != 100 {
		t.Fatalf("interner holds %d strings, max 100", n)
	}
	if got := in.str("past-the-cap"); got != "past-the-cap" {
		t.Fatalf("a string past the cap came back as %q", got)
	}
}

// Interning many new names must cost memory in proportion to their number,
// not its square (copying the whole map per new name cost 26 MB for 1,000
// sensors).
func TestInternerManyNewNamesIsNotQuadratic(t *testing.T) {
	const n = 8000
	names := make([][]byte, n)
	for i := range names {
		names[i] = fmt.Appendf(nil, "sensor-%05d", i)
	}
	in := newInterner(n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 3 { // every sensor reports three times, in turn
		for _, b := range names {
			in.bytes(b)
		}
	}
	runtime.ReadMemStats(&after)
	if in.len() != n {
		t.Fatalf("%d strings interned, want %d", in.len(), n)
	}
	perName := float64(after.TotalAlloc-before.TotalAlloc) / n
	t.Logf("%.0f bytes allocated per name", perName)
	// A map entry and its string are under 100 bytes; copying the map on
	// every new name would be about n/2 entries per name (hundreds of KB).
	if perName > 2000 {
		t.Fatalf("%.0f bytes allocated per new name: the interner copies too much", perName)
	}
	for _, b := range names {
		if got := in.bytes(b); got != string(b) {
			t.Fatalf("%q came back as %q", b, got)
		}
	}
}

func TestInternerConcurrent(t *testing.T) {
	in := newInterner(0)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				name := fmt.Sprint("m", (i*7+g)%300)
				if got := in.str(name); got != name {
					t.Errorf("%q came back as %q", name, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	if in.len() != 300 {
		t.Fatalf("%d strings, want 300", in.len())
	}
}
