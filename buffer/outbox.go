package buffer

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
)

// Named errors callers branch on.
var (
	// ErrFull is returned by Append, Enqueue and Update's put when a lane
	// with the reject policy (or the total cap, when nothing may be evicted)
	// has no room, and wrapped by errors about a full disk.
	ErrFull = errors.New("buffer: outbox full")
	// ErrDiskFull (which wraps ErrFull) is wrapped by the errors of
	// commits that failed because the disk or the file's MaxFileSize is
	// full.
	ErrDiskFull = fmt.Errorf("%w: disk full", ErrFull)
	// ErrClosed is returned by calls on a closed outbox.
	ErrClosed = errors.New("buffer: outbox closed")
)

// item is one pending record: its value (header space + payload) lives in
// the pending arena at [off, off+n).
type item struct {
	lane Lane
	off  int
	n    int
	w    *waiter // nil for Enqueue
}

type waiter struct{ done chan error }

var waiterPool = sync.Pool{New: func() any { return &waiter{done: make(chan error, 1)} }}

// laneState is the in-memory picture of one lane, kept by the writers.
type laneState struct {
	count, bytes         int64 // committed
	pendCount, pendBytes int64 // enqueued, not yet committed
}

// Outbox is the durable, lane-prioritised record store between the
// pipeline and the uplinks. See the package documentation.
type Outbox struct {
	cfg    Config
	path   string
	logger *slog.Logger
	epoch  string

	// dbMu guards the db pointer, which compaction swaps: every use holds
	// it shared, compaction exclusively.
	dbMu sync.RWMutex
	db   *bbolt.DB
	// wmu serialises write transactions and the in-memory lane state
	// they change.
	wmu sync.Mutex

	mu        sync.Mutex // guards the fields below
	pending   []item
	arena     []byte // values of pending items
	firstAt   time.Time
	waiting   int    // pending items of Append calls
	enqueued  uint64 // records ever accepted into pending
	processed uint64 // records of pending ever committed or dropped
	flushTo   uint64 // commit without waiting while processed < flushTo
	doneCh    chan struct{}
	closing   bool
	lanes     [numLanes]laneState

	slots  chan struct{} // Enqueue's queue tokens
	wake   chan struct{}
	notify chan struct{}
	// subs are the Subscribe channels, each signalled like notify.
	subsMu sync.Mutex
	subs   map[chan struct{}]struct{}
	quit   chan struct{}
	exited chan struct{}

	// committer-owned scratch
	batch    []item
	batchBuf []byte
	keys     []byte

	st counters

	diskCheckedAt, diskFreeBytes atomic.Int64
}

// Open opens (creating it if needed) the outbox file at path, or at
// cfg.Path when path is empty, and starts the committer. cfg's zero fields
// get their defaults. A corrupt or unreadable file is moved aside (see the
// package documentation) and a fresh outbox started; only errors such as a
// lock held by another process or a missing permission are returned.
func Open(path string, cfg Config, logger *slog.Logger) (*Outbox, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("buffer: config: %w", err)
	}
	if path == "" {
		path = cfg.Path
	}
	if path == "" {
		return nil, errors.New("buffer: open: no path")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := &Outbox{
		cfg:    cfg,
		path:   path,
		logger: logger,
		doneCh: make(chan struct{}),
		slots:  make(chan struct{}, cfg.QueueMax),
		wake:   make(chan struct{}, 1),
		notify: make(chan struct{}, 1),
		subs:   map[chan struct{}]struct{}{},
		quit:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("buffer: open %s: %w", path, err)
	}
	os.Remove(path + compactSuffix) // a compaction cut short by a crash
	if err := o.openFile(); err != nil {
		return nil, err
	}
	go o.run()
	return o, nil
}

// openFile validates, quarantines if needed, opens and initialises the file.
func (o *Outbox) openFile() error {
	for attempt := 0; ; attempt++ {
		scan, err := scanFile(o.path, &o.cfg)
		var db *bbolt.DB
		if err == nil || errors.Is(err, os.ErrNotExist) {
			db, err = openWritable(o.path, &o.cfg)
		}
		if err == nil {
			err = o.init(db, scan)
			if err != nil {
				db.Close()
			}
		}
		if err == nil {
			return nil
		}
		if !isCorruption(err) || attempt > 0 {
			return fmt.Errorf("buffer: open %s: %w", o.path, err)
		}
		dst, qerr := quarantine(o.path, o.cfg.now())
		if qerr != nil {
			return fmt.Errorf("buffer: open %s: %w (moving it aside failed: %w)", o.path, err, qerr)
		}
		o.st.quarantined.Add(1)
		o.st.quarantinedAs.Store(&dst)
		o.logger.Error("outbox file unreadable: moved aside, starting a fresh outbox", "path", o.path, "moved_to", dst, "err", err)
	}
}

