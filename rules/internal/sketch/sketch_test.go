package sketch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// dist is a random data set generator.
type dist struct {
	name string
	gen  func(r *rand.Rand) float64
}

var dists = []dist{
	{"uniform", func(r *rand.Rand) float64 { return r.Float64() * 100 }},
	{"uniform-signed", func(r *rand.Rand) float64 { return r.Float64()*100 - 50 }},
	{"lognormal", func(r *rand.Rand) float64 { return math.Exp(r.NormFloat64() * 2) }},
	{"normal-with-zeros", func(r *rand.Rand) float64 {
		if r.IntN(5) == 0 {
			return 0
		}
		return r.NormFloat64() * 10
	}},
	{"negative-lognormal", func(r *rand.Rand) float64 { return -math.Exp(r.NormFloat64()) }},
	{"constant", func(*rand.Rand) float64 { return 21.5 }},
	{"constant-negative", func(*rand.Rand) float64 { return -3.25 }},
	{"small-integers", func(r *rand.Rand) float64 { return float64(r.IntN(7) - 2) }},
	{"wide-range", func(r *rand.Rand) float64 {
		v := math.Pow(10, r.Float64()*120-60)
		if r.IntN(3) == 0 {
			v = -v
		}
		return v
	}},
	{"pareto", func(r *rand.Rand) float64 { return math.Pow(1-r.Float64(), -1/1.2) }},
}

// refIndex returns the position in sorted of the value Quantile(q) must
// approximate: the sketches-go convention, computed from the sorted data.
func refIndex(t *testing.T, sorted []float64, minValue, q float64) int {
	t.Helper()
	n := len(sorted)
	var neg, zero int
	for _, v := range sorted {
		switch {
		case v <= -minValue:
			neg++
		case v < minValue:
			zero++
		}
	}
	r := float64(q * float64(n-1))
	var k int
	switch {
	case r < float64(neg):
		m := max(float64(neg)-1-r, 0)
		k = neg - 1 - int(math.Floor(m)) // by magnitude, from the smallest
	case r < float64(neg+zero):
		k = neg // any zero
	default:
		k = neg + zero + int(math.Floor(r-float64(neg+zero)))
	}
	if f, c := int(math.Floor(r)), int(math.Ceil(r)); k != f && k != c && !(k == neg && r >= float64(neg-1)) {
		t.Fatalf("reference rank %d for r=%v (neg %d zero %d)", k, r, neg, zero)
	}
	return k
}

func within(got, want, alpha float64) bool {
	if want == 0 {
		return got == 0
	}
	return math.Abs(got-want) <= alpha*math.Abs(want)*(1+1e-9)
}

// collapsed reports whether st may have collapsed bins.
func collapsed(st *store) bool { return st.count > 0 && st.hi-st.lo+1 == MaxBins }

// checkQuantile checks Quantile(q) of s against the sorted data it holds:
// within α of the exact value of the rank, or, when that value's bin was
// collapsed, over-estimated in magnitude. It reports whether the exact
// guarantee applied.
func checkQuantile(t *testing.T, s *Sketch, sorted []float64, q float64) bool {
	t.Helper()
	alpha := s.RelativeAccuracy()
	got, err := s.Quantile(q)
	if err != nil {
		t.Fatal(err)
	}
	want := sorted[refIndex(t, sorted, s.MinIndexable(), q)]
	if math.Abs(want) < s.MinIndexable() {
		want = 0
	}
	st := &s.pos
	if want < 0 {
		st = &s.neg
	}
	if want != 0 && collapsed(st) && s.index(math.Abs(want)) <= st.lo {
		if math.Abs(got) < math.Abs(want)*(1-alpha) || got == 0 || math.Signbit(got) != math.Signbit(want) {
			t.Fatalf("α=%v q%v = %v, exact %v (collapsed)", alpha, q, got, want)
		}
		return false
	}
	if !within(got, want, alpha) {
		t.Fatalf("α=%v q%v = %v, exact %v (rel. error %.3g)", alpha, q, got, want, math.Abs(got-want)/math.Abs(want))
	}
	return true
}

