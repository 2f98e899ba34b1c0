package sketch

import (
	"errors"
	"fmt"
	"math"
)

// MaxBins bounds the bins of each store (positive and negative values): a
// store whose indices would span more collapses its lowest bins.
const MaxBins = 2048

// initialBins is the length of a store's slice when it gets its first value.
const initialBins = 32

// Index bounds: kept well inside int32 so that offset arithmetic on a slice
// of at most MaxBins bins never overflows.
const (
	minIndexBound = math.MinInt32 + 4*MaxBins
	maxIndexBound = math.MaxInt32 - 4*MaxBins
)

// Errors.
var (
	ErrAccuracy = errors.New("sketch: relative accuracy must be in (0, 1)")
	ErrMismatch = errors.New("sketch: relative accuracies differ")
	ErrValue    = errors.New("sketch: value is NaN or infinite")
	ErrQuantile = errors.New("sketch: quantile must be in [0, 1]")
	ErrEmpty    = errors.New("sketch: empty sketch")
	ErrOverflow = errors.New("sketch: count overflows uint64")
	ErrCorrupt  = errors.New("sketch: malformed encoding")
)

// Sketch is a DDSketch: see the package documentation.
type Sketch struct {
	alpha      float64
	multiplier float64 // 1/log(gamma)
	lnGamma    float64
	factor     float64 // 2/(gamma+1): value(i) = gamma^i * factor
	minValue   float64 // smallest magnitude that gets a bin
	minIndex   float64 // index bounds, as floats for the clamp in index
	maxIndex   float64

	n    uint64 // total count
	zero uint64
	pos  store
	neg  store
}

// New returns an empty sketch with relative accuracy alpha, in (0, 1).
func New(alpha float64) (*Sketch, error) {
	s := new(Sketch)
	if err := s.init(alpha); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sketch) init(alpha float64) error {
	if !(alpha > 0 && alpha < 1) {
		return fmt.Errorf("%w: %v", ErrAccuracy, alpha)
	}
	gamma := (1 + alpha) / (1 - alpha)
	lnGamma := math.Log(gamma)
	if !(lnGamma > 0) || math.IsInf(gamma, 0) {
		return fmt.Errorf("%w: %v", ErrAccuracy, alpha)
	}
	s.alpha = alpha
	s.lnGamma = lnGamma
	s.multiplier = 1 / lnGamma
	s.factor = 2 / (gamma + 1)
	// Magnitudes below minValue count as zero: subnormal floats lose
	// precision, and indices stay above minIndexBound.
	s.minValue = max(0x1p-1022*gamma, math.Exp((minIndexBound+1)*lnGamma))
	s.minIndex = max(math.Ceil(math.Log(s.minValue)*s.multiplier), minIndexBound)
	s.maxIndex = min(math.Ceil(math.Log(math.MaxFloat64)*s.multiplier), maxIndexBound)
	return nil
}

// RelativeAccuracy returns α.
func (s *Sketch) RelativeAccuracy() float64 { return s.alpha }

// MinIndexable returns the smallest magnitude that is not counted as zero.
func (s *Sketch) MinIndexable() float64 { return s.minValue }

// Count returns the number of values added.
func (s *Sketch) Count() uint64 { return s.n }

// IsEmpty reports whether no value was added.
func (s *Sketch) IsEmpty() bool { return s.n == 0 }

// index returns the bin of magnitude a >= minValue.
func (s *Sketch) index(a float64) int32 {
	x := math.Ceil(math.Log(a) * s.multiplier)
	return int32(min(max(x, s.minIndex), s.maxIndex))
}

// value returns the representative of bin i: 2·gamma^i/(gamma+1), at most
// MaxFloat64 (which keeps it within α of the values of the top bin).
func (s *Sketch) value(i int32) float64 {
	x := float64(i) * s.lnGamma
	var v float64
	if x > -700 && x < 700 {
		v = math.Exp(x) * s.factor
	} else {
		// Near the ends of the float64 range gamma^i itself may overflow
		// (and math.Exp on amd64 returns +Inf from about 709.4, short of
		// log(MaxFloat64) = 709.78): halve the exponent.
		h := math.Exp(x / 2)
		v = h * s.factor * h
	}
	return min(v, math.MaxFloat64)
}

