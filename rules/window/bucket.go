package window

import (
	"slices"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/rules/internal/sketch"
)

// MaxSamples bounds the (time, value) samples a window instance keeps for
// the order-dependent aggregates (twa, delta, rate): 65536 samples, 1 MiB.
// A window that receives more is emitted without them (counted in
// Stats.Capped); its other aggregates stay exact.
const MaxSamples = 1 << 16

// sample is one (event time, value) pair kept for the order-dependent
// aggregates (twa, delta, rate).
type sample struct {
	t int64
	v float64
}

// bucket holds the running aggregates of one window instance [start, end).
type bucket struct {
	start, end int64
	count      uint64
	sum        float64
	min, max   float64
	mean, m2   float64 // Welford
	first      float64
	last       float64
	firstT     int64
	lastT      int64
	quality    ingest.Quality
	unit       string
	late       uint64
	rejected   uint64
	revision   uint32
	emitted    bool // at least one summary went out
	dirty      bool // changed since it was emitted (revise)
	sketch     *sketch.Sketch
	samples    []sample
	capped     bool // more than maxSamples: no twa/delta/rate
}

func (b *bucket) reset() {
	sk, sm := b.sketch, b.samples
	*b = bucket{}
	if sk != nil {
		sk.Clear()
	}
	b.sketch, b.samples = sk, sm[:0]
}

func (b *bucket) add(w *Rule, v float64, t int64, q ingest.Quality, unit string) {
	b.count++
	b.sum += v
	if b.count == 1 {
		b.min, b.max = v, v
		b.first, b.last = v, v
		b.firstT, b.lastT = t, t
		b.mean, b.m2 = v, 0
	} else {
		if v < b.min {
			b.min = v
		}
		if v > b.max {
			b.max = v
		}
		if t < b.firstT {
			b.first, b.firstT = v, t
		}
		if t >= b.lastT {
			b.last, b.lastT = v, t
		}
		d := v - b.mean
		b.mean += d / float64(b.count)
		b.m2 += d * (v - b.mean)
	}
	b.quality |= q
	if unit != "" {
		b.unit = unit
	}
	if w.quantiles != nil {
		if b.sketch == nil || b.sketch.RelativeAccuracy() != w.accuracy {
			// A recycled bucket may carry the sketch of another window
			// rule. The accuracy was validated: New cannot fail.
			b.sketch, _ = sketch.New(w.accuracy)
		}
		_ = b.sketch.Add(v) // values are finite: no error
	}
	if w.samples && !b.capped {
		if len(b.samples) >= w.maxSamples {
			b.capped = true
			b.samples = b.samples[:0]
		} else {
			b.samples = append(b.samples, sample{t, v})
		}
	}
}

// mergeBucket folds src into dst (Chan et al. for the variance).
func mergeBucket(w *Rule, dst, src *bucket) {
	if src.count == 0 {
		return
	}
	if dst.count == 0 {
		sk, sm := dst.sketch, dst.samples
		start, end := dst.start, dst.end
		*dst = *src
		dst.sketch, dst.samples = sk, append(sm[:0], src.samples...)
		if src.sketch != nil {
			// dst is empty: a copy (its sketch, if any, may be a
			// recycled one of another accuracy).
			if dst.sketch == nil {
				dst.sketch = src.sketch.Copy()
			} else {
				dst.sketch.CopyFrom(src.sketch)
			}
		}
		dst.start, dst.end = min(start, src.start), max(end, src.end)
		return
	}
	n := dst.count + src.count
	d := src.mean - dst.mean
	dst.m2 += src.m2 + d*d*float64(dst.count)*float64(src.count)/float64(n)
	dst.mean += d * float64(src.count) / float64(n)
	dst.count = n
	dst.sum += src.sum
	dst.min = min(dst.min, src.min)
	dst.max = max(dst.max, src.max)
	if src.firstT < dst.firstT {
		dst.first, dst.firstT = src.first, src.firstT
	}
	if src.lastT >= dst.lastT {
		dst.last, dst.lastT = src.last, src.lastT
	}
	dst.quality |= src.quality
	if src.unit != "" {
		dst.unit = src.unit
	}
	dst.late += src.late
	dst.rejected += src.rejected
	if src.sketch != nil {
		if dst.sketch == nil || dst.sketch.IsEmpty() {
			if dst.sketch == nil {
				dst.sketch = src.sketch.Copy()
			} else {
				dst.sketch.CopyFrom(src.sketch)
			}
		} else {
			// Both buckets belong to window rule w: same accuracy.
			_ = dst.sketch.Merge(src.sketch)
		}
	}
	dst.capped = dst.capped || src.capped
	if dst.capped {
		dst.samples = dst.samples[:0]
	} else {
		dst.samples = append(dst.samples, src.samples...)
	}
	dst.start = min(dst.start, src.start)
	dst.end = max(dst.end, src.end)
}

// orderedAggs sorts the samples by time (stable: ties keep arrival order)
// and returns the time-weighted average (each value holds until the next
// sample) and the counter delta (a decrease is a counter reset: the new
// value counts from zero).
func orderedAggs(ss []sample) (twa, delta float64) {
	slices.SortStableFunc(ss, func(a, b sample) int {
		switch {
		case a.t < b.t:
			return -1
		case a.t > b.t:
			return 1
		}
		return 0
	})
	var area float64
	for i := 1; i < len(ss); i++ {
		area += ss[i-1].v * float64(ss[i].t-ss[i-1].t)
		if d := ss[i].v - ss[i-1].v; d >= 0 {
			delta += d
		} else {
			delta += ss[i].v
		}
	}
	if span := ss[len(ss)-1].t - ss[0].t; span > 0 {
		twa = area / float64(span)
	}
	return twa, delta
}