var testQs = []float64{0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1}

// TestQuantileAccuracy compares every quantile with the exact value of the
// same rank on random data sets of several distributions and sizes.
func TestQuantileAccuracy(t *testing.T) {
	for _, alpha := range []float64{0.001, 0.01, 0.02, 0.1} {
		for _, d := range dists {
			for _, n := range []int{1, 2, 3, 10, 101, 1000, 20000} {
				t.Run(fmt.Sprintf("a=%v/%s/n=%d", alpha, d.name, n), func(t *testing.T) {
					r := rand.New(rand.NewPCG(uint64(n), math.Float64bits(alpha)))
					s, err := New(alpha)
					if err != nil {
						t.Fatal(err)
					}
					vals := make([]float64, n)
					for i := range vals {
						vals[i] = d.gen(r)
						if err := s.Add(vals[i]); err != nil {
							t.Fatal(err)
						}
					}
					if s.Count() != uint64(n) {
						t.Fatalf("count %d, want %d", s.Count(), n)
					}
					slices.Sort(vals)
					// No store collapses unless its magnitudes span more
					// than gamma^(MaxBins-1).
					gamma := (1 + alpha) / (1 - alpha)
					for _, st := range []struct {
						st      *store
						lo, hi  float64
						present bool
					}{{&s.pos, 0, 0, false}, {&s.neg, 0, 0, false}} {
						for _, v := range vals {
							a := math.Abs(v)
							if a < s.MinIndexable() || (st.st == &s.pos) != (v > 0) {
								continue
							}
							if !st.present {
								st.lo, st.hi, st.present = a, a, true
							}
							st.lo, st.hi = min(st.lo, a), max(st.hi, a)
						}
						if st.present && math.Log(st.hi/st.lo)/math.Log(gamma) < MaxBins-2 && collapsed(st.st) {
							t.Fatalf("store of range [%v, %v] collapsed", st.lo, st.hi)
						}
					}
					qs := append(slices.Clone(testQs), r.Float64(), r.Float64(), r.Float64())
					for _, q := range qs {
						if !checkQuantile(t, s, vals, q) && alpha >= 0.01 && d.name != "wide-range" {
							t.Fatalf("q%v: collapsed bins on a narrow range", q)
						}
					}
				})
			}
		}
	}
}

// TestExtremeValues checks the ends of the float64 range.
func TestExtremeValues(t *testing.T) {
	for _, alpha := range []float64{1e-6, 0.01, 0.5, 0.99} {
		s, err := New(alpha)
		if err != nil {
			t.Fatal(err)
		}
		m := s.MinIndexable()
		for _, v := range []float64{math.MaxFloat64, -math.MaxFloat64, m, -m, 3 * m, -3 * m, 1, -1, 1e300, 1e-300} {
			s.Clear()
			if err := s.Add(v); err != nil {
				t.Fatal(err)
			}
			for _, q := range []float64{0, 0.5, 1} {
				got, _ := s.Quantile(q)
				if !within(got, v, alpha) || math.IsInf(got, 0) {
					t.Fatalf("α=%v: v=%v: q%v = %v", alpha, v, q, got)
				}
			}
		}
		// Every bin near the top (and the bottom) of the float64 range.
		for _, a := range []float64{1e-6, 0.001, 0.01, 0.029, 0.05, 0.1, 0.3, 0.5, 0.9} {
			s, _ := New(a)
			for _, base := range []float64{math.MaxFloat64, s.MinIndexable() * 1e4} {
				v := base
				for range 600 { // about 300 bins
					if v /= 1 + a/2; v < s.MinIndexable() {
						break
					}
					for _, sv := range []float64{v, -v} {
						s.Clear()
						_ = s.Add(sv)
						if got, _ := s.Quantile(0.5); !within(got, sv, a) || math.IsInf(got, 0) {
							t.Fatalf("α=%v: v=%v: q0.5 = %v", a, sv, got)
						}
					}
				}
			}
		}
		// Subnormal magnitudes are counted as zero.
		s.Clear()
		for _, v := range []float64{5e-324, -1e-310, 0, math.Copysign(0, -1)} {
			if err := s.Add(v); err != nil {
				t.Fatal(err)
			}
		}
		if got, _ := s.Quantile(0.5); got != 0 || s.zero != 4 {
			t.Fatalf("α=%v: tiny values: q0.5 = %v, zero count %d", alpha, got, s.zero)
		}
	}
}

