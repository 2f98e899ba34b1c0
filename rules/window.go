package rules

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/rules/internal/sketch"
)

// window is a compiled WindowConfig.
type window struct {
	cfg        WindowConfig
	idx        int
	kind       uint8
	processing bool
	revise     bool
	size       int64
	slide      int64
	pane       int64 // hopping: readings are kept in panes of gcd(size, slide)
	gap        int64
	lateness   int64
	retention  int64
	samples    bool // twa, delta or rate: keep (t, v) samples
	maxSamples int  // per window instance; beyond it twa/delta/rate are left out
	twa        bool
	delta      bool
	rate       bool
	quantiles  []float64
	accuracy   float64
}

const (
	kindTumbling uint8 = iota
	kindHopping
	kindSession
)

func compileWindow(i int, c WindowConfig) *window {
	w := &window{
		cfg:        c,
		idx:        i,
		processing: c.Time == ProcessingTime,
		revise:     c.Late == LateRevise,
		size:       int64(c.Size),
		slide:      int64(c.Slide),
		gap:        int64(c.Gap),
		lateness:   int64(c.Lateness),
		retention:  int64(c.Retention),
		twa:        c.has(AggTWA),
		delta:      c.has(AggDelta),
		rate:       c.has(AggRate),
	}
	w.samples = w.twa || w.delta || w.rate
	w.maxSamples = MaxSamples
	switch c.Type {
	case Hopping:
		w.kind = kindHopping
		w.pane = gcd(w.size, w.slide)
	case Session:
		w.kind = kindSession
	default:
		w.kind = kindTumbling
		w.slide = w.size
	}
	if c.has(AggQuantiles) {
		w.quantiles = slices.Clone(c.Quantiles)
		w.accuracy = c.SketchAccuracy
	}
	return w
}

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

