// Package validate is the door of the pipeline: a stage between the sources
// and the rules that rejects readings which must not go further, flags the
// ones whose time cannot be trusted, and keeps track of the gateway's own
// clock on boards without a real-time clock.
//
// # Basics
//
// [New] takes the `validation:` section ([Config]) and the sensors section
// (id -> [SensorSpec] with per-metric physical [Range]s). [Validator.Run]
// reads a channel of readings and writes the accepted ones to another;
// [Validator.Check] is the same decision for one reading, for callers that
// want to inline it (the gateway does: the rules engine calls it before each
// reading, and [Validator.Watch] keeps the clock current). Nothing here is fatal: every rejection is counted by
// reason ([Stats].Rejected) and logged at most every 10 s.
//
//	validation:
//	  max_future_skew: 5m          # default
//	  min_time: 2025-01-01T00:00:00Z  # default: earlier payload times are stale
//	  out_of_range: reject         # or flag
//	  known_sensors_only: false    # true: only sensors of the sensors section (plus allow)
//	  allow: [gh-1, gh-2]          # optional allowlist
//
// Checks, in order:
//   - allowlist (when one is configured): reason unknown_sensor;
//   - NaN and ±Inf: reason not_finite;
//   - the sensor's configured range for the metric, bounds included: reason
//     out_of_range (or, with out_of_range: flag, kept with
//     ingest.QualityOutOfRange);
//   - time (never a rejection): a payload time before min_time is flagged
//     ingest.QualityStaleTime, one more than max_future_skew after arrival
//     ingest.QualityFutureTime; both get the arrival time as Time and keep
//     the payload's value in OrigTime. The future check runs while the
//     gateway clock is synchronised or at least plausible (after min_time):
//     a gateway still in 1970 may itself be decades behind a device that has
//     good time, but one merely not reported synchronised is close enough,
//     and a timestamp years ahead trusted as event time would push its key's
//     watermark there and make every later reading late.
//
// Payload size limits are enforced by the sources (mqttsub's max_payload),
// before decoding.
//
// # Clock
//
// A Raspberry Pi has no real-time clock: it boots in 1970 (or at
// fake-hwclock's last saved time) and steps forward when NTP synchronises.
// [clock.Clock] (package ingest/clock) tells the two states apart: the kernel's adjtimex(2) status
// (STA_UNSYNC clear, state not TIME_ERROR: set by systemd-timesyncd, chrony
// or ntpd) and a sanity check (the wall time must be after min_time). It
// also compares the wall clock with the monotonic clock on every Refresh
// (Run refreshes every second) and records each step of more than a second
// as a [clock.Jump].
//
// What happens to readings taken before the clock was synchronised:
//   - they pass, flagged ingest.QualityClockUnsynced; their arrival stamp
//     (and Time, when the payload had none) is the unsynchronised wall time;
//   - a payload time from a device with good time is kept (only the
//     min_time check applies), so a device with NTP of its own still gives
//     correct event times;
//   - when the clock steps out of the unsynchronised state, stamps taken
//     before the step can be mapped onto the new clock with
//     [clock.Clock.Correct] (stamp + the size of the step, exact to the monotonic
//     clock). The validator does it for readings still in flight; stages
//     further down (windows, the outbox) can call Correct on what they hold
//     from before the jump. Readings already sent upstream keep their flag
//     so that the receiver can discard or fix them.
//
// Share the Clock with the sources (mqttsub's Options.Now = clock.Now) so
// that every arrival stamp comes from the clock whose jumps are recorded.
//
// # Caveats
//
//   - Correct only moves stamps from unsynchronised epochs; a step of an
//     already synchronised clock is recorded but not applied.
//   - The last 8 jumps are kept.
//   - Without adjtimex (non-Linux), only the min_time check tells an
//     unsynchronised clock.
package validate