// Add adds v. It returns ErrValue for NaN and ±Inf (nothing is added) and
// ErrOverflow when the sketch already holds 2^64-1 values.
func (s *Sketch) Add(v float64) error {
	if s.n == math.MaxUint64 {
		return ErrOverflow
	}
	switch {
	case v >= s.minValue:
		if v > math.MaxFloat64 {
			return ErrValue
		}
		s.pos.add(s.index(v), 1)
	case v <= -s.minValue:
		if v < -math.MaxFloat64 {
			return ErrValue
		}
		s.neg.add(s.index(-v), 1)
	case v == v:
		s.zero++
	default:
		return ErrValue
	}
	s.n++
	return nil
}

// Clear empties the sketch and keeps its memory for reuse.
func (s *Sketch) Clear() {
	s.n, s.zero = 0, 0
	s.pos.clear()
	s.neg.clear()
}

// Copy returns a deep copy of s.
func (s *Sketch) Copy() *Sketch {
	c := new(Sketch)
	c.CopyFrom(s)
	return c
}

// CopyFrom makes s a copy of src (including its α), reusing the memory of s.
func (s *Sketch) CopyFrom(src *Sketch) {
	if s == src {
		return
	}
	pos, neg := s.pos.bins, s.neg.bins
	*s = *src
	s.pos.bins, s.neg.bins = pos, neg
	s.pos.copyFrom(&src.pos)
	s.neg.copyFrom(&src.neg)
}

// Merge adds the values of o to s, bin for bin. Both must have the same
// relative accuracy (ErrMismatch); when the total count would overflow,
// ErrOverflow. On error s is unchanged.
func (s *Sketch) Merge(o *Sketch) error {
	if o.alpha != s.alpha {
		return fmt.Errorf("%w: %v and %v", ErrMismatch, s.alpha, o.alpha)
	}
	if s.n+o.n < s.n {
		return ErrOverflow
	}
	s.n += o.n
	s.zero += o.zero
	s.pos.merge(&o.pos)
	s.neg.merge(&o.neg)
	return nil
}

// Quantile returns the value at quantile q in [0, 1]: the representative
// of the bin of the value of rank q·(n-1), rounded down (the rank
// convention of sketches-go). It returns ErrQuantile for q outside [0, 1]
// and ErrEmpty for an empty sketch.
func (s *Sketch) Quantile(q float64) (float64, error) {
	if !(q >= 0 && q <= 1) {
		return math.NaN(), ErrQuantile
	}
	if s.n == 0 {
		return math.NaN(), ErrEmpty
	}
	// The explicit conversion forbids a fused multiply-add, so that the rank
	// (and the bin) is the same on every architecture.
	rank := float64(q * float64(s.n-1))
	neg := float64(s.neg.count)
	// The store tests guard against the float64 rounding of counts beyond
	// 2^53, which could otherwise select an empty store.
	switch {
	case s.neg.count > 0 && (rank < neg || s.zero == 0 && s.pos.count == 0):
		return -s.value(s.neg.keyAtRank(neg - 1 - rank)), nil
	case s.zero > 0 && (rank < neg+float64(s.zero) || s.pos.count == 0):
		return 0, nil
	}
	return s.value(s.pos.keyAtRank(rank - neg - float64(s.zero))), nil
}

// store counts the values of one sign by bin index: bins[j] is the count of
// index offset+j. Invariants when count > 0: lo <= hi are the lowest and
// highest index with a count, offset <= lo, hi < offset+len(bins),
// hi-lo < MaxBins, and every bin outside [lo, hi] is zero. When count is 0
// every bin is zero.
type store struct {
	bins   []uint64
	offset int32
	lo, hi int32
	count  uint64
}

