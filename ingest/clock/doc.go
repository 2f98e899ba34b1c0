// Package clock watches the gateway's wall clock on boards without a
// real-time clock. It is a leaf package shared by the sources (which stamp
// arrivals with [Clock.Now]) and the rules engine's door (which flags and
// corrects stamps with [Clock.Synced] and [Clock.Correct]).
//
// # Basics
//
// A Raspberry Pi boots in 1970 (or at fake-hwclock's last saved time) and
// steps forward when NTP synchronises. [Clock] tells the two states apart:
// the kernel's adjtimex(2) status (STA_UNSYNC clear, state not TIME_ERROR:
// set by systemd-timesyncd, chrony or ntpd) and a sanity check (the wall
// time must be after [Options].MinTime, default [DefaultMinTime]). On every
// [Clock.Refresh] it compares the wall clock with the monotonic clock and
// records each step of more than a second as a [Jump]; [Clock.Correct] maps
// a stamp taken before a jump of an unsynchronised clock onto the clock as
// it is now.
//
// Share one Clock between the sources and the door, so that every arrival
// stamp comes from the clock whose jumps are recorded.
//
// # Caveats
//
//   - Refresh must be called periodically; nothing here starts a goroutine.
//   - Correct only moves stamps from unsynchronised epochs; a step of an
//     already synchronised clock is recorded but not applied.
//   - The last 8 jumps are kept.
//   - Without adjtimex (non-Linux), only the MinTime check tells an
//     unsynchronised clock.
package clock
