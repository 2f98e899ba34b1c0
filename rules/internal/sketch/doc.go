// Package sketch is a small, mergeable quantile sketch with a relative-error
// guarantee: the DDSketch algorithm of Masson, Rim and Lee ("DDSketch: A
// Fast and Fully-Mergeable Quantile Sketch with Relative-Error Guarantees",
// VLDB 2019). The rules engine keeps one per open window for the quantile
// aggregates and stores its encoding in ingest.Summary.Sketch, so that the
// roll-up can merge summaries later.
//
// # Basics
//
// A [Sketch] is made with [New] and a relative accuracy α in (0, 1), for
// example 0.01. With gamma = (1+α)/(1-α), a value v > 0 falls into the bin
// of index i = ceil(log(v)/log(gamma)), which covers (gamma^(i-1), gamma^i]
// and is represented by 2·gamma^i/(gamma+1): that representative is within
// α of every value of its bin, relative to the value. Positive and negative
// values have separate stores (a negative value by its magnitude); values
// with a magnitude below [Sketch.MinIndexable] (about 2.2e-308·gamma) are
// counted as zeros. A store is a slice of counts with an index offset that
// grows as needed.
//
// [Sketch.Quantile] uses the rank convention of DataDog's sketches-go, which
// this package replaces: the value at quantile q is the representative of
// the bin holding the value of rank r = q·(n-1) (0-based, in sorted order).
// A fractional r picks the value of rank floor(r) or ceil(r): in each store
// the bin whose cumulative count, from the smallest magnitude, first exceeds
// the rank within the store (so among positive values r is rounded down,
// among negative ones up). Zeros are reported as 0.
//
// [Sketch.Merge] adds two sketches of the same α bin for bin, so the result
// is exactly the sketch of the union of their inputs (in any order, with any
// grouping). [Sketch.Encode] and [Decode] convert a sketch to and from a
// compact, versioned, canonical binary form (see encode.go for the format).
//
// # Guarantees
//
// For every q, Quantile(q) is within α (relative) of the exact value x at
// rank floor(q·(n-1)) or ceil(q·(n-1)) of the data added (the one chosen
// above): |Quantile(q) - x| <= α·|x| (up to float64 rounding), when
// |x| is a normal float64 at least MinIndexable (smaller magnitudes are
// reported as 0) and no bins were collapsed (below). This holds for all
// finite values when α >= 2e-7 (smaller α cannot index the whole float64
// range in 32-bit indices; larger magnitudes then share the top bin).
//
// Add does not allocate once the store's slice covers the range of the
// values (the slice grows geometrically up to MaxBins); Clear keeps the
// memory for reuse.
//
// # Caveats
//
// Each store keeps at most [MaxBins] (2048) bins: when the magnitudes of one
// sign span more than gamma^2048 (about 6e17 for α = 1%, 4e35 for 2%), the
// bins of the smallest magnitudes are collapsed into the lowest bin kept.
// The accuracy guarantee then still holds for every value of the largest
// magnitudes (the upper quantiles of positive data, the lower ones of
// negative data: sensor p90/p95/p99), while the collapsed values are
// over-estimated in magnitude. Collapsing does not depend on the order of
// the data, so merging stays exact.
//
// Sketches of different α cannot be merged ([ErrMismatch]). Counts are
// uint64; a merge that would overflow one returns [ErrOverflow] and leaves
// the sketch unchanged. A Sketch is not safe for concurrent use.
package sketch
