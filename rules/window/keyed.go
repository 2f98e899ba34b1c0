package window

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
)

// Emit receives a summary when a window closes (or is revised or flushed).
// The pointer is only valid during the call: it must not be retained, nor
// its Quantiles, Sketch and Meta.
type Emit func(s *ingest.Summary) error

// Keyed owns the keyed windows of one engine: its keys (in creation order,
// for deterministic ticks and flushes), their open and retained buckets,
// the free list of buckets, and the Summary and buffers reused for every
// emission. It is used from one goroutine at a time; Stats may be called
// from any.
type Keyed struct {
	now       func() time.Time
	keys      map[keyID]*Key
	order     []*Key
	free      []*bucket
	sum       ingest.Summary
	quantBuf  []ingest.Quantile // reused for sum.Quantiles
	sketchBuf []byte            // reused for sum.Sketch

	// Checkpoints (state.go): with track on, the keys whose state changed
	// since the last Committed, and the stored keys swept since.
	track  bool
	dirty  []*Key
	gone   []*Key
	pinned []*Key // restored keys, held until Unpin

	lateDropped atomic.Uint64
	lateFolded  atomic.Uint64
	summaries   atomic.Uint64
	revisions   atomic.Uint64
	capped      atomic.Uint64
	openWindows atomic.Int64
	nkeys       atomic.Int64
}

type keyID struct {
	win                   int
	sensor, group, metric string
}

// Stats are the counters of a Keyed.
type Stats struct {
	Late        uint64 // late readings dropped (late: drop, or past retention)
	Revised     uint64 // late readings folded into a revised summary
	Summaries   uint64 // summaries emitted, revisions included
	Revisions   uint64 // summaries emitted with Revision > 0
	Capped      uint64 // summaries emitted without twa, delta and rate (over MaxSamples)
	OpenWindows int64  // open window instances (hopping windows: open panes)
	Keys        int64  // window keys (window rule x sensor or group x metric)
}

// NewKeyed returns an empty Keyed; now is the wall clock for processing-time
// windows (nil: time.Now).
func NewKeyed(now func() time.Time) *Keyed {
	if now == nil {
		now = time.Now
	}
	return &Keyed{now: now, keys: map[keyID]*Key{}}
}

// Stats returns the counters. Safe to call from any goroutine.
func (kd *Keyed) Stats() Stats {
	return Stats{
		Late: kd.lateDropped.Load(), Revised: kd.lateFolded.Load(), Summaries: kd.summaries.Load(),
		Revisions: kd.revisions.Load(), Capped: kd.capped.Load(), OpenWindows: kd.openWindows.Load(), Keys: kd.nkeys.Load(),
	}
}

// Name returns the rule's name.
func (w *Rule) Name() string { return w.cfg.Name }

// Config returns the rule's config.
func (w *Rule) Config() Config { return w.cfg }

// Key returns the key of rule w for (sensor or group, metric), creating it
// on first use, and takes a reference on it (see Release): a key nobody
// refers to is forgotten by Sweep once its windows are closed. meta is
// attached to its summaries.
func (kd *Keyed) Key(w *Rule, sensor, group, metric string, meta map[string]string) *Key {
	id := keyID{win: w.idx, sensor: sensor, group: group, metric: metric}
	k := kd.keys[id]
	if k == nil {
		k = &Key{w: w, sensor: sensor, group: group, metric: metric, meta: meta, wm: minTime, sessEnd: minTime, id: id}
		kd.keys[id] = k
		kd.order = append(kd.order, k)
		kd.nkeys.Add(1)
	}
	k.refs++
	return k
}

// Release gives back a reference taken by Key.
func (k *Key) Release() { k.refs-- }

// Idle reports whether k holds no open or retained window.
func (k *Key) Idle() bool { return len(k.open) == 0 && len(k.emitted) == 0 }

// Reject counts a rejected reading of k, reported with its next summary.
func (kd *Keyed) Reject(k *Key) {
	k.pendRej++
	kd.touch(k)
}

// Add folds r into the windows of k, emitting those it closes.
func (kd *Keyed) Add(k *Key, r *ingest.Reading, emit Emit) error { return kd.add(emit, k, r) }

// ShiftBack moves the idle-advance anchors of every key back by back ns:
// the wall clock stepped back (NTP step, RTC-less boot), and the idle
// advance must keep measuring the time that really elapsed. Watermarks
// never move back, so nothing is emitted twice.
func (kd *Keyed) ShiftBack(back int64) {
	for _, k := range kd.order {
		kd.touch(k)
		k.anchorWall -= back
		k.anchorTick -= back
		if k.maxArrival != 0 {
			k.maxArrival -= back
		}
	}
}

