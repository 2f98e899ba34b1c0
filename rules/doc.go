// Package rules runs the per-reading stages, the threshold alerts and the
// keyed, windowed aggregation of sensorgate.
//
// # Basics
//
// An [Engine] is built from a [Config] (the `rules:` section) with [New] and
// fed by [Engine.Run] from a channel of readings; what it produces goes to a
// [Sink] (the command encodes it into the outbox). For every reading, in
// this order:
//
//  1. The door (door.go; built from [Options].Door: the `validation:`
//     section, the sensors' ranges and the gateway clock): the allowlist,
//     asked once per new route so that unknown ids never fill the route
//     cache (reason unknown_sensor); NaN and ±Inf (not_finite); the
//     sensor's physical range for the metric, resolved once per route
//     (out_of_range, or flagged with out_of_range: flag); then the time
//     checks, which never reject: stale and future payload times are
//     replaced by the arrival time and flagged, arrival stamps taken
//     before a jump of the unsynchronised clock are corrected, readings
//     taken while it is unsynchronised are flagged. An event time beyond
//     ±2^62 ns is rejected too (window arithmetic needs the bound).
//     Rejections are counted by reason ([DoorStats], also in
//     [Stats].Rejected) and reported with the key's next summary
//     (Summary.Rejected), logged at most every 10 s. Run refreshes the
//     clock every second while it runs. Without Options.Door only the
//     finiteness and time-bound checks apply.
//  2. The stages run in the order declared, each on the readings whose
//     sensor and metric match its globs (path.Match syntax; after the
//     renames of earlier stages): filter, range, calibrate, convert,
//     deadband, rate, derive, rename, tag and dedup (see [StageConfig]).
//     Rate and derive stages make new readings that continue with the
//     stages after them. Filter conditions and derive formulas are expr
//     expressions (github.com/expr-lang/expr) compiled and type-checked
//     when the config is validated; the common subset (numbers, strings,
//     the reading's fields, meta.<tag>, arithmetic, comparisons, logic,
//     ?:, in [...], sqrt/exp/ln/log10/pow/hypot/dewpoint/abs/floor/ceil/
//     round) is further compiled into Go closures that do not allocate,
//     the rest runs on expr's VM.
//  3. Threshold alerts ([AlertRule]) with hysteresis, hold time and
//     re-notify: one [ingest.Alert] when the condition starts to hold
//     ("fire"), again every re-notify interval, and when it stops ("clear"),
//     all with the same ID for one firing.
//  4. Windows ([WindowConfig], package rules/window), keyed by sensor and metric (or by a tag and
//     metric with group_by): tumbling, hopping or session, in event time
//     (default) or processing time. A reading may fall into several
//     windows of several rules. When a window closes, one [ingest.Summary]
//     is emitted with count, sum, min, max, mean, stddev (sample, n-1),
//     first and last, and on request twa, delta, rate and quantiles.
//
// Tumbling and hopping windows are aligned to the Unix epoch: a window of
// size S starts at t - t mod S (a multiple of the slide for hopping ones).
// A session window spans [first, last+gap). Summary.ID is
// ingest.SummaryID(window name, sensor, group, metric, start, end).
//
// # Time and watermarks
//
// Each window key has a watermark: the newest event time seen minus the
// window's lateness. A window closes (its summary is emitted) when the
// watermark reaches its end. While a key is idle (no reading since the
// previous tick), its event clock moves on with the wall clock: on every
// tick the watermark becomes at least newest event time + (now - arrival of
// that reading) - lateness (arrival from Reading.Arrival, or the tick that
// first saw the reading when that is zero). For a sensor whose clock agrees
// with the gateway's that is now - lateness, so silent sensors close their
// windows about one tick after end + lateness; a sensor whose clock is off,
// or a replay of old data, is not cut short by the gateway clock. Watermarks never move back: when the wall clock steps back, the
// idle advance is re-anchored; when it steps forward, idle windows close.
//
// Processing-time windows use Reading.Arrival (or Options.Now when it is
// zero) as the time and now - lateness as the watermark; they follow the
// wall clock, so after the clock steps back their readings are late until
// it has caught up again (use event time where that matters).
//
// A reading whose window already closed is late. With the default late
// policy (drop) it is dropped and counted in [Stats].Late and in the Late
// field of the key's next summary. With late: revise it is folded into the
// retained window, which is emitted again on the next tick with the same
// ID and Revision+1, as long as the window ended less than retention before
// the watermark; older ones are dropped and counted.
//
// When the input channel closes, Run emits every open window (and pending
// revision) and returns nil. Cancelling the context is a hard stop: nothing
// is flushed.
//
// # Checkpoints
//
// With [Options].Commit the state is checkpointed instead ([Committer]): each
// checkpoint holds the window keys (open and retained windows, watermarks,
// anchors, pending counts, revisions), stage state (dedup, deadband, rate,
// derive inputs) and alert state (firing, since, hold, re-notify) changed
// since the previous one, one store key each under "r/" (layout in
// restore.go, values versioned), and the receipts of the readings it covers;
// the sink writes them with the records emitted since the previous
// checkpoint in one transaction, so a closing window's summary and its
// state leave together, and the receipts are completed (in arrival order)
// only after that. Checkpoints happen when MaxReceipts receipts are pending,
// MaxDelay after the first pending receipt or record, StateEvery for state
// alone, and when the input closes (Final: open windows stay open in the
// store unless FlushOnClose). [Engine.Restore] loads the store before Run;
// the restored engine continues exactly where the last committed checkpoint
// left off, given the readings whose receipts were not completed again (what
// a broker redelivers): a window that closed while the gateway was down is
// emitted at the first tick. The rev contract: every summary ID is emitted
// once, or again only with a higher Revision carrying the complete counts.
// Caveats: readings without a receipt processed after the last checkpoint
// are lost by a crash; a source whose input yields several readings sets
// Reading.More on all but the last, and the engine does not checkpoint
// between them (a checkpoint at the end of the input stream, Final, still
// commits a partial input: the source must finish an input it started
// handing on); an idle key stays in the
// store until key_ttl forgets it (its watermark says what was emitted).
//
// # Reloads
//
// Flushing the open windows on a config reload and starting again would
// emit the window that spans the reload twice under one ID (upstream keeps
// the first, losing the rest). Instead: [Engine.PrepareHandover] on the old
// engine before closing its input (its Run then returns without a flush),
// and [Engine.Adopt] on the new one: windows of unchanged window rules and
// the state of unchanged alert rules carry on; windows of rules that
// changed are flushed.
//
// # Merging
//
// [window.Merge] folds one summary into another of the same key and a disjoint
// window; [window.RollUp] does it for a batch of encoded outbox records, so that
// the buffer can roll old summaries up into coarser ones instead of
// dropping them.
//
// # Defaults
//
// Globs default to "*", alert severity to "warning", clear_below/clear_above
// to above/below, windows to tumbling, event time, late: drop, the name to
// the size ("10s"), retention (revise) to 10 x size, quantiles to 0.5, 0.9,
// 0.95 and 0.99 with a DDSketch relative accuracy of 1% (every reported
// quantile is within 1% of the exact value at rank q*(n-1), rounded down or
// up; see rules/internal/sketch). The internal
// tick runs every [DefaultTick]. At most max_routes (100000) distinct
// sensor/metric pairs are tracked; the state of a pair that got no reading
// for key_ttl (10m) and has no open window or firing alert is forgotten.
//
// Validate bounds what a config may ask of the machine: at most
// [MaxRules] alerts, stages and window rules each, max_routes at most
// [MaxMaxRoutes], and windows, slides and session gaps of at least
// [window.MinSize] (100ms).
//
// # Caveats
//
// The engine is single-goroutine: Run processes readings one at a time and
// must not run twice at once. Per reading it does not allocate in steady
// state (routes, window keys and window buckets are cached and recycled);
// the first reading of a new sensor/metric, emitted summaries and alerts
// allocate, and so do expressions outside the closure-compiled subset
// (they run on expr's VM). Without checkpoints, state is held in memory only.
//
// A tag-keyed (group_by) window has one watermark for the whole group: a
// sensor of the group lagging behind the others by more than the lateness
// sees its readings counted as late.
//
// Late and rejected readings that no later summary of their key carries
// (for example at shutdown) are only visible in [Stats].
//
// Readings beyond max_routes are dropped and counted ([Stats].Overflow):
// the one place where the engine drops data outside the declared stage,
// validation and late policies.
//
// TWA, delta and rate keep the (time, value) samples of an open window
// (16 bytes each, at most [window.MaxSamples]; a window that gets more is emitted
// without them and counted in [Stats].Capped); quantiles keep a DDSketch per
// open window (rules/internal/sketch: 8 bytes per bin, the bins grow with
// the log-range of the values, not their number, up to 2048 per sign).
// Values of one sign spanning more than gamma^2048 (gamma = (1+α)/(1-α):
// about 6e17 at 1%, only 60 at 0.1%) collapse the bins of the smallest
// magnitudes: the upper quantiles of positive values keep their accuracy,
// the collapsed ones are over-estimated. Hopping windows keep their
// readings in panes of gcd(size, slide) and assemble each window from its
// panes when it closes.
//
// Summary.Sketch holds the sketch in the versioned encoding of
// rules/internal/sketch (version 1); the roll-up merges only sketches of the
// same accuracy and drops the quantiles of a merge it cannot do (a sketch of
// another accuracy or encoding) rather than guess them.
//
// With late: revise, every emitted window of the retention period stays in
// memory (retention/size windows per key).
//
// Alerts evaluate readings in event-time order per rule and sensor: a
// reading older than the newest one seen is ignored by the alert (it still
// counts in its window).
package rules
