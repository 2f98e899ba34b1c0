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
// metric names do not allocate in steady state. Safe for concurrent use.
//
// Known strings are looked up without a lock in a read-only map behind an
// atomic pointer. New strings go to a dirty map under the mutex, and are
// copied into a new read-only map only once the lookups that had to take
// the mutex since the last copy add up to the size of the copy. Copying on
// every new string instead made start-up quadratic: 1,000 sensors appearing
// at once cost 26 MB of map copies, 10,000 would have cost gigabytes.
type interner struct {
	m      atomic.Pointer[map[string]string]
	mu     sync.Mutex
	dirty  map[string]string // strings not yet in m
	misses int               // lookups that took the mutex since the last copy
	max    int
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
	in.mu.Lock()
	defer in.mu.Unlock()
	if s, ok := in.dirty[string(b)]; ok {
		in.missed()
		return s
	}
	return in.addLocked(string(b))
}

func (in *interner) str(s string) string {
	if m := in.m.Load(); m != nil {
		if c, ok := (*m)[s]; ok {
			return c
		}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if c, ok := in.dirty[s]; ok {
		in.missed()
		return c
	}
	return in.addLocked(s)
}

// addLocked interns s, unless the interner is full. in.mu is held.
func (in *interner) addLocked(s string) string {
	if m := in.m.Load(); m != nil {
		if c, ok := (*m)[s]; ok { // added by another goroutine meanwhile
			return c
		}
	}
	if in.lenLocked() >= in.max {
		return s
	}
	if in.dirty == nil {
		in.dirty = map[string]string{}
	}
	in.dirty[s] = s
	in.missed()
	return s
}

// missed counts a lookup that took the mutex, and publishes the dirty
// strings once such lookups have paid for the copy. in.mu is held.
func (in *interner) missed() {
	in.misses++
	if in.misses < in.lenLocked() {
		return
	}
	old := in.m.Load()
	n := len(in.dirty)
	if old != nil {
		n += len(*old)
	}
	m := make(map[string]string, n)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	for k, v := range in.dirty {
		m[k] = v
	}
	in.m.Store(&m)
	in.dirty, in.misses = nil, 0
}

func (in *interner) lenLocked() int {
	n := len(in.dirty)
	if m := in.m.Load(); m != nil {
		n += len(*m)
	}
	return n
}

func (in *interner) len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.lenLocked()
}
