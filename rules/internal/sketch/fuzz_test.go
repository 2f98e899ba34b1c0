package sketch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"testing"
)

// FuzzDecode: Decode never panics; what it accepts re-encodes to the same
// bytes (the encoding is canonical) and is a working sketch.
func FuzzDecode(f *testing.F) {
	s, _ := New(0.01)
	f.Add(s.Encode(nil))
	for _, v := range []float64{1, 2, 3, -5, 0, 1e10, 1e-10} {
		_ = s.Add(v)
	}
	f.Add(s.Encode(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(b)
		// UnmarshalBinary into a used sketch agrees with Decode.
		u, _ := New(0.02)
		for i := range 300 {
			_ = u.Add(float64(i*i) - 1000)
		}
		uerr := u.UnmarshalBinary(b)
		if (err == nil) != (uerr == nil) {
			t.Fatalf("Decode: %v, UnmarshalBinary: %v", err, uerr)
		}
		if uerr != nil {
			if !u.IsEmpty() || u.RelativeAccuracy() != 0.02 {
				t.Fatalf("after a failed UnmarshalBinary: count %d, α %v", u.Count(), u.RelativeAccuracy())
			}
			_ = u.Add(5)
			if v, err := u.Quantile(1); err != nil || !within(v, 5, 0.02) {
				t.Fatalf("after a failed UnmarshalBinary: %v, %v", v, err)
			}
		} else if got := u.Encode(nil); !bytes.Equal(got, b) {
			t.Fatalf("UnmarshalBinary: re-encoding differs\n got %x\n  in %x", got, b)
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if got := s.Encode(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs\n got %x\n  in %x", got, b)
		}
		var prev float64
		for i, q := range []float64{0, 0.25, 0.5, 0.9, 1} {
			v, err := s.Quantile(q)
			if s.IsEmpty() {
				if !errors.Is(err, ErrEmpty) {
					t.Fatalf("empty: %v", err)
				}
				continue
			}
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || i > 0 && v < prev {
				t.Fatalf("q%v = %v, %v (previous %v)", q, v, err, prev)
			}
			prev = v
		}
		c := s.Copy()
		if err := c.Merge(s); err != nil && !errors.Is(err, ErrOverflow) {
			t.Fatal(err)
		}
		if err := c.Add(1); err != nil && !errors.Is(err, ErrOverflow) {
			t.Fatal(err)
		}
	})
}

// FuzzAdd: for arbitrary values (8 bytes each), every quantile is within α
// of the exact value of its rank, and merging halves gives the whole.
func FuzzAdd(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f}, uint16(100))
	f.Add(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil,
		math.Float64bits(-2.5)), math.Float64bits(1e300)), uint16(1000))
	f.Fuzz(func(t *testing.T, b []byte, a uint16) {
		alpha := float64(a%999+1) / 1000 // 0.001 .. 0.999
		whole, _ := New(alpha)
		half, _ := New(alpha)
		rest, _ := New(alpha)
		var vals []float64
		for i := 0; i+8 <= len(b); i += 8 {
			v := math.Float64frombits(binary.LittleEndian.Uint64(b[i:]))
			if math.IsNaN(v) || math.IsInf(v, 0) {
				if err := whole.Add(v); !errors.Is(err, ErrValue) {
					t.Fatalf("Add(%v): %v", v, err)
				}
				continue
			}
			if math.Abs(v) < whole.MinIndexable() {
				v = 0 // documented: counted as zero
			}
			vals = append(vals, v)
			_ = whole.Add(v)
			if len(vals)%2 == 0 {
				_ = half.Add(v)
			} else {
				_ = rest.Add(v)
			}
		}
		if err := half.Merge(rest); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(half.Encode(nil), whole.Encode(nil)) {
			t.Fatal("merge of halves differs from the whole")
		}
		if len(vals) == 0 {
			return
		}
		slices.Sort(vals)
		for _, q := range testQs {
			checkQuantile(t, whole, vals, q)
		}
	})
}
