package window

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/rules/internal/sketch"
)

// Errors of Merge.
var (
	ErrMergeKey     = errors.New("window: merge: summaries of different keys")
	ErrMergeOverlap = errors.New("window: merge: windows overlap")
)

// Merge folds src into dst, so that dst summarises the readings of both.
// Both must have the same key (window, sensor, group, metric) and windows
// that do not overlap; dst then spans from the earlier start to the later
// end and gets the ID of that span, revision 0.
//
// Count, sum, min, max, mean, stddev (Chan et al.), first, last, the late
// and rejected counts and the quality merge exactly. TWA, delta and rate
// merge exactly when both summaries have them (the value of the earlier
// window's last sample holds until the later window's first one; a counter
// that went down between them was reset); a TWA of exactly 0 is taken as
// "not computed". Quantiles are recomputed from the merged sketches (bins
// add, so they are those of a sketch of all the readings); when either
// summary has no sketch, or the sketches do not decode or have different
// accuracies, they are dropped rather than guessed.
func Merge(dst, src *ingest.Summary) error { return merge(dst, src, true) }

// merge is Merge; with sketches false the quantiles and sketch of dst are
// left for the caller to merge.
func merge(dst, src *ingest.Summary, sketches bool) error {
	if dst.Window != src.Window || dst.Sensor != src.Sensor || dst.Group != src.Group || dst.Metric != src.Metric {
		return ErrMergeKey
	}
	if src.Start < dst.End && dst.Start < src.End {
		return fmt.Errorf("%w: [%d, %d) and [%d, %d)", ErrMergeOverlap, dst.Start, dst.End, src.Start, src.End)
	}
	a, b := dst, src // a: the earlier window
	if src.Start < dst.Start {
		a, b = src, dst
	}
	out := *dst
	out.Start, out.End = a.Start, b.End
	out.Revision = 0
	out.Late = a.Late + b.Late
	out.Rejected = a.Rejected + b.Rejected
	out.Quality = a.Quality | b.Quality
	if out.Unit == "" {
		out.Unit = src.Unit
	}
	if out.Meta == nil {
		out.Meta = src.Meta
	}
	switch {
	case b.Count == 0:
		copyAggs(&out, a, sketches)
	case a.Count == 0:
		copyAggs(&out, b, sketches)
	default:
		mergeAggs(&out, a, b, sketches)
	}
	out.ID = ingest.SummaryID(out.Window, out.Sensor, out.Group, out.Metric, out.Start, out.End)
	*dst = out
	return nil
}

func copyAggs(out, s *ingest.Summary, sketches bool) {
	out.Count, out.Sum, out.Min, out.Max, out.Mean, out.M2, out.Stddev = s.Count, s.Sum, s.Min, s.Max, s.Mean, s.M2, s.Stddev
	out.First, out.Last, out.FirstTime, out.LastTime = s.First, s.Last, s.FirstTime, s.LastTime
	out.TWA, out.Delta, out.Rate = s.TWA, s.Delta, s.Rate
	if sketches {
		out.Quantiles, out.Sketch = slices.Clone(s.Quantiles), slices.Clone(s.Sketch)
	}
}

func mergeAggs(out, a, b *ingest.Summary, sketches bool) {
	n := a.Count + b.Count
	ma, mb := a.Sum/float64(a.Count), b.Sum/float64(b.Count)
	d := mb - ma
	out.M2 = a.M2 + b.M2 + d*d*float64(a.Count)*float64(b.Count)/float64(n)
	out.Count = n
	out.Sum = a.Sum + b.Sum
	out.Mean = out.Sum / float64(n)
	out.Stddev = 0
	if n > 1 {
		out.Stddev = math.Sqrt(out.M2 / float64(n-1))
	}
	out.Min, out.Max = min(a.Min, b.Min), max(a.Max, b.Max)
	out.First, out.FirstTime = a.First, a.FirstTime
	if b.FirstTime < a.FirstTime {
		out.First, out.FirstTime = b.First, b.FirstTime
	}
	out.Last, out.LastTime = b.Last, b.LastTime
	if a.LastTime > b.LastTime {
		out.Last, out.LastTime = a.Last, a.LastTime
	}
	span := float64(out.LastTime - out.FirstTime)
	gap := float64(b.FirstTime - a.LastTime)
	da, db := float64(a.LastTime-a.FirstTime), float64(b.LastTime-b.FirstTime)
	out.TWA = 0
	if a.TWA != 0 || b.TWA != 0 {
		if span > 0 {
			out.TWA = (a.TWA*da + a.Last*gap + b.TWA*db) / span
		} else {
			out.TWA = out.Mean
		}
	}
	out.Delta, out.Rate = 0, 0
	if a.Delta != 0 || b.Delta != 0 || a.Rate != 0 || b.Rate != 0 {
		deltaOf := func(s *ingest.Summary, d float64) float64 {
			if s.Delta == 0 && s.Rate != 0 {
				return s.Rate * d / float64(time.Second)
			}
			return s.Delta
		}
		step := b.First - a.Last
		if step < 0 {
			step = b.First // counter reset
		}
		delta := deltaOf(a, da) + step + deltaOf(b, db)
		if a.Delta != 0 || b.Delta != 0 {
			out.Delta = delta
		}
		if (a.Rate != 0 || b.Rate != 0) && span > 0 {
			out.Rate = delta / (span / float64(time.Second))
		}
	}
	if sketches {
		out.Quantiles, out.Sketch = mergeSketches(a, b)
	}
}

