package decode

import (
	"sync"
	"sync/atomic"
)

// defaultInternMax bounds how many distinct strings an interner keeps, so
// that a publisher inventing a new sensor id per message cannot grow memory
// without limit. Past it, strings are allocated per use (correct, slower).
const defaultInternMax = 8192

// interner maps byte strings to canonical Go strings so that sensor ids and
// metric names do not allocate in steady state. Lookups are lock-free: the
// map is copied on write (writes happen once per new string), and read
// through an atomic pointer. Safe for concurrent use.
type interner struct {
	m   atomic.Pointer[map[string]string]
	mu  sync.Mutex
	max int
}

func newInterner(max int) *interner {
	if max <= 0 {
		max = defaultInternMax
	}
	return &interner{max: max}
}

func (in *interner) bytes(b []byte) string {
	if m := in.m.Load(); m != nil {
		if s, ok := (*m)[string(b)]; ok { // no allocation for the lookup
			return s
		}
	}
	return in.add(string(b))
}

func (in *interner) str(s string) string {
	if m := in.m.Load(); m != nil {
		if c, ok := (*m)[s]; ok {
			return c
		}
	}
	return in.add(s)
}

func (in *interner) add(s string) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	old := in.m.Load()
	n := 0
	if old != nil {
		if c, ok := (*old)[s]; ok {
			return c
		}
		n = len(*old)
	}
	if n >= in.max {
		return s
	}
	m := make(map[string]string, n+1)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[s] = s
	in.m.Store(&m)
	return s
}

func (in *interner) len() int {
	if m := in.m.Load(); m != nil {
		return len(*m)
	}
	return 0
}
