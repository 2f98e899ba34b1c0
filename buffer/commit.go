// The committer: one goroutine that groups pending records into write
// transactions (group commit), and the transaction that applies a batch,
// the caps and the policies.

package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
)

// run is the committer.
func (o *Outbox) run() {
	defer close(o.exited)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	maint := time.NewTicker(o.cfg.MaintainEvery)
	defer maint.Stop()
	for {
		o.mu.Lock()
		n := len(o.pending)
		urgent := o.closing || o.processed < o.flushTo
		delay := o.cfg.CommitDelay
		if o.waiting > 0 {
			delay = o.cfg.AppendDelay
		}
		wait := delay - time.Since(o.firstAt)
		closing := o.closing
		o.mu.Unlock()
		switch {
		case n == 0 && closing:
			return
		case n == 0:
			select {
			case <-o.wake:
			case <-o.quit:
			case <-maint.C:
				o.maintain()
			}
			continue
		case n < o.cfg.CommitMax && !urgent && wait > 0:
			timer.Reset(wait)
			select {
			case <-o.wake:
			case <-o.quit:
			case <-timer.C:
			case <-maint.C:
				o.maintain()
			}
			timer.Stop()
			continue
		}
		o.commitPending(false)
	}
}

func (o *Outbox) maintain() {
	if err := o.Maintain(); err != nil {
		o.logger.Warn("outbox maintenance failed", "err", err)
	}
}

// takeBatchLocked moves the next batch (up to CommitMax records, never
// splitting one Append) from pending into o.batch / o.batchBuf.
func (o *Outbox) takeBatchLocked(all bool) {
	n := len(o.pending)
	if !all && n > o.cfg.CommitMax {
		n = o.cfg.CommitMax
		for n < len(o.pending) && o.pending[n].w != nil && o.pending[n].w == o.pending[n-1].w {
			n++
		}
	}
	for _, it := range o.pending[:n] {
		if it.w != nil {
			o.waiting--
		}
	}
	if n == len(o.pending) {
		o.batch, o.pending = o.pending, o.batch[:0]
		o.batchBuf, o.arena = o.arena, o.batchBuf[:0]
		return
	}
	// Partial: copy the batch out, keep the rest in place (rebased).
	o.batch = append(o.batch[:0], o.pending[:n]...)
	end := o.pending[n].off
	o.batchBuf = append(o.batchBuf[:0], o.arena[:end]...)
	rest := copy(o.pending, o.pending[n:])
	o.pending = o.pending[:rest]
	for i := range o.pending {
		o.pending[i].off -= end
	}
	m := copy(o.arena, o.arena[end:])
	o.arena = o.arena[:m]
	// firstAt stays: the rest has waited since then, too.
}

// commitPending commits one batch of pending records, or all of them.
func (o *Outbox) commitPending(all bool) {
	o.wmu.Lock()
	defer o.wmu.Unlock()
	o.mu.Lock()
	o.takeBatchLocked(all)
	o.mu.Unlock()
	if len(o.batch) == 0 {
		return
	}
	o.writeLocked(o.batch, o.batchBuf, nil)
	o.releaseBatch()
}

// releaseBatch drops the committed batch's buffers if a burst made them
// large, so memory goes back down after it.
func (o *Outbox) releaseBatch() {
	clear(o.batch) // drop the waiter pointers
	if cap(o.batchBuf) > 4<<20 {
		o.batchBuf = nil
	}
	if cap(o.batch) > 64<<10 {
		o.batch = nil
	}
}

// counts of one commit per lane
type laneCommit struct {
	records int
	lastSeq uint64
	// bytes of the records that entered from pending (to release the
	// reservation)
	pendCount, pendBytes int64
}