// openWritable opens the file read-write; bbolt's freelist rebuild panics
// on some damaged files, which becomes an error here.
func openWritable(path string, cfg *Config) (db *bbolt.DB, err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	return bbolt.Open(path, 0o600, boltOptions(cfg, false))
}

func (o *Outbox) init(db *bbolt.DB, scan [numLanes]laneScan) error {
	err := db.Update(func(tx *bbolt.Tx) error {
		m, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		if e := m.Get(epochKey); len(e) > 0 {
			o.epoch = string(e)
		} else {
			var b [8]byte
			if _, err := rand.Read(b[:]); err != nil {
				return err
			}
			o.epoch = hex.EncodeToString(b[:])
			if err := m.Put(epochKey, []byte(o.epoch)); err != nil {
				return err
			}
		}
		for _, l := range Lanes {
			b, err := tx.CreateBucketIfNotExists(laneBuckets[l])
			if err != nil {
				return err
			}
			// A sequence behind the stored records (a damaged bucket
			// header) would hand out seqs and ids twice.
			if last := scan[l].last; b.Sequence() < last {
				o.logger.Warn("outbox lane sequence behind its records; repaired", "lane", l.String(), "sequence", b.Sequence(), "last_seq", last)
				if err := b.SetSequence(last); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	o.db = db
	for _, l := range Lanes {
		o.lanes[l].count = scan[l].count
		o.lanes[l].bytes = scan[l].bytes
	}
	return nil
}

// Epoch returns the file's random epoch, the first part of every Record.ID.
func (o *Outbox) Epoch() string { return o.epoch }

// Path returns the file's path.
func (o *Outbox) Path() string { return o.path }

func checkLane(lane Lane) error {
	if lane >= numLanes {
		return fmt.Errorf("buffer: unknown lane %d", lane)
	}
	return nil
}

// Enqueue queues payload for lane and returns without waiting for the
// commit; Flush (or Append) tells when it is durable. It copies payload,
// so the caller may reuse it. When QueueMax records are pending it blocks
// until there is room or ctx is done: backpressure. A lane with the reject
// policy that has no room returns ErrFull (counted, reason "full").
func (o *Outbox) Enqueue(ctx context.Context, lane Lane, payload []byte) error {
	if err := checkLane(lane); err != nil {
		return err
	}
	select {
	case o.slots <- struct{}{}:
	default:
		select {
		case o.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		case <-o.quit:
			return ErrClosed
		}
	}
	o.mu.Lock()
	if o.closing {
		o.mu.Unlock()
		<-o.slots
		return ErrClosed
	}
	size := int64(len(payload)) + recordOverhead
	if err := o.admitLocked(lane, size, size); err != nil {
		o.mu.Unlock()
		<-o.slots
		o.st.drop(lane, reasonFull, 1)
		return err
	}
	o.pushLocked(lane, payload, nil)
	o.mu.Unlock()
	return nil
}

// Append stores payloads in lane and returns once they are durable
// (committed and fsynced), all or none. It copies the payloads. Appends
// of all producers are group-committed (see Config.CommitDelay). If ctx
// is done first, Append returns ctx.Err() and the records may or may not
// be committed later.
func (o *Outbox) Append(ctx context.Context, lane Lane, payloads ...[]byte) error {
	if err := checkLane(lane); err != nil {
		return err
	}
	if len(payloads) == 0 {
		return nil
	}
	var total, largest int64
	for _, p := range payloads {
		s := int64(len(p)) + recordOverhead
		total += s
		largest = max(largest, s)
	}
	w := waiterPool.Get().(*waiter)
	o.mu.Lock()
	if o.closing {
		o.mu.Unlock()
		waiterPool.Put(w)
		return ErrClosed
	}
	if err := o.admitLocked(lane, total, largest); err != nil {
		o.mu.Unlock()
		waiterPool.Put(w)
		o.st.drop(lane, reasonFull, uint64(len(payloads)))
		return err
	}
	for _, p := range payloads {
		o.pushLocked(lane, p, w)
	}
	o.mu.Unlock()
	select {
	case err := <-w.done:
		waiterPool.Put(w)
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// admitLocked applies admit to the current lane state.
func (o *Outbox) admitLocked(lane Lane, total, largest int64) error {
	return admit(&o.cfg, &o.lanes, lane, total, largest)
}

func (o *Outbox) pushLocked(lane Lane, payload []byte, w *waiter) {
	off := len(o.arena)
	o.arena = append(o.arena, 0, 0, 0, 0, 0, 0, 0, 0)
	o.arena = append(o.arena, payload...)
	if len(o.pending) == 0 {
		o.firstAt = time.Now()
		o.signal()
	}
	if w != nil {
		if o.waiting == 0 {
			o.signal() // the batch's delay changes
		}
		o.waiting++
	}
	o.pending = append(o.pending, item{lane: lane, off: off, n: valueHeader + len(payload), w: w})
	if len(o.pending) == o.cfg.CommitMax {
		o.signal()
	}
	ls := &o.lanes[lane]
	ls.pendCount++
	ls.pendBytes += int64(len(payload)) + recordOverhead
	o.enqueued++
}

func (o *Outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Flush waits until every record enqueued before the call is committed
// (or dropped by a counted policy), committing at once instead of waiting
// for CommitDelay.
func (o *Outbox) Flush(ctx context.Context) error {
	o.mu.Lock()
	target := o.enqueued
	if o.flushTo < target {
		o.flushTo = target
	}
	o.mu.Unlock()
	o.signal()
	for {
		o.mu.Lock()
		done, ch := o.processed >= target, o.doneCh
		o.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-o.exited:
			o.mu.Lock()
			done = o.processed >= target
			o.mu.Unlock()
			if !done {
				return ErrClosed
			}
			return nil
		}
	}
}

// isClosed reports whether Close was called (dbMu held).
func (o *Outbox) isClosed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closing && o.closed()
}

// Notify returns a channel that receives (coalesced) after each commit
// that added records.
func (o *Outbox) Notify() <-chan struct{} { return o.notify }

// Subscribe returns a channel of its own that receives (coalesced, like
// Notify) after every commit that added records, and a function that ends
// the subscription. Notify's one channel wakes only one of several
// consumers per commit; every subscriber is woken, so several uplinks on one
// outbox each see new records at once instead of at their next poll.
func (o *Outbox) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	o.subsMu.Lock()
	o.subs[ch] = struct{}{}
	o.subsMu.Unlock()
	return ch, func() {
		o.subsMu.Lock()
		delete(o.subs, ch)
		o.subsMu.Unlock()
	}
}

func (o *Outbox) signalSubscribers() {
	o.subsMu.Lock()
	for ch := range o.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	o.subsMu.Unlock()
}

// Close commits what is pending, stops the committer and closes the file.
// Calling it again returns nil.
func (o *Outbox) Close() error {
	o.mu.Lock()
	if o.closing {
		o.mu.Unlock()
		<-o.exited
		return nil
	}
	o.closing = true
	close(o.quit)
	o.mu.Unlock()
	<-o.exited
	o.wmu.Lock()
	defer o.wmu.Unlock()
	o.dbMu.Lock()
	defer o.dbMu.Unlock()
	if err := o.db.Close(); err != nil {
		return fmt.Errorf("buffer: close: %w", err)
	}
	return nil
}

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
	now := o.cfg.now()
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
			select {
			case o.notify <- struct{}{}:
			default:
			}
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
	close(o.doneCh)
	o.doneCh = make(chan struct{})
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

// makeRoom applies the drop_oldest policy when a commit found the disk
// (or MaxFileSize) full: it deletes the oldest records of drop_oldest lanes
// of equal or lower priority than the batch's (lowest priority first),
// about as many bytes as the batch needs, in a transaction of their own
// (counted, reason "disk_full"). It reports whether anything was freed.
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
		w.tx = tx
		left := need
		for l := LaneDead; ; l-- {
			if o.cfg.Lanes.Lane(l).Policy == PolicyDropOldest && left > 0 {
				before := state[l].bytes
				var freed int64
				if err := w.dropHead(l, reasonDiskFull, func(_ int64, size int64) bool {
					if freed >= left {
						return false
					}
					freed += size
					return true
				}); err != nil {
					return err
				}
				left -= before - state[l].bytes
			}
			if l == minLane {
				break
			}
		}
		freedAny = left < need
		return nil
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
	o.logger.Warn("outbox: disk full, dropped the oldest records of drop_oldest lanes", "need_bytes", need)
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

// Read returns up to max records of lane with Seq > after, oldest first.
// The records stay in the outbox until acked.
func (o *Outbox) Read(lane Lane, after uint64, max int) ([]Record, error) {
	if err := checkLane(lane); err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, nil
	}
	var out []Record
	o.dbMu.RLock()
	defer o.dbMu.RUnlock()
	if o.isClosed() {
		return nil, ErrClosed
	}
	err := o.db.View(func(tx *bbolt.Tx) (err error) {
		out, err = readLane(tx, o.epoch, lane, after, max)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("buffer: read %s: %w", lane, err)
	}
	return out, nil
}

// Ack deletes the records of lane with the given seqs; unknown seqs are
// ignored. Only uplinks call it, after upstream confirmed delivery.
func (o *Outbox) Ack(lane Lane, seqs ...uint64) error {
	if err := checkLane(lane); err != nil {
		return err
	}
	if len(seqs) == 0 {
		return nil
	}
	o.wmu.Lock()
	defer o.wmu.Unlock()
	var n, freed int64
	o.dbMu.RLock()
	if o.isClosed() {
		o.dbMu.RUnlock()
		return ErrClosed
	}
	err := o.db.Update(func(tx *bbolt.Tx) error {
		n, freed = 0, 0
		b := tx.Bucket(laneBuckets[lane])
		if b == nil {
			return nil
		}
		var k [8]byte
		c := b.Cursor()
		for _, s := range seqs {
			binary.BigEndian.PutUint64(k[:], s)
			got, v := c.Seek(k[:])
			if got == nil || binary.BigEndian.Uint64(got) != s {
				continue
			}
			n++
			freed += int64(len(v)) + 8
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	o.dbMu.RUnlock()
	if err != nil {
		return fmt.Errorf("buffer: ack %s: %w", lane, err)
	}
	o.mu.Lock()
	o.lanes[lane].count -= n
	o.lanes[lane].bytes -= freed
	o.mu.Unlock()
	o.st.lanes[lane].acked.Add(uint64(n))
	return nil
}

// counters are the outbox's monotonic counters.
type counters struct {
	commits, commitRecords, commitNanos atomic.Uint64
	lastCommitRecords, lastCommitNanos  atomic.Uint64
	maxCommitNanos                      atomic.Uint64
	commitErrors                        atomic.Uint64
	compactions, compactErrors          atomic.Uint64
	quarantined                         atomic.Uint64
	quarantinedAs                       atomic.Pointer[string]
	lanes                               [numLanes]laneCounters
	hist                                histograms
}

type laneCounters struct {
	appended, acked, rolledIn, rolledOut atomic.Uint64
	dropped                              [numReasons]atomic.Uint64
}

func (c *counters) drop(l Lane, r dropReason, n uint64) {
	c.lanes[l].dropped[r].Add(n)
}

// ReadByPriority returns up to max records of the delivery lanes (alerts,
// summaries, raw; not dead) in priority order: all ready records of a
// lane before any of the next. after(l) is the last seq the caller has
// already taken from lane l (0 for none).
func (o *Outbox) ReadByPriority(after func(Lane) uint64, max int) ([]Record, error) {
	var out []Record
	for _, l := range Lanes {
		if l == LaneDead || len(out) >= max {
			break
		}
		var a uint64
		if after != nil {
			a = after(l)
		}
		recs, err := o.Read(l, a, max-len(out))
		if err != nil {
			return out, err
		}
		out = append(out, recs...)
	}
	return out, nil
}

// readLane reads up to max records of lane with Seq > after.
func readLane(tx *bbolt.Tx, epoch string, lane Lane, after uint64, max int) ([]Record, error) {
	var out []Record
	err := func() error {
		b := tx.Bucket(laneBuckets[lane])
		if b == nil {
			return nil
		}
		var start [8]byte
		binary.BigEndian.PutUint64(start[:], after+1)
		if after == ^uint64(0) {
			return nil
		}
		// First pass: size the payload arena.
		c := b.Cursor()
		n, size := 0, 0
		for k, v := c.Seek(start[:]); k != nil && n < max; k, v = c.Next() {
			n++
			size += len(v) - valueHeader
		}
		if n == 0 {
			return nil
		}
		arena := make([]byte, 0, size)
		out = make([]Record, 0, n)
		idPrefix := epoch + "-" + lane.String() + "-"
		id := make([]byte, 0, len(idPrefix)+20)
		for k, v := c.Seek(start[:]); k != nil && len(out) < n; k, v = c.Next() {
			if len(k) != 8 || len(v) < valueHeader {
				return fmt.Errorf("%w: lane %s: bad record %x", ErrCorrupt, lane, k)
			}
			seq := binary.BigEndian.Uint64(k)
			p0 := len(arena)
			arena = append(arena, v[valueHeader:]...)
			id = strconv.AppendUint(append(id[:0], idPrefix...), seq, 10)
			out = append(out, Record{
				Lane:    lane,
				Seq:     seq,
				ID:      string(id),
				Stored:  int64(binary.BigEndian.Uint64(v)),
				Payload: arena[p0:len(arena):len(arena)],
			})
		}
		return nil
	}()
	return out, err
}
