// Package lograte keeps a flood of identical warnings (bad payloads, a
// full queue, a broker that refuses us) from filling the log and the SD
// card: a [Limiter] lets one line through per interval and counts the
// lines it held back, so the next line can say how many were suppressed.
//
// # Guarantees
//
// The first Allow returns true, and then at most one per Interval
// (default 10 s). Intervals are measured on the monotonic clock, so a
// wall-clock jump (NTP syncing a board without RTC from 1970) neither
// silences the log nor lets a burst through. A Limiter is safe for
// concurrent use; its zero value is ready to use.
//
// # Caveats
//
// It limits lines, not events: callers still count every event in a
// metric, which is where the numbers are read. One Limiter per kind of
// message, or a rare message is hidden behind a frequent one.
package lograte