// Advance moves the watermarks of every key on by the wall clock now (Unix
// ns), emits the windows that closes and the pending revisions, and forgets
// retained windows past retention.
func (kd *Keyed) Advance(now int64, emit Emit) error {
	for _, k := range kd.order {
		if err := kd.tickKey(emit, k, now); err != nil {
			return err
		}
	}
	return nil
}

// Sweep forgets the keys nobody refers to whose windows are all closed and
// past retention.
func (kd *Keyed) Sweep() {
	keep := kd.order[:0]
	for _, k := range kd.order {
		if k.refs > 0 || !k.Idle() {
			keep = append(keep, k)
			continue
		}
		delete(kd.keys, k.id)
		kd.nkeys.Add(-1)
		kd.forget(k)
	}
	clear(kd.order[len(keep):])
	kd.order = keep
}

// Flush emits every open window and pending revision, in key creation
// order and window start order.
func (kd *Keyed) Flush(emit Emit) error {
	for _, k := range kd.order {
		if err := kd.flushKey(emit, k); err != nil {
			return err
		}
	}
	return nil
}

// ErrAdopt is returned by Adopt when kd already has keys.
var ErrAdopt = errors.New("window: adopt")

// Adopt takes over the keys of old, the windows of the previous
// configuration, so that a reload does not cut windows in two: the keys of
// rules that exist in rules under the same name with the same kind of
// window (Same) continue in kd; the others are flushed to emit now. old is
// empty afterwards. Only the first flush error is returned, after the
// handover.
func (kd *Keyed) Adopt(old *Keyed, rules []*Rule, emit Emit) error {
	if len(kd.order) != 0 {
		return fmt.Errorf("%w: the windows already have keys", ErrAdopt)
	}
	byName := map[string]*Rule{}
	for _, w := range rules {
		byName[w.cfg.Name] = w
	}
	var flushErr error
	for _, k := range old.order {
		nw := byName[k.w.cfg.Name]
		if nw == nil || !Same(nw.cfg, k.w.cfg) {
			if flushErr == nil {
				flushErr = old.flushKey(emit, k)
			}
			continue
		}
		id := keyID{win: nw.idx, sensor: k.sensor, group: k.group, metric: k.metric}
		k.w, k.id, k.refs, k.dirty = nw, id, 0, false
		kd.keys[id] = k
		kd.order = append(kd.order, k)
		kd.nkeys.Add(1)
		kd.openWindows.Add(int64(len(k.open)))
	}
	old.order, old.keys, old.dirty, old.gone, old.pinned = nil, map[keyID]*Key{}, nil, nil, nil
	old.openWindows.Store(0)
	old.nkeys.Store(0)
	return flushErr
}

const minTime = -1 << 63

