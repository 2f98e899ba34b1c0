package window

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/rules/internal/sketch"
)

// snapshotVersion is the first byte of a snapshot; a change of layout gets
// a new one, and Restore refuses versions it does not know rather than
// misread them.
const snapshotVersion = 1

// ErrSnapshot is returned (wrapped) by Restore for a snapshot it cannot use.
var ErrSnapshot = errors.New("window: snapshot")

// Snapshot encodes the state of every key: watermarks, idle-advance
// anchors, pending late and rejected counts, open and retained buckets
// with their sketches and samples. Restore on a new Keyed continues from
// it as if nothing had stopped. The free list and the reused buffers are
// not state and are not encoded.
func (kd *Keyed) Snapshot() ([]byte, error) {
	b := []byte{snapshotVersion}
	b = binary.AppendUvarint(b, uint64(len(kd.order)))
	for _, k := range kd.order {
		b = appendString(b, k.w.cfg.Name)
		b = appendString(b, k.sensor)
		b = appendString(b, k.group)
		b = appendString(b, k.metric)
		keys := make([]string, 0, len(k.meta))
		for m := range k.meta {
			keys = append(keys, m)
		}
		slices.Sort(keys)
		b = binary.AppendUvarint(b, uint64(len(keys)))
		for _, m := range keys {
			b = appendString(b, m)
			b = appendString(b, k.meta[m])
		}
		b = appendBool(b, k.hasMax)
		for _, v := range []int64{k.maxT, k.wm, k.maxArrival, k.anchorT, k.anchorWall, k.sessEnd} {
			b = binary.AppendVarint(b, v)
		}
		b = appendBool(b, k.active)
		b = binary.AppendUvarint(b, k.pendLate)
		b = binary.AppendUvarint(b, k.pendRej)
		for _, list := range [][]*bucket{k.open, k.emitted} {
			b = binary.AppendUvarint(b, uint64(len(list)))
			for _, bk := range list {
				b = appendBucket(b, bk)
			}
		}
	}
	return b, nil
}

// Restore loads a Snapshot into kd, which must be empty, for rules, the
// window rules of the config that took the snapshot (matched by name; a
// key of a rule not among them is an error). The keys come back without
// references: the routes take theirs again through Key.
func (kd *Keyed) Restore(data []byte, rules []*Rule) error {
	if len(kd.order) != 0 {
		return fmt.Errorf("%w: restore into windows that have keys", ErrSnapshot)
	}
	if len(data) == 0 || data[0] != snapshotVersion {
		return fmt.Errorf("%w: unknown version", ErrSnapshot)
	}
	byName := map[string]*Rule{}
	for _, w := range rules {
		byName[w.cfg.Name] = w
	}
	d := &snapDecoder{b: data[1:]}
	n := d.uvarint()
	var keys []*Key
	for i := uint64(0); i < n && d.err == nil; i++ {
		name := d.string()
		w := byName[name]
		if d.err != nil {
			break
		}
		if w == nil {
			return fmt.Errorf("%w: no window rule %q", ErrSnapshot, name)
		}
		k := &Key{w: w, sensor: d.string(), group: d.string(), metric: d.string()}
		if nm := d.uvarint(); nm > 0 && d.err == nil {
			k.meta = make(map[string]string, min(nm, 64))
			for j := uint64(0); j < nm && d.err == nil; j++ {
				m := d.string()
				k.meta[m] = d.string()
			}
		}
		k.hasMax = d.bool()
		for _, p := range []*int64{&k.maxT, &k.wm, &k.maxArrival, &k.anchorT, &k.anchorWall, &k.sessEnd} {
			*p = d.varint()
		}
		k.active = d.bool()
		k.pendLate, k.pendRej = d.uvarint(), d.uvarint()
		for _, list := range []*[]*bucket{&k.open, &k.emitted} {
			nb := d.uvarint()
			for j := uint64(0); j < nb && d.err == nil; j++ {
				*list = append(*list, d.bucket())
			}
		}
		k.id = keyID{win: w.idx, sensor: k.sensor, group: k.group, metric: k.metric}
		keys = append(keys, k)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errors.New("trailing bytes")
	}
	if d.err != nil {
		return fmt.Errorf("%w: %w", ErrSnapshot, d.err)
	}
	for _, k := range keys {
		kd.keys[k.id] = k
		kd.order = append(kd.order, k)
		kd.nkeys.Add(1)
		kd.openWindows.Add(int64(len(k.open)))
	}
	return nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendFloat(b []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
}

func appendBucket(b []byte, bk *bucket) []byte {
	b = binary.AppendVarint(b, bk.start)
	b = binary.AppendVarint(b, bk.end)
	b = binary.AppendUvarint(b, bk.count)
	for _, v := range []float64{bk.sum, bk.min, bk.max, bk.mean, bk.m2, bk.first, bk.last} {
		b = appendFloat(b, v)
	}
	b = binary.AppendVarint(b, bk.firstT)
	b = binary.AppendVarint(b, bk.lastT)
	b = binary.AppendUvarint(b, uint64(bk.quality))
	b = appendString(b, bk.unit)
	b = binary.AppendUvarint(b, bk.late)
	b = binary.AppendUvarint(b, bk.rejected)
	b = binary.AppendUvarint(b, uint64(bk.revision))
	b = appendBool(b, bk.emitted)
	b = appendBool(b, bk.dirty)
	b = appendBool(b, bk.capped)
	if bk.sketch != nil {
		b = appendBool(b, true)
		sk := bk.sketch.Encode(nil)
		b = binary.AppendUvarint(b, uint64(len(sk)))
		b = append(b, sk...)
	} else {
		b = appendBool(b, false)
	}
	b = binary.AppendUvarint(b, uint64(len(bk.samples)))
	for _, s := range bk.samples {
		b = binary.AppendVarint(b, s.t)
		b = appendFloat(b, s.v)
	}
	return b
}

// snapDecoder reads a snapshot; the first error sticks and every later
// read returns zero values.
type snapDecoder struct {
	b   []byte
	err error
}

func (d *snapDecoder) fail() { d.err, d.b = errors.New("truncated or corrupt"), nil }

func (d *snapDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *snapDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *snapDecoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *snapDecoder) string() string { return string(d.bytes()) }

func (d *snapDecoder) bool() bool {
	if len(d.b) == 0 {
		d.fail()
		return false
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v == 1
}

func (d *snapDecoder) float() float64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

func (d *snapDecoder) bucket() *bucket {
	bk := &bucket{start: d.varint(), end: d.varint(), count: d.uvarint()}
	for _, p := range []*float64{&bk.sum, &bk.min, &bk.max, &bk.mean, &bk.m2, &bk.first, &bk.last} {
		*p = d.float()
	}
	bk.firstT, bk.lastT = d.varint(), d.varint()
	bk.quality = ingest.Quality(d.uvarint())
	bk.unit = d.string()
	bk.late, bk.rejected = d.uvarint(), d.uvarint()
	bk.revision = uint32(d.uvarint())
	bk.emitted, bk.dirty, bk.capped = d.bool(), d.bool(), d.bool()
	if d.bool() {
		sk, err := sketch.Decode(d.bytes())
		if err != nil && d.err == nil {
			d.err, d.b = fmt.Errorf("sketch: %w", err), nil
		}
		bk.sketch = sk
	}
	ns := d.uvarint()
	if ns > uint64(len(d.b)) {
		d.fail()
		return bk
	}
	for i := uint64(0); i < ns && d.err == nil; i++ {
		bk.samples = append(bk.samples, sample{d.varint(), d.float()})
	}
	return bk
}
