// Package window holds the keyed windows of the rules engine: tumbling,
// hopping and session windows in event or processing time, with a
// watermark, allowed lateness and late-data revisions, and the mergeable
// summaries they emit ([Merge], [RollUp]).
//
// # Basics
//
// A [Config] (a `rules.windows[]` entry) compiles into a [Rule]. A [Keyed]
// owns every window of one engine: its keys (one per rule and sensor or
// group and metric, made by [Keyed.Key]), their open and retained buckets,
// the free list of buckets, and the Summary and buffers reused for each
// emission, so that adding a reading allocates nothing in the steady state.
// [Keyed.Add] folds a reading into a key's windows, [Keyed.Advance] moves
// the watermarks on by the wall clock (idle keys close their windows),
// [Keyed.Flush] emits everything open, [Keyed.Adopt] takes the keys over
// from the Keyed of the previous config on a reload. What closes goes to an
// [Emit] function, whose Summary pointer is only valid during the call.
//
// The engine (package rules) decides which readings reach which key: the
// door, stages and alerts come before, and group_by is resolved there.
//
// # Checkpoints
//
// With [Keyed.Track] on, every change to a key marks it (a flag and an
// append); [Keyed.Changes] writes the marked keys (and deletes of those
// [Keyed.Sweep] forgot), one store key each under [StatePrefix], versioned,
// compact (times as deltas, decimals as varints: about 120 bytes for a key
// with one open window); [Keyed.Committed] clears the marks once written.
// [Keyed.RestoreKey] loads them back, refusing the state of a rule that is
// gone or whose kind of window changed ([ErrDropped]); restored keys are
// pinned until [Keyed.Unpin]. The idle advance of a watermark alone does
// not mark a key: [Keyed.Resume] recomputes it from the anchors and the
// last tick.
//
// # Caveats
//
//   - A Keyed is used from one goroutine at a time; only Stats is safe
//     from others.
//   - Keys are forgotten by [Keyed.Sweep] only once nobody refers to them
//     ([Key.Release]) and their windows are closed and past retention.
//   - Windows hold at most [MaxSamples] samples for twa, delta and rate.
//   - [Config.Validate] refuses sizes, slides and gaps under [MinSize].
package window