func mergeSketches(a, b *ingest.Summary) ([]ingest.Quantile, []byte) {
	return mergeRunSketches([]rollItem{{s: a}, {s: b}})
}

// mergeRunSketches merges the sketches of a run of summaries (decoding each
// once) and computes the quantiles of the first one's list (or of the first
// that has one); nil when any summary lacks a sketch or has one that does
// not decode (an older encoding, for example) or does not merge (another
// sketch accuracy): the quantiles are dropped rather than guessed.
func mergeRunSketches(run []rollItem) ([]ingest.Quantile, []byte) {
	var sk, part *sketch.Sketch
	for _, it := range run {
		if len(it.s.Sketch) == 0 {
			return nil, nil
		}
		if sk == nil {
			var err error
			if sk, err = sketch.Decode(it.s.Sketch); err != nil {
				return nil, nil
			}
			continue
		}
		if part == nil {
			part = new(sketch.Sketch)
		}
		if err := part.UnmarshalBinary(it.s.Sketch); err != nil {
			return nil, nil
		}
		if err := sk.Merge(part); err != nil {
			return nil, nil
		}
	}
	var qs []ingest.Quantile
	for _, it := range run {
		if len(it.s.Quantiles) > 0 {
			qs = it.s.Quantiles
			break
		}
	}
	out := make([]ingest.Quantile, len(qs))
	for i, q := range qs {
		v, err := sk.Quantile(q.Q)
		if err != nil {
			return nil, nil
		}
		out[i] = ingest.Quantile{Q: q.Q, Value: v}
	}
	return out, sk.Encode(nil)
}

type summaryKey struct{ window, sensor, group, metric string }

type rollItem struct {
	idx int
	s   *ingest.Summary
}

// RollUp decodes outbox records (ingest.DecodeRecord), merges summaries of
// the same key (window, sensor, group, metric) whose windows are adjacent
// (one ends where the next starts) into one coarser summary each, and
// re-encodes them (ingest.AppendSummary). Where the same window of a key
// appears with several revisions, only the highest is kept. Everything else
// (alerts, readings, records that do not decode, summaries with nothing to
// merge) passes through byte for byte. A merged summary takes the place of
// the first of its parts; the order of the rest is preserved. The input
// slices are not modified.
func RollUp(payloads [][]byte) ([][]byte, error) {
	byKey := map[summaryKey][]rollItem{}
	var keys []summaryKey
	for i, p := range payloads {
		rec, err := ingest.DecodeRecord(p)
		if err != nil || rec.Kind != ingest.KindSummary {
			continue
		}
		s := rec.Summary
		k := summaryKey{s.Window, s.Sensor, s.Group, s.Metric}
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], rollItem{i, s})
	}
	// out[i] is what replaces payloads[i]: itself, a merged record, or
	// nothing (dropped: merged into an earlier record or superseded).
	replace := map[int][]byte{}
	drop := map[int]bool{}
	for _, k := range keys {
		items := byKey[k]
		if len(items) < 2 {
			continue
		}
		// Keep the highest revision of each window (the later record on a tie).
		slices.SortStableFunc(items, func(x, y rollItem) int {
			return cmp.Or(cmp.Compare(x.s.Start, y.s.Start), cmp.Compare(x.s.End, y.s.End), cmp.Compare(x.s.Revision, y.s.Revision))
		})
		kept := items[:0]
		for _, it := range items {
			if n := len(kept); n > 0 && kept[n-1].s.Start == it.s.Start && kept[n-1].s.End == it.s.End {
				drop[kept[n-1].idx] = true
				kept[n-1] = it
				continue
			}
			kept = append(kept, it)
		}
		// Merge runs of adjacent windows.
		for i := 0; i < len(kept); {
			j := i + 1
			for j < len(kept) && kept[j].s.Start == kept[j-1].s.End {
				j++
			}
			if j-i > 1 {
				merged := *kept[i].s
				first := kept[i].idx
				ok := true
				for _, it := range kept[i+1 : j] {
					if err := merge(&merged, it.s, false); err != nil {
						ok = false
						break
					}
					first = min(first, it.idx)
				}
				if ok {
					merged.Quantiles, merged.Sketch = mergeRunSketches(kept[i:j])
					b, err := ingest.AppendSummary(nil, &merged)
					if err != nil {
						return nil, fmt.Errorf("rules: roll-up: %w", err)
					}
					for _, it := range kept[i:j] {
						drop[it.idx] = true
					}
					delete(drop, first)
					replace[first] = b
				}
			}
			i = j
		}
	}
	out := make([][]byte, 0, len(payloads))
	for i, p := range payloads {
		if b, ok := replace[i]; ok {
			out = append(out, b)
			continue
		}
		if drop[i] {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}