// writeLocked runs one write transaction (wmu held): the batch items, then
// extra (Update's function), then the caps. It reports the outcome to
// the items' waiters and updates the lane state.
func (o *Outbox) writeLocked(batch []item, buf []byte, extra func(tx *bbolt.Tx, w *txWriter) error) error {
	now := o.opts.now()
	var lc [numLanes]laneCommit
	for _, it := range batch {
		c := &lc[it.lane]
		c.pendCount++
		c.pendBytes += int64(it.n) + 8
	}
	var state [numLanes]laneState
	var w *txWriter
	attempt := func() error {
		o.mu.Lock()
		for l := range state {
			state[l] = o.lanes[l]
		}
		o.mu.Unlock()
		for l := range lc {
			lc[l].records, lc[l].lastSeq = 0, 0
		}
		w = &txWriter{o: o, now: now, state: &state, lc: &lc}
		o.dbMu.RLock()
		defer o.dbMu.RUnlock()
		return o.db.Update(func(tx *bbolt.Tx) error {
			o.countWrite(tx)
			w.tx = tx
			if err := w.putBatch(batch, buf); err != nil {
				return err
			}
			if extra != nil {
				if err := extra(tx, w); err != nil {
					w.extraErr = err
					return err
				}
			}
			return w.enforce()
		})
	}
	start := time.Now()
	err := attempt()
	if err != nil && isDiskFull(err) && len(batch) > 0 && o.makeRoom(batch, now) {
		// The lanes' policies freed pages: try once more.
		err = attempt()
	}
	lat := time.Since(start)

	var records int
	for l := range lc {
		records += lc[l].records
	}
	var enq int
	for _, it := range batch {
		if it.w == nil {
			enq++
		}
	}
	if err != nil && w.extraErr != nil && errors.Is(err, w.extraErr) {
		// Update's function failed: nothing of it was written.
	} else if err != nil {
		o.st.commitErrors.Add(1)
		reason := reasonWriteError
		if isDiskFull(err) {
			reason = reasonDiskFull
			err = fmt.Errorf("%w: %w", ErrDiskFull, err)
		} else {
			err = fmt.Errorf("buffer: commit: %w", err)
		}
		for _, it := range batch {
			if it.w == nil {
				o.st.drop(it.lane, reason, 1)
			}
		}
		o.logger.Error("outbox commit failed", "records", len(batch), "dropped_enqueued", enq, "err", err)
	} else {
		o.st.commits.Add(1)
		o.st.commitRecords.Add(uint64(records))
		o.st.commitNanos.Add(uint64(lat))
		o.st.lastCommitRecords.Store(uint64(records))
		o.st.hist.observe(lat, uint64(records))
		o.st.lastCommitNanos.Store(uint64(lat))
		if uint64(lat) > o.st.maxCommitNanos.Load() {
			o.st.maxCommitNanos.Store(uint64(lat))
		}
		w.applyCounters()
		if o.logger.Enabled(context.Background(), slog.LevelDebug) {
			for _, l := range Lanes {
				if c := lc[l]; c.records > 0 {
					o.logger.Debug("outbox commit", "lane", l.String(), "last_seq", c.lastSeq, "records", c.records)
				}
			}
		}
		if records > 0 || w.rolledOutAny() {
			o.signalSubscribers()
		}
	}
	o.mu.Lock()
	for l := range lc {
		ls := &o.lanes[l]
		ls.pendCount -= lc[l].pendCount
		ls.pendBytes -= lc[l].pendBytes
		if err == nil {
			ls.count = state[l].count
			ls.bytes = state[l].bytes
		}
	}
	o.processed += uint64(len(batch))
	o.changedLocked()
	o.mu.Unlock()

	// Wake the waiters (each Append's items are contiguous).
	var prev *waiter
	for _, it := range batch {
		if it.w != nil && it.w != prev {
			it.w.done <- err
			prev = it.w
		}
	}
	for range enq {
		<-o.slots
	}
	return err
}

// makeRoom applies the lanes' policies when a commit found the disk (or
// MaxFileSize) full: lanes of equal or lower priority than the batch's,
// lowest priority first, give about as many bytes as the batch needs (see
// txWriter.relieve: roll-up, then the oldest records; alerts last), in a
// transaction of their own (counted, reason "disk_full"). It reports
// whether anything was freed.
func (o *Outbox) makeRoom(batch []item, now time.Time) bool {
	var need int64
	minLane := LaneDead
	for _, it := range batch {
		need += int64(it.n) + 8
		minLane = min(minLane, it.lane)
	}
	// Page overhead: free at least a few pages' worth.
	need = need*2 + 64<<10
	var state [numLanes]laneState
	o.mu.Lock()
	state = o.lanes
	o.mu.Unlock()
	var lc [numLanes]laneCommit
	w := &txWriter{o: o, now: now, state: &state, lc: &lc}
	freedAny := false
	o.dbMu.RLock()
	err := o.db.Update(func(tx *bbolt.Tx) error {
		o.countWrite(tx)
		w.tx = tx
		freed, err := w.relieve(need, minLane, reasonDiskFull)
		freedAny = freed > 0
		return err
	})
	o.dbMu.RUnlock()
	if err != nil || !freedAny {
		return false
	}
	o.mu.Lock()
	for l := range state {
		o.lanes[l].count = state[l].count
		o.lanes[l].bytes = state[l].bytes
	}
	o.mu.Unlock()
	w.applyCounters()
	o.logger.Warn("outbox: disk full, rolled up or dropped the oldest records of lower-priority lanes", "need_bytes", need)
	return true
}

// diskFree is the free space of the file's disk, checked at most every
// 100ms (it costs a system call).
func (o *Outbox) diskFree() int64 {
	now := time.Now().UnixNano()
	if now-o.diskCheckedAt.Load() < int64(100*time.Millisecond) {
		return o.diskFreeBytes.Load()
	}
	d := diskFree(filepath.Dir(o.path))
	o.diskFreeBytes.Store(d)
	o.diskCheckedAt.Store(now)
	return d
}

func isDiskFull(err error) bool {
	return errors.Is(err, errMaxSize) || errors.Is(err, errNoSpace)
}

// counters are the outbox's monotonic counters.
type counters struct {
	commits, commitRecords, commitNanos              atomic.Uint64
	lastCommitRecords, lastCommitNanos               atomic.Uint64
	maxCommitNanos                                   atomic.Uint64
	commitErrors                                     atomic.Uint64
	writeTxs, bytesWritten, stateChanges, stateFolds atomic.Uint64
	compactions, compactErrors                       atomic.Uint64
	quarantined                                      atomic.Uint64
	quarantinedAs                                    atomic.Pointer[string]
	lanes                                            [numLanes]laneCounters
	hist                                             histograms
}

type laneCounters struct {
	appended, acked, rolledIn, rolledOut atomic.Uint64
	dropped                              [numReasons]atomic.Uint64
}

func (c *counters) drop(l Lane, r dropReason, n uint64) {
	c.lanes[l].dropped[r].Add(n)
}
