package buffer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"github.com/sensorgate/sensorgate/ingest"
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
	// ErrLocked is wrapped by the errors of Open and the offline tools
	// (Inspect, Peek, Check, CompactFile) when another process holds the
	// file's lock, most likely a running gateway; they give up after 2s.
	ErrLocked = errors.New("buffer: outbox file locked by another process")
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
	opts   Options
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
	// changed is closed (and replaced) after every commit and every ack:
	// Flush and Drained wait on it instead of polling.
	changed chan struct{}
	closing bool
	lanes   [numLanes]laneState

	slots chan struct{} // Enqueue's queue tokens
	wake  chan struct{}
	// subs are the Subscribe channels, each signalled after a commit that
	// added records.
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

	stateLog stateLogSize // the state log's size (see state.go); wmu

}

// Open opens (creating it if needed) the outbox file at cfg.Path and
// starts the committer. cfg's zero fields get their defaults. A corrupt
// file is moved aside and a fresh outbox started; any other failure (a
// lock, [ErrLocked]; ENOMEM, EIO, EROFS; [ErrRefused]) is returned and
// leaves the file as it is (see the package documentation).
func Open(cfg Config, opts Options) (*Outbox, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("buffer: config: %w", err)
	}
	for _, l := range Lanes {
		if cfg.Lanes.Lane(l).Policy == PolicyRollUp && opts.RollUp == nil {
			return nil, fmt.Errorf("buffer: config: %w", ingest.FieldErrorf("lanes."+l.String()+".policy", "rollup needs Options.RollUp (set by the command)"))
		}
	}
	path := cfg.Path
	if path == "" {
		return nil, errors.New("buffer: open: no path")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := &Outbox{
		cfg:     cfg,
		opts:    opts,
		path:    path,
		logger:  logger,
		changed: make(chan struct{}),
		slots:   make(chan struct{}, cfg.QueueMax),
		wake:    make(chan struct{}, 1),
		subs:    map[chan struct{}]struct{}{},
		quit:    make(chan struct{}),
		exited:  make(chan struct{}),
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
		if !isCorruption(err) {
			return openError(o.path, err)
		} else if attempt > 0 {
			return fmt.Errorf("buffer: open %s: %w", o.path, err)
		}
		dst, qerr := quarantine(o.path, o.opts.now())
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
	return openBolt(path, boltOptions(cfg, false))
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
		done, ch := o.processed >= target, o.changed
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

// Drained waits until the outbox holds nothing left to deliver: no record
// waiting for its commit, and the alerts, summaries and raw lanes empty
// (the dead lane is kept for inspection, never delivered). Every commit
// and every Ack wakes it, so it returns as soon as the last record is
// acked. It returns ctx.Err() when ctx is done first and ErrClosed when
// the outbox closes first. A clean stop uses it to give the uplinks a
// grace period that ends early once they have caught up.
func (o *Outbox) Drained(ctx context.Context) error {
	for {
		o.mu.Lock()
		done, ch := o.drainedLocked(), o.changed
		o.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-o.quit:
			return ErrClosed
		}
	}
}

// drainedLocked reports whether nothing is left to deliver. It counts
// reserved records (pendCount) rather than the pending queue, which the
// committer empties before its transaction commits: a batch in flight is
// not yet in its lane.
func (o *Outbox) drainedLocked() bool {
	for _, l := range Lanes {
		ls := &o.lanes[l]
		if ls.pendCount > 0 || (l != LaneDead && ls.count > 0) {
			return false
		}
	}
	return true
}

// changedLocked wakes Flush and Drained (mu held).
func (o *Outbox) changedLocked() {
	close(o.changed)
	o.changed = make(chan struct{})
}

// isClosed reports whether Close was called (dbMu held).
func (o *Outbox) isClosed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closing && o.closed()
}

// Subscribe returns a channel of its own that receives (coalesced) after
// every commit that added records, and a function that ends the
// subscription. Every subscriber is woken, so several uplinks on one outbox
// each see new records at once instead of at their next poll (one shared
// channel would wake only one of them per commit).
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
