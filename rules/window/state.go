package window

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/rules/internal/sketch"
	"github.com/sensorgate/sensorgate/rules/internal/state"
)

// Checkpoints: with Track on, every change to a key's state marks the key
// (a flag and an append, never a map insert), and Changes writes the keys
// changed since the last Committed, each as one store key under
// StatePrefix. Watermark moves of the idle advance alone do not mark a
// key: Resume recomputes them from the anchors and the last tick, so an
// idle gateway does not rewrite every key on every tick.

// StatePrefix starts the store key of every window key:
// "r/w/<rule>\x00<sensor>\x00<group>\x00<metric>".
const StatePrefix = "r/w/"

// stateVersion is the first byte of a key's value.
const stateVersion = 1

// ErrDropped is returned (wrapped) by RestoreKey for the state of a rule
// that is gone or whose kind of window changed (Same): it cannot continue.
var ErrDropped = errors.New("window: state of a rule no longer configured")

// Track turns change tracking on (the engine checkpoints).
func (kd *Keyed) Track() { kd.track = true }

func (kd *Keyed) touch(k *Key) {
	if kd.track && !k.dirty {
		k.dirty = true
		kd.dirty = append(kd.dirty, k)
	}
}

func (kd *Keyed) forget(k *Key) {
	k.swept = true
	if kd.track && k.stored {
		kd.gone = append(kd.gone, k)
	}
}

// Changed reports whether any key changed since the last Committed.
func (kd *Keyed) Changed() bool { return len(kd.dirty) > 0 || len(kd.gone) > 0 }

// Changes appends to b the changes since the last Committed: deletes of
// the stored keys Sweep forgot, then the state of every changed key. With
// all, it appends every key instead (a full checkpoint).
func (kd *Keyed) Changes(b *state.Batch, all bool) {
	list := kd.dirty
	if all {
		list = kd.order
	} else {
		for _, k := range kd.gone {
			b.Start()
			b.Buf = k.appendName(b.Buf)
			b.Mid()
			b.Delete()
		}
	}
	for _, k := range list {
		if k.swept {
			continue
		}
		b.Start()
		b.Buf = k.appendName(b.Buf)
		b.Mid()
		b.Buf = k.appendState(b.Buf)
		b.End()
	}
}

// Committed records that the last Changes(all) reached the store. It
// returns how many store keys were added and deleted (all: how many keys
// were written).
func (kd *Keyed) Committed(all bool) (added, deleted int) {
	list := kd.dirty
	if all {
		list = kd.order
		for _, k := range kd.dirty {
			k.dirty = false
		}
	}
	for _, k := range list {
		k.dirty = false
		if !k.swept && (all || !k.stored) {
			k.stored = true
			added++
		}
	}
	if !all {
		deleted = len(kd.gone)
	}
	for _, k := range kd.gone {
		k.stored = false
	}
	clear(kd.dirty)
	clear(kd.gone)
	kd.dirty, kd.gone = kd.dirty[:0], kd.gone[:0]
	return added, deleted
}

func (k *Key) appendName(b []byte) []byte {
	b = append(b, StatePrefix...)
	b = append(b, k.w.cfg.Name...)
	b = append(b, 0)
	b = append(b, k.sensor...)
	b = append(b, 0)
	b = append(b, k.group...)
	b = append(b, 0)
	return append(b, k.metric...)
}

