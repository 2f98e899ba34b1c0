package lograte

import (
	"sync"
	"time"
)

// DefaultInterval is the interval of a Limiter whose Interval is 0.
const DefaultInterval = 10 * time.Second

// Limiter lets one log line through per Interval and counts the rest.
type Limiter struct {
	// Interval between lines let through; 0 means DefaultInterval.
	Interval time.Duration
	// Now is the clock (it must carry a monotonic reading, as time.Now
	// does); nil means time.Now. Tests set it.
	Now func() time.Time

	mu         sync.Mutex
	next       time.Time
	started    bool
	suppressed uint64
}

// Allow reports whether a line may be logged now; when not, it counts the
// line as suppressed.
func (l *Limiter) Allow() bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started && now.Before(l.next) {
		l.suppressed++
		return false
	}
	iv := l.Interval
	if iv <= 0 {
		iv = DefaultInterval
	}
	l.started = true
	l.next = now.Add(iv)
	return true
}

// TakeSuppressed returns how many lines were held back since the last
// call, and starts counting from zero.
func (l *Limiter) TakeSuppressed() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.suppressed
	l.suppressed = 0
	return n
}

func (l *Limiter) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}