func TestErrors(t *testing.T) {
	for _, a := range []float64{0, -0.1, 1, 2, math.NaN(), math.Inf(1)} {
		if _, err := New(a); !errors.Is(err, ErrAccuracy) {
			t.Errorf("New(%v): %v", a, err)
		}
	}
	s, _ := New(0.01)
	if _, err := s.Quantile(0.5); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty: %v", err)
	}
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if err := s.Add(v); !errors.Is(err, ErrValue) {
			t.Errorf("Add(%v): %v", v, err)
		}
	}
	if s.Count() != 0 {
		t.Fatalf("count %d after rejected values", s.Count())
	}
	_ = s.Add(1)
	for _, q := range []float64{-0.1, 1.1, math.NaN()} {
		if _, err := s.Quantile(q); !errors.Is(err, ErrQuantile) {
			t.Errorf("Quantile(%v): %v", q, err)
		}
	}
	o, _ := New(0.02)
	_ = o.Add(2)
	before := s.Encode(nil)
	if err := s.Merge(o); !errors.Is(err, ErrMismatch) {
		t.Errorf("merge of different α: %v", err)
	}
	if !bytes.Equal(s.Encode(nil), before) {
		t.Error("failed merge changed the sketch")
	}
	big, _ := Decode(encodeCounts(0.01, math.MaxUint64, nil))
	if err := s.Merge(big); !errors.Is(err, ErrOverflow) {
		t.Errorf("overflowing merge: %v", err)
	}
	if !bytes.Equal(s.Encode(nil), before) {
		t.Error("failed merge changed the sketch")
	}
	if err := big.Add(1); !errors.Is(err, ErrOverflow) {
		t.Errorf("overflowing add: %v", err)
	}
}

// encodeCounts builds an encoding by hand: zero count and positive bins
// from index lo.
func encodeCounts(alpha float64, zero uint64, pos []uint64) []byte {
	s, _ := New(alpha)
	s.zero, s.n = zero, zero
	if len(pos) > 0 {
		s.pos = store{bins: pos, offset: 5, lo: 5, hi: 5 + int32(len(pos)) - 1}
		for _, c := range pos {
			s.pos.count += c
			s.n += c
		}
	}
	return s.Encode(nil)
}

// TestMergeIsUnion checks that merging the sketches of two parts gives the
// sketch of the whole, bin for bin (compared through the canonical
// encoding), also when bins collapse.
func TestMergeIsUnion(t *testing.T) {
	for _, d := range dists {
		for _, n := range []int{0, 1, 50, 5000} {
			t.Run(fmt.Sprintf("%s/n=%d", d.name, n), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(n), 7))
				alpha := 0.01
				if d.name == "wide-range" {
					alpha = 0.05 // 10^±60 with 2048 bins: collapses
				}
				whole, _ := New(alpha)
				a, _ := New(alpha)
				b, _ := New(alpha)
				for range n {
					v := d.gen(r)
					_ = whole.Add(v)
					if r.IntN(3) == 0 {
						_ = a.Add(v)
					} else {
						_ = b.Add(v)
					}
				}
				ab := a.Copy()
				if err := ab.Merge(b); err != nil {
					t.Fatal(err)
				}
				ba := b.Copy()
				if err := ba.Merge(a); err != nil {
					t.Fatal(err)
				}
				want := whole.Encode(nil)
				for name, m := range map[string]*Sketch{"a+b": ab, "b+a": ba} {
					if got := m.Encode(nil); !bytes.Equal(got, want) {
						t.Fatalf("%s: merged sketch differs from the sketch of the union\n got %x\nwant %x", name, got, want)
					}
				}
			})
		}
	}
}