// fingerprint identifies the kind of window (Same without the name): the
// state of a rule whose kind changed is dropped on restore.
func fingerprint(c Config) uint32 {
	h := fnv.New32a()
	for _, s := range []string{c.Type, c.Size.String(), c.Slide.String(), c.Gap.String(), c.Time, c.Late, c.Retention.String(),
		c.GroupBy, fmt.Sprint(c.Aggregates), fmt.Sprint(c.Quantiles), strconv.FormatFloat(c.SketchAccuracy, 'g', -1, 64)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return h.Sum32()
}

// Flags of a key's value.
const (
	fHasMax = 1 << iota
	fActive
	fSessEnd
	fWM
	fMeta
	fUnit // a unit for the buckets that have none of their own follows
)

// Flags of a bucket.
const (
	bEmitted = 1 << iota
	bDirty
	bCapped
	bSketch
	bSamples
	bCounts // late, rejected, revision
	bUnit   // the bucket's unit differs from the key's
	bOne    // count 1: one value stands for sum, min, max, mean, first, last (m2 = 0)
)

// appendState encodes k compactly: times as zigzag deltas from the
// newest event time, numbers with state.AppendNum (one for a window of
// one reading).
func (k *Key) appendState(b []byte) []byte {
	b = append(b, stateVersion)
	b = binary.LittleEndian.AppendUint32(b, k.w.fp)
	var fl byte
	set := func(f byte, on bool) {
		if on {
			fl |= f
		}
	}
	set(fHasMax, k.hasMax)
	set(fActive, k.active)
	set(fSessEnd, k.sessEnd != minTime)
	set(fWM, k.wm != minTime)
	set(fMeta, len(k.meta) > 0)
	unit := k.unit()
	set(fUnit, unit != "")
	b = append(b, fl)
	base := k.maxT
	b = binary.AppendVarint(b, base)
	for _, v := range []int64{k.maxArrival, k.anchorT, k.anchorWall} {
		b = binary.AppendVarint(b, v-base)
	}
	b = binary.AppendVarint(b, k.anchorTick-k.anchorWall)
	if k.wm != minTime {
		b = binary.AppendVarint(b, k.wm-base)
	}
	if k.sessEnd != minTime {
		b = binary.AppendVarint(b, k.sessEnd-base)
	}
	b = binary.AppendUvarint(b, k.pendLate)
	b = binary.AppendUvarint(b, k.pendRej)
	if unit != "" {
		b = state.AppendString(b, unit)
	}
	if len(k.meta) > 0 {
		names := make([]string, 0, len(k.meta))
		for m := range k.meta {
			names = append(names, m)
		}
		slices.Sort(names)
		b = binary.AppendUvarint(b, uint64(len(names)))
		for _, m := range names {
			b = state.AppendString(b, m)
			b = state.AppendString(b, k.meta[m])
		}
	}
	for _, list := range [2][]*bucket{k.open, k.emitted} {
		b = binary.AppendUvarint(b, uint64(len(list)))
		for _, bk := range list {
			b = appendBucketState(b, bk, base, unit, k.w.span())
		}
	}
	return b
}

// unit returns the unit of the key's first bucket, written once per key.
func (k *Key) unit() string {
	for _, list := range [2][]*bucket{k.open, k.emitted} {
		for _, bk := range list {
			return bk.unit
		}
	}
	return ""
}

// span returns the usual length of a bucket of w (a tumbling window, a
// hopping window's pane), written as 0.
func (w *Rule) span() int64 {
	if w.kind == kindHopping {
		return w.pane
	}
	return w.size
}

func appendBucketState(b []byte, bk *bucket, base int64, unit string, span int64) []byte {
	var fl byte
	set := func(f byte, on bool) {
		if on {
			fl |= f
		}
	}
	set(bEmitted, bk.emitted)
	set(bDirty, bk.dirty)
	set(bCapped, bk.capped)
	set(bSketch, bk.sketch != nil)
	set(bSamples, len(bk.samples) > 0)
	set(bCounts, bk.late != 0 || bk.rejected != 0 || bk.revision != 0)
	set(bUnit, bk.unit != unit)
	one := bk.count == 1 && bk.m2 == 0 && bk.sum == bk.first && bk.min == bk.first && bk.max == bk.first &&
		bk.mean == bk.first && bk.last == bk.first
	set(bOne, one)
	b = append(b, fl)
	b = binary.AppendVarint(b, bk.start-base)
	b = binary.AppendVarint(b, bk.end-bk.start-span)
	b = binary.AppendUvarint(b, bk.count)
	if one {
		b = state.AppendNum(b, bk.first)
	} else {
		for _, v := range [...]float64{bk.sum, bk.min, bk.max, bk.mean, bk.m2, bk.first, bk.last} {
			b = state.AppendNum(b, v)
		}
	}
	b = binary.AppendVarint(b, bk.firstT-bk.start)
	b = binary.AppendVarint(b, bk.lastT-bk.firstT)
	b = binary.AppendUvarint(b, uint64(bk.quality))
	if bk.unit != unit {
		b = state.AppendString(b, bk.unit)
	}
	if fl&bCounts != 0 {
		b = binary.AppendUvarint(b, bk.late)
		b = binary.AppendUvarint(b, bk.rejected)
		b = binary.AppendUvarint(b, uint64(bk.revision))
	}
	if bk.sketch != nil {
		sk := bk.sketch.Encode(nil)
		b = append(binary.AppendUvarint(b, uint64(len(sk))), sk...)
	}
	if len(bk.samples) > 0 {
		b = binary.AppendUvarint(b, uint64(len(bk.samples)))
		for _, s := range bk.samples {
			b = binary.AppendVarint(b, s.t-bk.start)
			b = state.AppendNum(b, s.v)
		}
	}
	return b
}

// RestoreKey loads the state of one store key written by Changes into
// kd, for rules, the window rules of the running config. A key of a rule
// that is not among them, or whose kind of window changed, is not loaded
// (ErrDropped); a value that cannot be read is an error wrapping
// state.ErrCorrupt. The key comes back pinned (see Unpin) and counts as
// stored.
func (kd *Keyed) RestoreKey(key, value []byte, rules []*Rule) error {
	parts := splitName(key)
	if parts == nil {
		return fmt.Errorf("window: state key %q: %w", key, state.ErrCorrupt)
	}
	var w *Rule
	for _, r := range rules {
		if r.cfg.Name == parts[0] {
			w = r
		}
	}
	d := &state.Dec{B: value}
	if d.Byte() != stateVersion {
		return fmt.Errorf("window: state key %q: unknown version: %w", key, state.ErrCorrupt)
	}
	if len(d.B) < 4 {
		return fmt.Errorf("window: state key %q: %w", key, state.ErrCorrupt)
	}
	fp := binary.LittleEndian.Uint32(d.B)
	d.B = d.B[4:]
	if w == nil || fp != w.fp {
		return fmt.Errorf("%w: %q", ErrDropped, key)
	}
	id := keyID{win: w.idx, sensor: parts[1], group: parts[2], metric: parts[3]}
	if kd.keys[id] != nil {
		return fmt.Errorf("window: state key %q restored twice: %w", key, state.ErrCorrupt)
	}
	k := &Key{w: w, sensor: parts[1], group: parts[2], metric: parts[3], id: id, wm: minTime, sessEnd: minTime, stored: true}
	fl := d.Byte()
	k.hasMax, k.active = fl&fHasMax != 0, fl&fActive != 0
	base := d.Varint()
	k.maxT = base
	k.maxArrival, k.anchorT, k.anchorWall = base+d.Varint(), base+d.Varint(), base+d.Varint()
	k.anchorTick = k.anchorWall + d.Varint()
	if fl&fWM != 0 {
		k.wm = base + d.Varint()
	}
	if fl&fSessEnd != 0 {
		k.sessEnd = base + d.Varint()
	}
	k.pendLate, k.pendRej = d.Uvarint(), d.Uvarint()
	unit := ""
	if fl&fUnit != 0 {
		unit = d.String()
	}
	if fl&fMeta != 0 {
		n := d.Uvarint()
		k.meta = make(map[string]string, min(n, 64))
		for i := uint64(0); i < n && d.Err == nil; i++ {
			m := d.String()
			k.meta[m] = d.String()
		}
	}
	for _, list := range [2]*[]*bucket{&k.open, &k.emitted} {
		n := d.Uvarint()
		for i := uint64(0); i < n && d.Err == nil; i++ {
			*list = append(*list, decodeBucketState(d, base, unit, w.span()))
		}
	}
	if err := d.Done(); err != nil {
		return fmt.Errorf("window: state key %q: %w", key, err)
	}
	k.refs = 1
	kd.pinned = append(kd.pinned, k)
	kd.keys[id] = k
	kd.order = append(kd.order, k)
	kd.nkeys.Add(1)
	kd.openWindows.Add(int64(len(k.open)))
	return nil
}

// Unpin releases the reference every restored key holds until then: the
// routes that lead to a key come back only with their next reading, and
// an idle key Sweep forgot before would lose its watermark (a late
// reading would reopen a window already emitted). The engine unpins once
// its key TTL has passed since the last tick before the stop.
func (kd *Keyed) Unpin() {
	for _, k := range kd.pinned {
		k.Release()
	}
	kd.pinned = nil
}

func decodeBucketState(d *state.Dec, base int64, unit string, span int64) *bucket {
	fl := d.Byte()
	bk := &bucket{emitted: fl&bEmitted != 0, dirty: fl&bDirty != 0, capped: fl&bCapped != 0}
	bk.start = base + d.Varint()
	bk.end = bk.start + span + d.Varint()
	bk.count = d.Uvarint()
	if fl&bOne != 0 {
		v := d.Num()
		bk.sum, bk.min, bk.max, bk.mean, bk.first, bk.last = v, v, v, v, v, v
	} else {
		for _, p := range [...]*float64{&bk.sum, &bk.min, &bk.max, &bk.mean, &bk.m2, &bk.first, &bk.last} {
			*p = d.Num()
		}
	}
	bk.firstT = bk.start + d.Varint()
	bk.lastT = bk.firstT + d.Varint()
	bk.quality = ingest.Quality(d.Uvarint())
	bk.unit = unit
	if fl&bUnit != 0 {
		bk.unit = d.String()
	}
	if fl&bCounts != 0 {
		bk.late, bk.rejected, bk.revision = d.Uvarint(), d.Uvarint(), uint32(d.Uvarint())
	}
	if fl&bSketch != 0 {
		sk, err := sketch.Decode(d.Bytes())
		if err != nil && d.Err == nil {
			d.Err, d.B = state.ErrCorrupt, nil
		}
		bk.sketch = sk
	}
	if fl&bSamples != 0 {
		n := d.Uvarint()
		if n > uint64(len(d.B)) {
			d.Err, d.B = state.ErrCorrupt, nil
		}
		for i := uint64(0); i < n && d.Err == nil; i++ {
			bk.samples = append(bk.samples, sample{bk.start + d.Varint(), d.Num()})
		}
	}
	return bk
}

func splitName(key []byte) []string {
	if len(key) < len(StatePrefix) || string(key[:len(StatePrefix)]) != StatePrefix {
		return nil
	}
	var parts []string
	rest := key[len(StatePrefix):]
	for range 3 {
		i := slices.Index(rest, 0)
		if i < 0 {
			return nil
		}
		parts = append(parts, string(rest[:i]))
		rest = rest[i+1:]
	}
	return append(parts, string(rest))
}

// Resume brings the watermarks of restored keys to where the idle advance
// had moved them by the engine's last tick before the checkpoint
// (lastTick, wall clock ns), which Changes does not record per key.
// Nothing is emitted: a window the advance closed had marked its key.
func (kd *Keyed) Resume(lastTick int64) {
	for _, k := range kd.order {
		w := k.w
		switch {
		case w.processing:
			k.wm = max(k.wm, lastTick-w.lateness)
		case !k.active && k.hasMax && lastTick > k.anchorWall && lastTick > k.anchorTick:
			k.wm = max(k.wm, k.anchorT+(lastTick-k.anchorWall)-w.lateness)
		}
	}
}
