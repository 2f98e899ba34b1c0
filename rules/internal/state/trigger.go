package state

import "time"

// MaxBackoff bounds the wait between retries of a failed commit.
const MaxBackoff = 5 * time.Second

// Trigger decides when a checkpoint is due (the engine's CommitPolicy).
// Times are wall-clock Unix ns; a clock that steps back restarts the
// delays.
type Trigger struct {
	maxReceipts         int
	maxDelay, stateEach int64
	limit               int // maxReceipts, or the window learned below it
	loweredAt           int64
	stalledAt           int   // P of the last MaxDelay checkpoint that found the input stalled, 0: none
	firstAt             int64 // first pending receipt or record since the last checkpoint
	lastRcpt            int64 // newest receipt (-1: stamp at the next Due)
	dirtyAt             int64 // first state change since the last checkpoint
	retryAt, backoff    int64
}

// NewTrigger returns a Trigger for a defaulted policy.
func NewTrigger(maxReceipts int, maxDelay, stateEvery time.Duration) *Trigger {
	return &Trigger{maxReceipts: maxReceipts, limit: maxReceipts, maxDelay: int64(maxDelay), stateEach: int64(stateEvery), backoff: int64(maxDelay)}
}

// Receipt notes that a receipt arrived.
func (t *Trigger) Receipt() { t.lastRcpt = -1 }

// Full reports whether pending receipts fill the (learned) window.
func (t *Trigger) Full(pending int) bool { return pending >= t.limit }

// Limit returns the receipts that make a checkpoint due now.
func (t *Trigger) Limit() int { return t.limit }

// Due notes what is pending at now (receipts; records emitted or state
// changed since the last checkpoint) and reports whether a checkpoint is
// due; if not, next is when to look again (0: nothing pending).
//
// It learns the broker's in-flight window downward: when the MaxDelay
// trigger fires twice in a row with the same 0 < P < limit receipts
// pending and none arrived during the last half of the delay, the broker
// evidently stops sending at P, and the limit becomes P (once is not
// enough: a lone message in a quiet moment looks the same). It goes back
// up a minute later, or at once when input is already waiting after a
// checkpoint at the limit (Backlog).
func (t *Trigger) Due(now int64, pending int, records, changed bool) (due bool, next int64) {
	if t.lastRcpt < 0 {
		t.lastRcpt = now
	}
	if t.firstAt == 0 && (pending > 0 || records) || t.firstAt > now {
		t.firstAt = now
	}
	if t.dirtyAt == 0 && changed || t.dirtyAt > now {
		t.dirtyAt = now
	}
	if t.limit < t.maxReceipts && now-t.loweredAt >= int64(time.Minute) {
		t.limit = t.maxReceipts
	}
	switch {
	case now < t.retryAt:
		return false, t.retryAt
	case pending >= t.limit:
		return true, 0
	case t.firstAt != 0 && now-t.firstAt >= t.backoff:
		if pending > 0 && pending < t.limit && now-t.lastRcpt >= t.maxDelay/2 {
			if t.stalledAt == pending {
				t.limit, t.loweredAt = pending, now
			}
			t.stalledAt = pending
		} else {
			t.stalledAt = 0
		}
		return true, 0
	case t.dirtyAt != 0 && now-t.dirtyAt >= t.stateEach:
		return true, 0
	case t.firstAt != 0:
		return false, t.firstAt + t.backoff
	case t.dirtyAt != 0:
		return false, t.dirtyAt + t.stateEach
	}
	return false, 0
}

// Failed notes a failed commit at now: the next try waits MaxDelay,
// doubling up to MaxBackoff.
func (t *Trigger) Failed(now int64) {
	t.retryAt = now + t.backoff
	t.backoff = min(2*t.backoff, int64(MaxBackoff))
}

// Backlog notes that input was already waiting when a checkpoint at the
// limit was committed: the broker did not stop at the limit, so its window
// is larger than learned.
func (t *Trigger) Backlog() {
	if t.limit < t.maxReceipts {
		t.limit = min(2*t.limit, t.maxReceipts)
	}
}

// Done notes a committed checkpoint (or one with nothing to commit).
func (t *Trigger) Done() {
	t.firstAt, t.dirtyAt, t.retryAt, t.backoff = 0, 0, 0, t.maxDelay
}

// Soon makes the MaxDelay trigger run from now (records emitted outside
// a Run, e.g. by Adopt).
func (t *Trigger) Soon(now int64) { t.firstAt = now }
