package sketch

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
)

// Encoding, version 1. It is stored in outbox records (ingest.Summary.Sketch)
// and decoded later by the roll-up, possibly by another build: it must stay
// readable. A change of layout takes a new version byte; Decode keeps
// reading the old ones. Do not use version 2: 0x02 is the first byte of the
// sketches-go encoding that summaries carried before version 1 (its index
// mapping flag); Decode rejects those (unknown version), so the roll-up
// drops the quantiles of merges that involve them.
//
//	version  1 byte    1
//	alpha    8 bytes   the relative accuracy, IEEE 754 binary64, little endian
//	zero     uvarint   count of values counted as zero
//	positive store     values > 0
//	negative store     values < 0, by magnitude
//
// and each store:
//
//	nbins    uvarint   bins from the lowest to the highest non-empty one
//	                   (at most MaxBins); 0 for an empty store, which ends here
//	lo       varint    index of the lowest bin (zig-zag, as binary.AppendVarint)
//	counts   nbins uvarints, bin lo first; the first and the last are > 0
//
// Bin i covers magnitudes (gamma^(i-1), gamma^i] with gamma = (1+α)/(1-α).
// Every varint is in its shortest form and nothing follows the negative
// store, so the encoding is canonical: a sketch has exactly one encoding,
// and Decode accepts exactly the encodings Encode produces. An empty sketch
// takes 12 bytes; a store takes about one byte per bin (two for bins of
// 128 or more values).

// Version is the encoding version Encode writes.
const Version = 1

// Encode appends the encoding of s to b and returns the extended slice.
func (s *Sketch) Encode(b []byte) []byte {
	b = append(b, Version)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(s.alpha))
	b = binary.AppendUvarint(b, s.zero)
	b = s.pos.encode(b)
	return s.neg.encode(b)
}

func (s *store) encode(b []byte) []byte {
	if s.count == 0 {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(s.hi-s.lo)+1)
	b = binary.AppendVarint(b, int64(s.lo))
	for _, c := range s.bins[s.lo-s.offset : s.hi-s.offset+1] {
		b = binary.AppendUvarint(b, c)
	}
	return b
}

// Decode decodes an encoding made by Encode. Any other input gives an
// error wrapping ErrCorrupt; Decode does not panic and allocates at most
// the bins of the stores it decodes.
func Decode(b []byte) (*Sketch, error) {
	s := new(Sketch)
	if err := s.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return s, nil
}

// UnmarshalBinary replaces s by the sketch encoded in b (as Decode does),
// reusing the memory of s. On error s is empty, its accuracy unchanged.
func (s *Sketch) UnmarshalBinary(b []byte) error {
	clear(s.pos.bins)
	clear(s.neg.bins)
	s.n, s.zero, s.pos.count, s.neg.count = 0, 0, 0, 0
	if len(b) < 9 {
		return fmt.Errorf("%w: %d bytes", ErrCorrupt, len(b))
	}
	if b[0] != Version {
		return fmt.Errorf("%w: unknown version %d", ErrCorrupt, b[0])
	}
	t := Sketch{pos: store{bins: s.pos.bins}, neg: store{bins: s.neg.bins}}
	if err := t.init(math.Float64frombits(binary.LittleEndian.Uint64(b[1:9]))); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	d := decoder{b: b[9:]}
	t.zero = d.uvarint()
	t.n = t.zero
	d.store(&t, &t.pos)
	d.store(&t, &t.neg)
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		// Bins the failed decode wrote into are cleared again.
		clear(s.pos.bins)
		clear(s.neg.bins)
		return d.err
	}
	*s = t
	return nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
	}
}

// uvarint reads a uvarint in its shortest form.
func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n > 1 && d.b[n-1] == 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// varint reads a zig-zag varint in its shortest form.
func (d *decoder) varint() int64 {
	u := d.uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

func (d *decoder) store(s *Sketch, st *store) {
	nbins := d.uvarint()
	if d.err != nil || nbins == 0 {
		return
	}
	if nbins > MaxBins || nbins > uint64(len(d.b)) {
		d.fail("%d bins", nbins)
		return
	}
	lo := d.varint()
	if d.err != nil {
		return
	}
	// lo is checked before hi is computed: lo+nbins could overflow.
	if lo < int64(s.minIndex) || lo > int64(s.maxIndex)-int64(nbins-1) {
		d.fail("%d bins from %d out of range", nbins, lo)
		return
	}
	hi := lo + int64(nbins) - 1
	bins := st.bins // all zero
	if uint64(len(bins)) < nbins {
		bins = make([]uint64, nbins)
		st.bins = bins
	}
	for j := range bins[:nbins] {
		c := d.uvarint()
		if d.err != nil {
			return
		}
		var carry uint64
		s.n, carry = bits.Add64(s.n, c, 0)
		if carry != 0 {
			d.fail("total count overflows")
			return
		}
		bins[j] = c
		st.count += c
	}
	if bins[0] == 0 || bins[nbins-1] == 0 {
		d.fail("empty first or last bin")
		return
	}
	st.offset, st.lo, st.hi = int32(lo), int32(lo), int32(hi)
}