// TestBinsBound feeds a huge dynamic range and checks that no store holds
// more than MaxBins bins, that the collapse does not depend on the order of
// the data, and that the upper quantiles keep their accuracy.
func TestBinsBound(t *testing.T) {
	const alpha = 0.01
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]float64, 100000)
	for i := range vals {
		vals[i] = math.Pow(10, r.Float64()*600-300) // 1e-300 .. 1e300
		if i%2 == 1 {
			vals[i] = -vals[i]
		}
	}
	fwd, _ := New(alpha)
	for _, v := range vals {
		_ = fwd.Add(v)
	}
	for name, st := range map[string]*store{"pos": &fwd.pos, "neg": &fwd.neg} {
		if len(st.bins) > MaxBins || int(st.hi-st.lo) >= MaxBins {
			t.Fatalf("%s: %d bins, span [%d, %d]", name, len(st.bins), st.lo, st.hi)
		}
		if int(st.hi-st.lo)+1 != MaxBins {
			t.Fatalf("%s: span %d, want a collapsed store of %d bins", name, st.hi-st.lo+1, MaxBins)
		}
	}
	sorted := slices.Sorted(slices.Values(vals))
	rev, _ := New(alpha)
	for _, v := range slices.Backward(sorted) {
		_ = rev.Add(v)
	}
	if !bytes.Equal(fwd.Encode(nil), rev.Encode(nil)) {
		t.Fatal("collapsed sketch depends on the order of the data")
	}
	// Positive values within gamma^2048 (about 6e17) of the largest keep
	// the guarantee: with a uniform exponent over 600 decades the upper
	// 17.7/600 of the positives, i.e. q >= 0.5 + 0.5*(1-17.7/600).
	for _, q := range []float64{0.99, 0.995, 0.999, 1} {
		got, _ := fwd.Quantile(q)
		want := sorted[refIndex(t, sorted, fwd.MinIndexable(), q)]
		if !within(got, want, alpha) {
			t.Fatalf("q%v = %v, exact %v", q, got, want)
		}
	}
	// And so do the largest magnitudes of the negative values.
	for _, q := range []float64{0, 0.001, 0.005} {
		got, _ := fwd.Quantile(q)
		want := sorted[refIndex(t, sorted, fwd.MinIndexable(), q)]
		if !within(got, want, alpha) {
			t.Fatalf("q%v = %v, exact %v", q, got, want)
		}
	}
	// The collapsed values are over-estimated in magnitude, never lost.
	if fwd.Count() != uint64(len(vals)) {
		t.Fatalf("count %d", fwd.Count())
	}
	if got, _ := fwd.Quantile(0.6); got < sorted[int(0.6*float64(len(sorted)-1))] {
		t.Fatalf("collapsed q0.6 = %v under-estimated", got)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, d := range dists {
		for _, n := range []int{0, 1, 1000} {
			r := rand.New(rand.NewPCG(uint64(n), 3))
			s, _ := New(0.02)
			for range n {
				_ = s.Add(d.gen(r))
			}
			enc := s.Encode([]byte("prefix"))[len("prefix"):]
			got, err := Decode(enc)
			if err != nil {
				t.Fatalf("%s n=%d: %v", d.name, n, err)
			}
			if got.Count() != s.Count() || got.RelativeAccuracy() != s.RelativeAccuracy() {
				t.Fatalf("%s n=%d: count %d α %v", d.name, n, got.Count(), got.RelativeAccuracy())
			}
			if !bytes.Equal(got.Encode(nil), enc) {
				t.Fatalf("%s n=%d: re-encoding differs", d.name, n)
			}
			for _, q := range testQs {
				a, errA := s.Quantile(q)
				b, errB := got.Quantile(q)
				if !errors.Is(errA, errB) || a != b && !(math.IsNaN(a) && math.IsNaN(b)) {
					t.Fatalf("%s n=%d q%v: %v/%v, decoded %v/%v", d.name, n, q, a, errA, b, errB)
				}
			}
			// The decoded sketch keeps working: add and merge.
			_ = got.Add(1)
			if err := got.Merge(s); err != nil || got.Count() != 2*s.Count()+1 {
				t.Fatalf("%s n=%d: merge after decode: %v, count %d", d.name, n, err, got.Count())
			}
		}
	}
}