// add adds n (> 0) to bin i (within the index bounds), collapsing the lowest
// bins when the store would span more than MaxBins.
func (s *store) add(i int32, n uint64) {
	if s.count == 0 || i < s.lo || i > s.hi {
		i = s.extend(i)
	}
	s.bins[i-s.offset] += n
	s.count += n
}

// extend makes room for index i and returns the bin that gets its count:
// i itself, or the lowest bin kept when i is below it.
func (s *store) extend(i int32) int32 {
	if s.count == 0 {
		if len(s.bins) == 0 {
			s.bins = make([]uint64, initialBins)
		}
		s.offset = i - int32(len(s.bins)/2)
		s.lo, s.hi = i, i
		return i
	}
	lo, hi := s.lo, s.hi
	var folded uint64
	if i > hi {
		hi = i
		if floor := hi - MaxBins + 1; lo < floor {
			// Collapse: every bin below the new floor goes into it.
			for j := lo; j <= s.hi && j < floor; j++ {
				folded += s.bins[j-s.offset]
				s.bins[j-s.offset] = 0
			}
			lo = floor
		}
	} else if i < lo {
		if floor := hi - MaxBins + 1; i < floor {
			i = floor
		}
		lo = i
	}
	if lo < s.offset || hi >= s.offset+int32(len(s.bins)) {
		s.relocate(lo, hi)
	}
	s.lo, s.hi = lo, hi
	if folded > 0 {
		s.bins[lo-s.offset] += folded
	}
	return i
}

// relocate moves the offset (and grows the slice when needed) so that the
// bins cover [lo, hi]. Only bins in [max(lo, s.lo), min(hi, s.hi)] may be
// non-zero.
func (s *store) relocate(lo, hi int32) {
	span := int(hi-lo) + 1
	n := len(s.bins)
	if n < span {
		n = min(MaxBins, max(2*n, span+span/2))
	}
	off := lo - int32(n-span)/2
	a, b := max(lo, s.lo), min(hi, s.hi)
	if n > len(s.bins) {
		nb := make([]uint64, n)
		if a <= b {
			copy(nb[a-off:], s.bins[a-s.offset:b-s.offset+1])
		}
		s.bins = nb
	} else if a <= b {
		copy(s.bins[a-off:], s.bins[a-s.offset:b-s.offset+1])
		clear(s.bins[:a-off])
		clear(s.bins[b-off+1:])
	} else {
		clear(s.bins)
	}
	s.offset = off
}

func (s *store) clear() {
	if s.count > 0 {
		clear(s.bins[s.lo-s.offset : s.hi-s.offset+1])
	}
	s.count, s.lo, s.hi = 0, 0, 0
}

// copyFrom makes s a copy of src, reusing the memory of s when it is large
// enough. The caller has already copied the scalar fields.
func (s *store) copyFrom(src *store) {
	if src.count == 0 {
		clear(s.bins)
		s.offset, s.lo, s.hi, s.count = 0, 0, 0, 0
		return
	}
	span := int(src.hi-src.lo) + 1
	if len(s.bins) < span {
		s.bins = make([]uint64, span)
	} else {
		clear(s.bins)
	}
	s.offset = src.lo
	s.lo, s.hi, s.count = src.lo, src.hi, src.count
	copy(s.bins, src.bins[src.lo-src.offset:src.hi-src.offset+1])
}

// merge adds the counts of o, from its highest bin down (so that a
// collapse happens at most once and the slice grows at most a few times).
func (s *store) merge(o *store) {
	if o.count == 0 {
		return
	}
	for j := o.hi; j >= o.lo; j-- {
		if c := o.bins[j-o.offset]; c > 0 {
			s.add(j, c)
		}
	}
}

// keyAtRank returns the index of the first bin whose cumulative count (from
// the lowest bin) exceeds rank; the store is not empty.
func (s *store) keyAtRank(rank float64) int32 {
	if rank < 0 {
		rank = 0
	}
	var n uint64
	for j := s.lo; j <= s.hi; j++ {
		n += s.bins[j-s.offset]
		if float64(n) > rank {
			return j
		}
	}
	return s.hi
}
