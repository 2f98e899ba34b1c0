package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff computes retry delays (see the package documentation). Set Min
// and Max; the zero value of the rest is ready to use.
type Backoff struct {
	Min, Max time.Duration
	// Rand returns a uniform value in [0, n) for n > 0; nil means
	// math/rand/v2's Int64N. Tests pass a fixed one.
	Rand func(n int64) int64

	n int // delays handed out since the last Reset
}

// maxShift bounds the doubling: 2^40 × 1ns is already over 18 minutes, so
// any Min reaches any sane Max long before, and the shift cannot overflow.
const maxShift = 40

// Delay returns the jittered delay before attempt n (n ≥ 1; n < 1 counts
// as 1) without changing b. It suits callers that count failures
// themselves.
func (b *Backoff) Delay(n int) time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 1
	}
	if hi < lo {
		hi = lo
	}
	d := hi
	if n < 1 {
		n = 1
	}
	if s := n - 1; s < maxShift && lo<<s > 0 && lo<<s < hi {
		d = lo << s
	}
	half := d / 2
	r := rand.Int64N
	if b.Rand != nil {
		r = b.Rand
	}
	return half + time.Duration(r(int64(d-half)+1))
}

// Next returns the delay before the next attempt and advances b.
func (b *Backoff) Next() time.Duration {
	if b.n < maxShift+1 {
		b.n++
	}
	return b.Delay(b.n)
}

// Reset starts again from Min, after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Attempts returns how many delays Next handed out since the last Reset
// (saturating at 41).
func (b *Backoff) Attempts() int { return b.n }