func TestEncodingLayout(t *testing.T) {
	s, _ := New(0.01)
	for _, v := range []float64{1, 1, 0, -1, 1.015} {
		_ = s.Add(v)
	}
	// 1 -> bin 0; 1.015 -> bin 1 (gamma = 1.0202); -1 -> negative bin 0.
	want := []byte{Version}
	want = append(want, 0x7b, 0x14, 0xae, 0x47, 0xe1, 0x7a, 0x84, 0x3f) // 0.01
	want = append(want, 1)                                              // zero
	want = append(want, 2, 0, 2, 1)                                     // positive: 2 bins from 0: 2, 1
	want = append(want, 1, 0, 1)                                        // negative: 1 bin at 0: 1
	if got := s.Encode(nil); !bytes.Equal(got, want) {
		t.Fatalf("encoding\n got % x\nwant % x", got, want)
	}
	e, _ := New(0.01)
	if got := e.Encode(nil); len(got) != 12 {
		t.Fatalf("empty sketch: %d bytes", len(got))
	}
}

func TestDecodeErrors(t *testing.T) {
	valid := encodeCounts(0.01, 1, []uint64{1, 0, 3})
	alpha := func(a float64) []byte {
		b := slices.Clone(valid)
		copy(b[1:9], []byte{byte(math.Float64bits(a)), byte(math.Float64bits(a) >> 8), byte(math.Float64bits(a) >> 16),
			byte(math.Float64bits(a) >> 24), byte(math.Float64bits(a) >> 32), byte(math.Float64bits(a) >> 40),
			byte(math.Float64bits(a) >> 48), byte(math.Float64bits(a) >> 56)})
		return b
	}
	head := valid[:9]
	cat := func(parts ...[]byte) []byte { return bytes.Join(append([][]byte{slices.Clone(head)}, parts...), nil) }
	if _, err := Decode(valid); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", valid[:5]},
		{"truncated", valid[:len(valid)-1]},
		{"trailing", append(slices.Clone(valid), 0)},
		{"version 0", append([]byte{0}, valid[1:]...)},
		{"version 2", append([]byte{2}, valid[1:]...)},
		// sketches-go: logarithmic mapping flag, gamma, index offset, ...
		{"sketches-go", binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64([]byte{0x02},
			math.Float64bits(1.01/0.99)), 0)},
		{"alpha 0", alpha(0)},
		{"alpha 1", alpha(1)},
		{"alpha NaN", alpha(math.NaN())},
		{"non-minimal uvarint", cat([]byte{0x81, 0x00}, []byte{0, 0})},
		{"first bin empty", cat([]byte{0, 2, 0, 0, 1}, []byte{0})},
		{"last bin empty", cat([]byte{0, 2, 0, 1, 0}, []byte{0})},
		{"too many bins", cat([]byte{0, 0x81, 0x10, 0}, bytes.Repeat([]byte{1}, 2049), []byte{0})},
		{"index out of range", cat([]byte{0, 1, 0xfe, 0xff, 0xff, 0xff, 0x0f, 1}, []byte{0})},
		{"index beyond the top", cat([]byte{0, 1}, binary.AppendVarint(nil, 36000), []byte{1, 0})},
		{"last index overflows int64", cat([]byte{0, 2}, binary.AppendVarint(nil, math.MaxInt64), []byte{1, 1, 0})},
		{"index below the bottom", cat([]byte{0, 1}, binary.AppendVarint(nil, -36000), []byte{1, 0})},
		{"count overflow", cat([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 0, 1}, []byte{0})},
		{"uvarint overflow", cat(bytes.Repeat([]byte{0xff}, 11), []byte{0, 0})},
	} {
		if s, err := Decode(tc.b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, %v", tc.name, s, err)
		}
	}
	// The extreme valid indices of α = 0.01: ceil(log(MaxFloat64)/log(gamma))
	// and ceil(log(MinIndexable)/log(gamma)).
	s, _ := New(0.01)
	top, bottom := int64(s.maxIndex), int64(s.minIndex)
	if top != 35488 || bottom != -35417 {
		t.Fatalf("index range [%d, %d]", bottom, top)
	}
	for _, i := range []int64{top, bottom} {
		if _, err := Decode(cat([]byte{0, 1}, binary.AppendVarint(nil, i), []byte{1, 0})); err != nil {
			t.Fatalf("index %d: %v", i, err)
		}
	}
	for _, i := range []int64{top + 1, bottom - 1} {
		if _, err := Decode(cat([]byte{0, 1}, binary.AppendVarint(nil, i), []byte{1, 0})); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("index %d: %v", i, err)
		}
	}
	// The largest valid store: MaxBins bins.
	big := cat([]byte{0, 0x80, 0x10, 0}, bytes.Repeat([]byte{1}, 2048), []byte{0})
	if s, err := Decode(big); err != nil || s.Count() != 2048 {
		t.Fatalf("2048 bins: %v", err)
	}
}