func (b *bucket) add(w *window, v float64, t int64, q ingest.Quality, unit string) {
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

// wkey is the state of one window rule for one key (sensor or group, metric).
type wkey struct {
	w      *window
	sensor string
	group  string
	metric string
	meta   map[string]string

	hasMax     bool
	maxT       int64 // newest event time seen
	wm         int64 // watermark: windows with end <= wm are closed
	maxArrival int64 // Arrival of the reading with maxT (0: unknown)
	// Idle advance: the watermark moves on with the wall clock from
	// (anchorT, anchorWall) while the key gets no readings.
	anchorT    int64
	anchorWall int64
	active     bool // got readings since the last tick

	open    []*bucket // by start
	emitted []*bucket // revise: emitted windows kept for Retention, by start

	pendLate uint64 // late readings dropped since the last summary
	pendRej  uint64 // rejected readings since the last summary

	sessEnd int64 // session windows: end of the last session emitted

	id   wkeyID
	refs int // routes that lead here
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// findOrOpen returns the open bucket [start, end), creating it in order.
func (e *Engine) findOrOpen(k *wkey, start, end int64) *bucket {
	i := len(k.open)
	for i > 0 && k.open[i-1].start > start {
		i--
	}
	if i > 0 && k.open[i-1].start == start {
		return k.open[i-1]
	}
	b := e.newBucket(start, end)
	k.open = slices.Insert(k.open, i, b)
	e.openWindows.Add(1)
	return b
}

func (e *Engine) newBucket(start, end int64) *bucket {
	var b *bucket
	if n := len(e.free); n > 0 {
		b = e.free[n-1]
		e.free = e.free[:n-1]
	} else {
		b = new(bucket)
	}
	b.start, b.end = start, end
	return b
}

// maxFree bounds the free list of window buckets kept for reuse.
const maxFree = 4096

func (e *Engine) freeBucket(b *bucket) {
	if len(e.free) >= maxFree {
		return // let the GC have it
	}
	b.reset()
	e.free = append(e.free, b)
}

// addWindow folds r into the windows of k.
func (e *Engine) addWindow(em *emitter, k *wkey, r *ingest.Reading) error {
	w := k.w
	t := r.Time
	if w.processing {
		t = r.Arrival
		if t == 0 {
			t = e.now().UnixNano()
		}
	}
	k.active = true
	// A reading that misses a closed window is late (counted once, even
	// when it misses several hopping windows); with late: revise it is
	// folded into the retained windows.
	late, folded := false, false
	switch w.kind {
	case kindTumbling:
		start := floorDiv(t, w.size) * w.size
		end := start + w.size
		if end <= k.wm {
			late = true
			folded = e.foldLate(k, r, t, start, end)
		} else {
			e.findOrOpen(k, start, end).add(w, r.Value, t, r.Quality, r.Unit)
		}
	case kindHopping:
		// The windows [s, s+size) with s a multiple of slide and
		// s <= t < s+size; the reading goes into its pane, from which the
		// windows are assembled when they close.
		p := floorDiv(t, w.pane) * w.pane
		sMin := (floorDiv(t-w.size, w.slide) + 1) * w.slide
		if sMin+w.size <= k.wm {
			late = true
			for s := sMin; s <= t && s+w.size <= k.wm; s += w.slide {
				folded = e.foldLate(k, r, t, s, s+w.size) || folded
			}
		}
		if floorDiv(t, w.slide)*w.slide+w.size > k.wm {
			e.findOrOpen(k, p, p+w.pane).add(w, r.Value, t, r.Quality, r.Unit)
		}
	case kindSession:
		// Late: its session would already be closed, or it would extend
		// (within gap after) a session already emitted.
		if t+w.gap <= k.wm || t < k.sessEnd {
			late = true
			break
		}
		e.addSession(k, r, t)
	}
	if late {
		if folded {
			e.lateFolded.Add(1)
		} else {
			k.pendLate++
			e.lateDropped.Add(1)
		}
	}
	if !k.hasMax || t > k.maxT {
		k.hasMax = true
		k.maxT = t
		k.maxArrival = r.Arrival
	}
	return e.advance(em, k, k.maxT-w.lateness)
}

// addSession puts t into the open session it extends (merging sessions it
// bridges) or opens a new one. A session bucket spans [first, last+gap).
func (e *Engine) addSession(k *wkey, r *ingest.Reading, t int64) {
	w := k.w
	var hit *bucket
	hi := -1
	for i, b := range k.open {
		if t > b.start-w.gap && t < b.end {
			hit, hi = b, i
			break
		}
	}
	if hit == nil {
		b := e.findOrOpen(k, t, t+w.gap)
		b.add(w, r.Value, t, r.Quality, r.Unit)
		return
	}
	hit.add(w, r.Value, t, r.Quality, r.Unit)
	if t < hit.start {
		hit.start = t
	}
	if t+w.gap > hit.end {
		hit.end = t + w.gap
	}
	// Merge with following sessions the new bounds now reach.
	for hi+1 < len(k.open) && k.open[hi+1].start < hit.end {
		nb := k.open[hi+1]
		mergeBucket(w, hit, nb)
		k.open = slices.Delete(k.open, hi+1, hi+2)
		e.freeBucket(nb)
		e.openWindows.Add(-1)
	}
	// And with the previous one, if the start moved back into it.
	if hi > 0 && k.open[hi-1].end > hit.start {
		pb := k.open[hi-1]
		mergeBucket(w, pb, hit)
		k.open = slices.Delete(k.open, hi, hi+1)
		e.freeBucket(hit)
		e.openWindows.Add(-1)
	}
}

// mergeBucket folds src into dst (Chan et al. for the variance).
func mergeBucket(w *window, dst, src *bucket) {
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

// foldLate folds a late reading into the retained window [start, end) of k
// (late: revise, within retention), creating it if it was never emitted.
// It returns false when the reading cannot be folded.
func (e *Engine) foldLate(k *wkey, r *ingest.Reading, t, start, end int64) bool {
	w := k.w
	if !w.revise || end+w.retention <= k.wm {
		return false
	}
	i, found := slices.BinarySearchFunc(k.emitted, start, func(b *bucket, s int64) int {
		return cmp.Compare(b.start, s)
	})
	var b *bucket
	if found {
		b = k.emitted[i]
	} else {
		b = e.newBucket(start, end)
		k.emitted = slices.Insert(k.emitted, i, b)
	}
	b.add(w, r.Value, t, r.Quality|ingest.QualityLate, r.Unit)
	b.late++
	b.dirty = true
	return true
}

// advance moves the watermark of k to wm (if later) and emits every window
// that ends at or before it.
func (e *Engine) advance(em *emitter, k *wkey, wm int64) error {
	if wm <= k.wm {
		return nil
	}
	old := k.wm
	k.wm = wm
	if k.w.kind == kindHopping {
		return e.emitHopping(em, k, old, wm)
	}
	for len(k.open) > 0 && k.open[0].end <= wm {
		// Sessions are kept ordered by start; their ends are ordered too
		// because overlapping sessions merge.
		b := k.open[0]
		k.open = slices.Delete(k.open, 0, 1)
		e.openWindows.Add(-1)
		if err := e.emit(em, k, b); err != nil {
			e.retire(k, b)
			return err
		}
		e.retire(k, b)
	}
	return nil
}

func ceilAlign(x, a int64) int64 { return -floorDiv(-x, a) * a }

// emitHopping emits the hopping windows of k that end in (lo, hi] and hold
// readings, assembled from their panes, then frees the panes that no
// window still open needs.
func (e *Engine) emitHopping(em *emitter, k *wkey, lo, hi int64) error {
	w := k.w
	next := int64(minTime) // windows before next are done
	first := ceilAlign(lo-w.size+1, w.slide)
	if lo == minTime {
		first = minTime
	}
	for _, p := range k.open {
		// Windows containing the pane: s <= p.start, p.start+pane <= s+size.
		s := max(ceilAlign(p.start+w.pane-w.size, w.slide), next, first)
		for ; s <= p.start && s+w.size <= hi; s += w.slide {
			if err := e.emitHop(em, k, s); err != nil {
				return err
			}
			next = s + w.slide
		}
	}
	keep := k.open[:0]
	for _, p := range k.open {
		if floorDiv(p.start, w.slide)*w.slide+w.size <= hi {
			e.freeBucket(p)
			e.openWindows.Add(-1)
			continue
		}
		keep = append(keep, p)
	}
	clear(k.open[len(keep):])
	k.open = keep
	return nil
}

// emitHop assembles the hopping window [s, s+size) of k from its panes and
// emits it.
func (e *Engine) emitHop(em *emitter, k *wkey, s int64) error {
	w := k.w
	b := e.newBucket(s, s+w.size)
	for _, p := range k.open {
		if p.start >= s && p.start+w.pane <= s+w.size {
			mergeBucket(w, b, p)
		}
	}
	b.start, b.end = s, s+w.size
	b.emitted, b.dirty, b.revision, b.late, b.rejected = false, false, 0, 0, 0
	if b.count == 0 {
		e.freeBucket(b)
		return nil
	}
	err := e.emit(em, k, b)
	e.retire(k, b)
	return err
}

// retire keeps an emitted bucket for revisions or frees it.
func (e *Engine) retire(k *wkey, b *bucket) {
	if !k.w.revise {
		e.freeBucket(b)
		return
	}
	b.dirty = false
	i, _ := slices.BinarySearchFunc(k.emitted, b.start, func(x *bucket, s int64) int {
		return cmp.Compare(x.start, s)
	})
	k.emitted = slices.Insert(k.emitted, i, b)
}

// revise emits the dirty retained windows of k and forgets those past
// retention.
func (e *Engine) revise(em *emitter, k *wkey) error {
	if len(k.emitted) == 0 {
		return nil
	}
	keep := k.emitted[:0]
	var err error
	for _, b := range k.emitted {
		if err == nil && b.dirty {
			if b.emitted {
				b.revision++
			}
			err = e.emit(em, k, b)
			b.dirty = false
		}
		if b.end+k.w.retention <= k.wm {
			e.freeBucket(b)
			continue
		}
		keep = append(keep, b)
	}
	clear(k.emitted[len(keep):])
	k.emitted = keep
	return err
}

// emit sends the summary of b.
func (e *Engine) emit(em *emitter, k *wkey, b *bucket) error {
	w := k.w
	s := &e.sum
	*s = ingest.Summary{
		ID:        ingest.SummaryID(w.cfg.Name, k.sensor, k.group, k.metric, b.start, b.end),
		Revision:  b.revision,
		Window:    w.cfg.Name,
		Sensor:    k.sensor,
		Metric:    k.metric,
		Unit:      b.unit,
		Group:     k.group,
		Start:     b.start,
		End:       b.end,
		Count:     b.count,
		Sum:       b.sum,
		Min:       b.min,
		Max:       b.max,
		M2:        b.m2,
		First:     b.first,
		Last:      b.last,
		FirstTime: b.firstT,
		LastTime:  b.lastT,
		Late:      b.late,
		Rejected:  b.rejected,
		Quality:   b.quality,
		Meta:      k.meta,
	}
	if b.count > 0 {
		s.Mean = b.sum / float64(b.count)
	}
	if b.count > 1 {
		s.Stddev = math.Sqrt(b.m2 / float64(b.count-1))
	}
	if !b.emitted {
		// Late and rejected readings of the key since its previous summary
		// are reported with its next one.
		s.Late += k.pendLate
		s.Rejected += k.pendRej
		b.late, b.rejected = s.Late, s.Rejected
		k.pendLate, k.pendRej = 0, 0
	}
	if b.capped {
		e.capped.Add(1)
	}
	if w.samples && !b.capped && len(b.samples) > 0 {
		twa, delta := orderedAggs(b.samples)
		if w.twa {
			s.TWA = twa
		}
		if w.delta || w.rate {
			if w.delta {
				s.Delta = delta
			}
			if w.rate && b.lastT > b.firstT {
				s.Rate = delta / (float64(b.lastT-b.firstT) / float64(time.Second))
			}
		}
		if len(b.samples) == 1 || b.lastT == b.firstT {
			s.TWA = 0
			if w.twa {
				s.TWA = s.Mean
			}
		}
	}
	if b.sketch != nil && b.count > 0 {
		// The Sink does not retain Quantiles and Sketch: the buffers are
		// reused.
		s.Quantiles = e.quantBuf[:0]
		for _, q := range w.quantiles {
			v, _ := b.sketch.Quantile(q) // q validated, sketch not empty
			s.Quantiles = append(s.Quantiles, ingest.Quantile{Q: q, Value: v})
		}
		s.Sketch = b.sketch.Encode(e.sketchBuf[:0])
		e.quantBuf, e.sketchBuf = s.Quantiles, s.Sketch
	}
	b.emitted = true
	if w.kind == kindSession {
		k.sessEnd = max(k.sessEnd, b.end)
	}
	if s.Revision > 0 {
		e.revisions.Add(1)
	}
	e.summaries.Add(1)
	return em.sink.Summary(em.ctx, s)
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
