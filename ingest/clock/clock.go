package clock

import (
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMinTime returns the earliest wall-clock time taken as plausible,
// 2025-01-01T00:00:00Z: a clock (or a payload timestamp) before it is
// treated as never synchronised. It is a fixed date a little before this
// code was written, so it stays correct for the life of a deployed binary.
func DefaultMinTime() time.Time { return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) }

// jumpThreshold is how far the wall clock must move against the monotonic
// clock between two refreshes to count as a jump.
const jumpThreshold = time.Second

// maxJumps bounds the jump history kept for corrections.
const maxJumps = 8

// Options are the inputs of a Clock. Every field is optional.
type Options struct {
	// Now is the wall clock; nil means time.Now.
	Now func() time.Time
	// Mono is a monotonic clock (time since an arbitrary origin); nil means
	// the runtime's monotonic clock.
	Mono func() time.Duration
	// Status reports whether the kernel considers the clock synchronised.
	// nil means the platform default: adjtimex(2) on Linux (STA_UNSYNC clear
	// and state not TIME_ERROR); elsewhere unknown, and only the MinTime
	// check applies. known=false means "cannot tell".
	Status func() (synced, known bool)
	// MinTime is the earliest plausible wall time (zero: DefaultMinTime()).
	MinTime time.Time
}

// Jump is one observed step of the wall clock against the monotonic clock.
type Jump struct {
	// From and To bound the wall-clock stamps (Unix ns) given out before
	// the jump, in the epoch the jump ended.
	From, To int64
	// Offset is what the jump added to the wall clock, in ns: a stamp in
	// [From, To] corrected is stamp+Offset.
	Offset int64
	// Unsynced is true when the clock was not synchronised before the jump
	// (the typical NTP sync after boot).
	Unsynced bool
}

// Clock watches the gateway's wall clock on a board that may have no
// real-time clock: it knows whether the clock has ever been synchronised,
// notices when the clock jumps (NTP sync after a boot in 1970 or at
// fake-hwclock's stale time) and can correct stamps taken before a jump.
//
// Refresh must be called periodically (the rules engine's door does it every
// second); Now, Synced and Correct only read state and are cheap. A Clock
// is safe for concurrent use.
type Clock struct {
	now     func() time.Time
	mono    func() time.Duration
	status  func() (bool, bool)
	minTime int64

	synced     atomic.Bool // synchronised at the last Refresh
	everSynced atomic.Bool
	jumpCount  atomic.Uint64

	mu         sync.Mutex
	primed     bool
	epochStart int64 // wall ns of the first stamp of the current epoch
	lastWall   int64
	lastMono   time.Duration
	jumps      atomic.Pointer[[]Jump] // copy-on-write, newest last
}

// NewClock returns a Clock and takes a first reading of the clock.
func New(opts Options) *Clock {
	c := &Clock{now: opts.Now, mono: opts.Mono, status: opts.Status, minTime: opts.MinTime.UnixNano()}
	if c.now == nil {
		c.now = time.Now
	}
	if c.mono == nil {
		start := time.Now()
		c.mono = func() time.Duration { return time.Since(start) }
	}
	if c.status == nil {
		c.status = kernelSynced
	}
	if opts.MinTime.IsZero() {
		c.minTime = DefaultMinTime().UnixNano()
	}
	c.Refresh()
	return c
}

// Now returns the current wall-clock time (use it as the sources' clock).
func (c *Clock) Now() time.Time { return c.now() }

// Synced reports whether the clock was synchronised at the last Refresh.
func (c *Clock) Synced() bool { return c.synced.Load() }

// EverSynced reports whether the clock was ever seen synchronised.
func (c *Clock) EverSynced() bool { return c.everSynced.Load() }

// MinTime returns the earliest plausible time, Unix ns.
func (c *Clock) MinTime() int64 { return c.minTime }

// Jumps returns the jumps seen so far (at most the last 8).
func (c *Clock) Jumps() []Jump {
	if j := c.jumps.Load(); j != nil {
		return append([]Jump(nil), *j...)
	}
	return nil
}

// Refresh reads the clock and the kernel's sync status, records a jump if
// the wall clock moved against the monotonic clock by more than a second,
// and updates Synced. It returns the jump found, if any.
func (c *Clock) Refresh() (Jump, bool) {
	wall := c.now().UnixNano()
	mono := c.mono()
	synced, known := c.status()
	if !known {
		synced = true
	}
	synced = synced && wall >= c.minTime
	c.mu.Lock()
	defer c.mu.Unlock()
	var j Jump
	jumped := false
	if !c.primed {
		c.primed = true
		c.epochStart = wall
	} else {
		expected := c.lastWall + int64(mono-c.lastMono)
		if d := wall - expected; d > int64(jumpThreshold) || d < -int64(jumpThreshold) {
			j = Jump{From: c.epochStart, To: expected, Offset: d, Unsynced: !c.synced.Load()}
			jumped = true
			var list []Jump
			if old := c.jumps.Load(); old != nil {
				list = append(list, *old...)
			}
			list = append(list, j)
			if len(list) > maxJumps {
				list = list[len(list)-maxJumps:]
			}
			c.jumps.Store(&list)
			c.jumpCount.Add(1)
			c.epochStart = wall
		}
	}
	c.lastWall, c.lastMono = wall, mono
	c.synced.Store(synced)
	if synced {
		c.everSynced.Store(true)
	}
	return j, jumped
}

// Correct maps a wall-clock stamp (Unix ns) taken before a jump of an
// unsynchronised clock onto the clock as it is now. It returns the stamp
// unchanged and false when no such jump covers it. Stamps taken while the
// clock was synchronised are never moved: a small correction by NTP is not
// worth the ambiguity.
func (c *Clock) Correct(stamp int64) (int64, bool) {
	p := c.jumps.Load()
	if p == nil {
		return stamp, false
	}
	js := *p
	// Apply the jumps in order: a stamp from the first epoch may have been
	// moved by several of them.
	corrected := false
	for _, j := range js {
		if j.Unsynced && stamp >= j.From && stamp <= j.To+int64(jumpThreshold) {
			stamp += j.Offset
			corrected = true
		}
	}
	return stamp, corrected
}

// JumpCount returns how many jumps were seen since New (Jumps keeps only
// the last few).
func (c *Clock) JumpCount() uint64 { return c.jumpCount.Load() }