func TestCopy(t *testing.T) {
	s, _ := New(0.01)
	for i := range 100 {
		_ = s.Add(float64(i) - 20)
	}
	c := s.Copy()
	_ = s.Add(1e6)
	if c.Count() != 100 {
		t.Fatalf("copy shares state: count %d", c.Count())
	}
	// CopyFrom reuses memory and takes the α of the source.
	d, _ := New(0.05)
	for i := range 1000 {
		_ = d.Add(float64(i))
	}
	d.CopyFrom(c)
	if !bytes.Equal(d.Encode(nil), c.Encode(nil)) {
		t.Fatal("CopyFrom differs from its source")
	}
	empty, _ := New(0.01)
	d.CopyFrom(empty)
	if !bytes.Equal(d.Encode(nil), empty.Encode(nil)) {
		t.Fatal("CopyFrom of an empty sketch")
	}
	_ = d.Add(3)
	if got, _ := d.Quantile(1); !within(got, 3, 0.01) {
		t.Fatalf("after CopyFrom(empty): %v", got)
	}
}

// TestAddAllocs: Add allocates nothing once the range of the values has
// been seen, and nothing after Clear.
func TestAddAllocs(t *testing.T) {
	s, _ := New(0.01)
	r := rand.New(rand.NewPCG(4, 5))
	vals := make([]float64, 4096)
	for i := range vals {
		vals[i] = r.NormFloat64() * 50 // positive, negative, both stores
	}
	vals[0] = 0
	for _, v := range vals {
		_ = s.Add(v)
	}
	i := 0
	if n := testing.AllocsPerRun(10000, func() {
		_ = s.Add(vals[i%len(vals)])
		i++
	}); n != 0 {
		t.Fatalf("Add: %v allocs", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		s.Clear()
		for _, v := range vals[:500] {
			_ = s.Add(v)
		}
	}); n != 0 {
		t.Fatalf("Clear + Add: %v allocs", n)
	}
	c := s.Copy()
	if n := testing.AllocsPerRun(100, func() {
		c.CopyFrom(s)
		_ = c.Merge(s)
	}); n != 0 {
		t.Fatalf("CopyFrom + Merge: %v allocs", n)
	}
}

func BenchmarkAdd(b *testing.B) {
	s, _ := New(0.01)
	r := rand.New(rand.NewPCG(1, 1))
	vals := make([]float64, 1024)
	for i := range vals {
		vals[i] = 20 + r.NormFloat64()*5
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = s.Add(vals[i&1023])
	}
}