// Rule is a compiled Config: one window rule.
type Rule struct {
	cfg        Config
	idx        int
	fp         uint32 // fingerprint of the kind of window (state.go)
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

// Compile compiles the (defaulted, validated) window rule c, the i-th of
// its config.
func Compile(i int, c Config) *Rule {
	w := &Rule{
		cfg:        c,
		idx:        i,
		processing: c.Time == ProcessingTime,
		revise:     c.Late == LateRevise,
		size:       int64(c.Size),
		slide:      int64(c.Slide),
		gap:        int64(c.Gap),
		lateness:   int64(c.Lateness),
		retention:  int64(c.Retention),
		twa:        c.Has(AggTWA),
		delta:      c.Has(AggDelta),
		rate:       c.Has(AggRate),
	}
	w.samples = w.twa || w.delta || w.rate
	w.fp = fingerprint(c)
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
	if c.Has(AggQuantiles) {
		w.quantiles = slices.Clone(c.Quantiles)
		w.accuracy = c.SketchAccuracy
	}
	return w
}

// Key is the state of one window rule for one key (sensor or group,
// metric). Keyed owns it; a route holds it to add readings.
type Key struct {
	w      *Rule
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
	anchorTick int64 // the tick that set the anchors (Resume: the idle advance starts after it)
	active     bool  // got readings since the last tick

	open    []*bucket // by start
	emitted []*bucket // revise: emitted windows kept for Retention, by start

	pendLate uint64 // late readings dropped since the last summary
	pendRej  uint64 // rejected readings since the last summary

	sessEnd int64 // session windows: end of the last session emitted

	id   keyID
	refs int // routes that lead here

	dirty  bool // in Keyed.dirty
	stored bool // in the state store as of the last Committed
	swept  bool // forgotten by Sweep
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// findOrOpen returns the open bucket [start, end), creating it in order.
func (kd *Keyed) findOrOpen(k *Key, start, end int64) *bucket {
	i := len(k.open)
	for i > 0 && k.open[i-1].start > start {
		i--
	}
	if i > 0 && k.open[i-1].start == start {
		return k.open[i-1]
	}
	b := kd.newBucket(start, end)
	k.open = slices.Insert(k.open, i, b)
	kd.openWindows.Add(1)
	return b
}

func (kd *Keyed) newBucket(start, end int64) *bucket {
	var b *bucket
	if n := len(kd.free); n > 0 {
		b = kd.free[n-1]
		kd.free = kd.free[:n-1]
	} else {
		b = new(bucket)
	}
	b.start, b.end = start, end
	return b
}

// maxFree bounds the free list of window buckets kept for reuse.
const maxFree = 4096

func (kd *Keyed) freeBucket(b *bucket) {
	if len(kd.free) >= maxFree {
		return // let the GC have it
	}
	b.reset()
	kd.free = append(kd.free, b)
}

// add folds r into the windows of k.
func (kd *Keyed) add(emit Emit, k *Key, r *ingest.Reading) error {
	w := k.w
	t := r.Time
	if w.processing {
		t = r.Arrival
		if t == 0 {
			t = kd.now().UnixNano()
		}
	}
	k.active = true
	kd.touch(k)
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
			folded = kd.foldLate(k, r, t, start, end)
		} else {
			kd.findOrOpen(k, start, end).add(w, r.Value, t, r.Quality, r.Unit)
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
				folded = kd.foldLate(k, r, t, s, s+w.size) || folded
			}
		}
		if floorDiv(t, w.slide)*w.slide+w.size > k.wm {
			kd.findOrOpen(k, p, p+w.pane).add(w, r.Value, t, r.Quality, r.Unit)
		}
	case kindSession:
		// Late: its session would already be closed, or it would extend
		// (within gap after) a session already emitted.
		if t+w.gap <= k.wm || t < k.sessEnd {
			late = true
			break
		}
		kd.addSession(k, r, t)
	}
	if late {
		if folded {
			kd.lateFolded.Add(1)
		} else {
			k.pendLate++
			kd.lateDropped.Add(1)
		}
	}
	if !k.hasMax || t > k.maxT {
		k.hasMax = true
		k.maxT = t
		k.maxArrival = r.Arrival
	}
	return kd.advance(emit, k, k.maxT-w.lateness)
}

// addSession puts t into the open session it extends (merging sessions it
// bridges) or opens a new one. A session bucket spans [first, last+gap).
func (kd *Keyed) addSession(k *Key, r *ingest.Reading, t int64) {
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
		b := kd.findOrOpen(k, t, t+w.gap)
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
		kd.freeBucket(nb)
		kd.openWindows.Add(-1)
	}
	// And with the previous one, if the start moved back into it.
	if hi > 0 && k.open[hi-1].end > hit.start {
		pb := k.open[hi-1]
		mergeBucket(w, pb, hit)
		k.open = slices.Delete(k.open, hi, hi+1)
		kd.freeBucket(hit)
		kd.openWindows.Add(-1)
	}
}

// foldLate folds a late reading into the retained window [start, end) of k
// (late: revise, within retention), creating it if it was never emitted.
// It returns false when the reading cannot be folded.
func (kd *Keyed) foldLate(k *Key, r *ingest.Reading, t, start, end int64) bool {
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
		b = kd.newBucket(start, end)
		k.emitted = slices.Insert(k.emitted, i, b)
	}
	b.add(w, r.Value, t, r.Quality|ingest.QualityLate, r.Unit)
	b.late++
	b.dirty = true
	return true
}

// advance moves the watermark of k to wm (if later) and emits every window
// that ends at or before it.
func (kd *Keyed) advance(emit Emit, k *Key, wm int64) error {
	if wm <= k.wm {
		return nil
	}
	old := k.wm
	k.wm = wm
	if k.w.kind == kindHopping {
		return kd.emitHopping(emit, k, old, wm)
	}
	for len(k.open) > 0 && k.open[0].end <= wm {
		// Sessions are kept ordered by start; their ends are ordered too
		// because overlapping sessions merge.
		b := k.open[0]
		k.open = slices.Delete(k.open, 0, 1)
		kd.openWindows.Add(-1)
		if err := kd.emit(emit, k, b); err != nil {
			kd.retire(k, b)
			return err
		}
		kd.retire(k, b)
	}
	return nil
}

