// Package state holds what the checkpoints of the rules engine share: the
// batch of changes of one checkpoint, built in one reused buffer, and the
// compact encoding of the values (varints, times as deltas, a version byte
// first so that a later layout can refuse an older one).
package state

import (
	"encoding/binary"
	"errors"
	"math"
)

// ErrCorrupt is returned (wrapped) for a value that cannot be decoded.
var ErrCorrupt = errors.New("truncated or corrupt state")

// Batch collects the key/value changes of one checkpoint in one buffer
// that is reused from checkpoint to checkpoint: append the key to Buf
// after Start, call Mid, append the value, call End (or Delete after Mid
// for a delete). The slices Each hands out are valid until the next Reset.
type Batch struct {
	Buf  []byte
	ents []ent
	cur  ent
}

type ent struct {
	k0, k1, v1 int
	del        bool
}

// Reset empties b, keeping its memory.
func (b *Batch) Reset() { b.Buf, b.ents = b.Buf[:0], b.ents[:0] }

// Len returns the number of changes.
func (b *Batch) Len() int { return len(b.ents) }

// Start begins a change: its key follows in Buf.
func (b *Batch) Start() { b.cur = ent{k0: len(b.Buf)} }

// Mid ends the key: its value follows in Buf.
func (b *Batch) Mid() { b.cur.k1 = len(b.Buf) }

// End ends the value.
func (b *Batch) End() {
	b.cur.v1 = len(b.Buf)
	b.ents = append(b.ents, b.cur)
}

// Delete ends a change without a value: the key is deleted.
func (b *Batch) Delete() {
	b.cur.v1, b.cur.del = b.cur.k1, true
	b.ents = append(b.ents, b.cur)
}

// Each calls fn for every change in order; value is nil for a delete.
func (b *Batch) Each(fn func(key, value []byte)) {
	for _, e := range b.ents {
		k := b.Buf[e.k0:e.k1:e.k1]
		if e.del {
			fn(k, nil)
			continue
		}
		fn(k, b.Buf[e.k1:e.v1:e.v1])
	}
}

// AppendString appends a length-prefixed string.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendFloat appends the 8 bytes of v.
func AppendFloat(b []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
}

// AppendBool appends v as one byte.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// Dec reads a value; the first error sticks and every later read returns
// zero values.
type Dec struct {
	B   []byte
	Err error
}

func (d *Dec) fail() { d.Err, d.B = ErrCorrupt, nil }

// Uvarint reads an unsigned varint.
func (d *Dec) Uvarint() uint64 {
	v, n := binary.Uvarint(d.B)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Varint reads a signed varint.
func (d *Dec) Varint() int64 {
	v, n := binary.Varint(d.B)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Byte reads one byte.
func (d *Dec) Byte() byte {
	if len(d.B) == 0 {
		d.fail()
		return 0
	}
	v := d.B[0]
	d.B = d.B[1:]
	return v
}

// Bool reads a byte written by AppendBool.
func (d *Dec) Bool() bool { return d.Byte() == 1 }

// Bytes reads a length-prefixed byte string (a sub-slice of d.B).
func (d *Dec) Bytes() []byte {
	n := d.Uvarint()
	if n > uint64(len(d.B)) {
		d.fail()
		return nil
	}
	out := d.B[:n:n]
	d.B = d.B[n:]
	return out
}

// String reads a length-prefixed string.
func (d *Dec) String() string { return string(d.Bytes()) }

// Float reads 8 bytes written by AppendFloat.
func (d *Dec) Float() float64 {
	if len(d.B) < 8 {
		d.fail()
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.B))
	d.B = d.B[8:]
	return v
}

// Done returns the first error, or ErrCorrupt when bytes are left over.
func (d *Dec) Done() error {
	if d.Err == nil && len(d.B) != 0 {
		return ErrCorrupt
	}
	return d.Err
}

var pow10 = [...]float64{1, 10, 100, 1e3, 1e4, 1e5, 1e6}

// AppendNum appends v compactly: a value that is a decimal of up to six
// places (what a JSON payload usually carries: 21.37) as a varint of its
// digits, any other as a marker and its 8 bytes.
func AppendNum(b []byte, v float64) []byte {
	// A decimal of d <= 6 places is one of 6 places too: one test rules
	// out the others.
	if n := math.Round(v * 1e6); !(math.Abs(n) < 1<<50 && n/1e6 == v) {
		return AppendFloat(append(b, 7), v)
	}
	for d, p := range pow10 {
		n := math.Round(v * p)
		if math.Abs(n) < 1<<50 && n/p == v && !(v == 0 && math.Signbit(v)) {
			zz := uint64(int64(n)<<1) ^ uint64(int64(n)>>63)
			return binary.AppendUvarint(b, zz<<3|uint64(d))
		}
	}
	return AppendFloat(append(b, 7), v)
}

// Num reads a value written by AppendNum.
func (d *Dec) Num() float64 {
	h := d.Uvarint()
	if h&7 == 7 {
		if h != 7 {
			d.fail()
			return 0
		}
		return d.Float()
	}
	zz := h >> 3
	n := int64(zz>>1) ^ -int64(zz&1)
	if int(h&7) >= len(pow10) {
		d.fail()
		return 0
	}
	return float64(n) / pow10[h&7]
}