func ceilAlign(x, a int64) int64 { return -floorDiv(-x, a) * a }

// emitHopping emits the hopping windows of k that end in (lo, hi] and hold
// readings, assembled from their panes, then frees the panes that no
// window still open needs.
func (kd *Keyed) emitHopping(emit Emit, k *Key, lo, hi int64) error {
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
			if err := kd.emitHop(emit, k, s); err != nil {
				return err
			}
			next = s + w.slide
		}
	}
	keep := k.open[:0]
	for _, p := range k.open {
		if floorDiv(p.start, w.slide)*w.slide+w.size <= hi {
			kd.touch(k)
			kd.freeBucket(p)
			kd.openWindows.Add(-1)
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
func (kd *Keyed) emitHop(emit Emit, k *Key, s int64) error {
	w := k.w
	b := kd.newBucket(s, s+w.size)
	for _, p := range k.open {
		if p.start >= s && p.start+w.pane <= s+w.size {
			mergeBucket(w, b, p)
		}
	}
	b.start, b.end = s, s+w.size
	b.emitted, b.dirty, b.revision, b.late, b.rejected = false, false, 0, 0, 0
	if b.count == 0 {
		kd.freeBucket(b)
		return nil
	}
	err := kd.emit(emit, k, b)
	kd.retire(k, b)
	return err
}

// retire keeps an emitted bucket for revisions or frees it.
func (kd *Keyed) retire(k *Key, b *bucket) {
	if !k.w.revise {
		kd.freeBucket(b)
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
func (kd *Keyed) revise(emit Emit, k *Key) error {
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
			err = kd.emit(emit, k, b)
			b.dirty = false
		}
		if b.end+k.w.retention <= k.wm {
			kd.touch(k)
			kd.freeBucket(b)
			continue
		}
		keep = append(keep, b)
	}
	clear(k.emitted[len(keep):])
	k.emitted = keep
	return err
}

// emit sends the summary of b.
func (kd *Keyed) emit(emit Emit, k *Key, b *bucket) error {
	w := k.w
	s := &kd.sum
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
		kd.capped.Add(1)
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
		s.Quantiles = kd.quantBuf[:0]
		for _, q := range w.quantiles {
			v, _ := b.sketch.Quantile(q) // q validated, sketch not empty
			s.Quantiles = append(s.Quantiles, ingest.Quantile{Q: q, Value: v})
		}
		s.Sketch = b.sketch.Encode(kd.sketchBuf[:0])
		kd.quantBuf, kd.sketchBuf = s.Quantiles, s.Sketch
	}
	b.emitted = true
	kd.touch(k)
	if w.kind == kindSession {
		k.sessEnd = max(k.sessEnd, b.end)
	}
	if s.Revision > 0 {
		kd.revisions.Add(1)
	}
	kd.summaries.Add(1)
	return emit(s)
}

func (kd *Keyed) tickKey(emit Emit, k *Key, now int64) error {
	w := k.w
	if w.processing {
		if err := kd.advance(emit, k, now-w.lateness); err != nil {
			return err
		}
		return kd.revise(emit, k)
	}
	switch {
	case k.active:
		// Anchor the key's event clock to the wall clock: at the arrival
		// of its newest reading when known, else (conservatively) now.
		// A key that got readings since the last tick is not idle: its
		// own watermark closes its windows, and a reading still in flight
		// gets at least one tick interval of grace.
		k.active = false
		kd.touch(k)
		k.anchorT, k.anchorWall, k.anchorTick = k.maxT, now, now
		if k.maxArrival != 0 && k.maxArrival < now {
			k.anchorWall = k.maxArrival
		}
	case k.hasMax && now > k.anchorWall:
		// Idle: the key's event clock moves on with the wall clock, so
		// silent sensors still close their windows.
		if err := kd.advance(emit, k, k.anchorT+(now-k.anchorWall)-w.lateness); err != nil {
			return err
		}
	}
	return kd.revise(emit, k)
}

// flushKey emits every open window and pending revision of k.
func (kd *Keyed) flushKey(emit Emit, k *Key) error {
	if k.w.kind == kindHopping {
		if err := kd.emitHopping(emit, k, k.wm, 1<<63-1); err != nil {
			return err
		}
	}
	for len(k.open) > 0 {
		b := k.open[0]
		k.open = k.open[1:]
		kd.openWindows.Add(-1)
		err := kd.emit(emit, k, b)
		kd.retire(k, b)
		if err != nil {
			return err
		}
	}
	k.open = nil
	return kd.revise(emit, k)
}
