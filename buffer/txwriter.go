package buffer

import (
	"encoding/binary"
	"fmt"
	"syscall"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var (
	errMaxSize = berrors.ErrMaxSizeReached
	errNoSpace = syscall.ENOSPC
)

// dropReason says why records left the outbox without an ack.
type dropReason uint8

const (
	reasonCap        dropReason = iota // lane cap, drop_oldest
	reasonTotalCap                     // total cap, evicted from a lower lane
	reasonFull                         // refused with ErrFull
	reasonMaxAge                       // older than the lane's max_age
	reasonRolledUp                     // merged away by a roll-up
	reasonDiskFull                     // enqueued, lost to a full disk
	reasonWriteError                   // enqueued, lost to another write error
	numReasons
)

// DropReasons lists the reason labels Stats uses, in a stable order.
var DropReasons = [...]string{"cap", "total_cap", "full", "max_age", "rolled_up", "disk_full", "write_error"}

func (r dropReason) String() string { return DropReasons[r] }

// txWriter does the work of one write transaction and keeps its effects
// until the commit succeeded.
type txWriter struct {
	o     *Outbox
	tx    *bbolt.Tx
	now   time.Time
	state *[numLanes]laneState
	lc    *[numLanes]laneCommit

	touched   bool
	minLane   Lane
	drops     [numLanes][numReasons]uint64
	appended  [numLanes]uint64
	rolledIn  [numLanes]uint64
	rolledOut [numLanes]uint64
	extraErr  error
}

func (w *txWriter) bucket(l Lane) (*bbolt.Bucket, error) {
	b := w.tx.Bucket(laneBuckets[l])
	if b == nil {
		var err error
		if b, err = w.tx.CreateBucket(laneBuckets[l]); err != nil {
			return nil, err
		}
	}
	// Keys only ever grow: fill pages completely.
	b.FillPercent = 1.0
	return b, nil
}

func (w *txWriter) touch(l Lane) {
	if !w.touched || l < w.minLane {
		w.minLane = l
	}
	w.touched = true
}

// putBatch writes the pending items; their values in buf have room for
// the header at the front.
func (w *txWriter) putBatch(batch []item, buf []byte) error {
	if len(batch) == 0 {
		return nil
	}
	stamp := uint64(w.now.UnixNano())
	o := w.o
	if cap(o.keys) < 8*len(batch) {
		o.keys = make([]byte, 8*len(batch))
	}
	keys := o.keys[:8*len(batch)]
	var buckets [numLanes]*bbolt.Bucket
	var seqs [numLanes]uint64
	for i, it := range batch {
		b := buckets[it.lane]
		if b == nil {
			var err error
			if b, err = w.bucket(it.lane); err != nil {
				return err
			}
			buckets[it.lane] = b
			seqs[it.lane] = b.Sequence()
			w.touch(it.lane)
		}
		seqs[it.lane]++
		k := keys[8*i : 8*i+8 : 8*i+8]
		binary.BigEndian.PutUint64(k, seqs[it.lane])
		v := buf[it.off : it.off+it.n : it.off+it.n]
		binary.BigEndian.PutUint64(v, stamp)
		if err := b.Put(k, v); err != nil {
			return err
		}
		s := &w.state[it.lane]
		s.count++
		s.bytes += int64(it.n) + 8
		c := &w.lc[it.lane]
		c.records++
		c.lastSeq = seqs[it.lane]
		w.appended[it.lane]++
	}
	for l, b := range buckets {
		if b != nil {
			if err := b.SetSequence(seqs[l]); err != nil {
				return err
			}
		}
	}
	return nil
}

// put is Update's put function.
func (w *txWriter) put(lane Lane, payload []byte) error {
	if err := checkLane(lane); err != nil {
		return err
	}
	size := int64(len(payload)) + recordOverhead
	o := w.o
	o.mu.Lock()
	tmp := *w.state
	for l := range tmp {
		tmp[l].pendBytes = o.lanes[l].pendBytes
	}
	o.mu.Unlock()
	if err := admit(&o.cfg, &tmp, lane, size, size); err != nil {
		w.drops[lane][reasonFull]++
		return err
	}
	b, err := w.bucket(lane)
	if err != nil {
		return err
	}
	w.touch(lane)
	seq := b.Sequence() + 1
	if err := b.SetSequence(seq); err != nil {
		return err
	}
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+valueHeader+len(payload)), seq)
	v := binary.BigEndian.AppendUint64(k[8:], uint64(w.now.UnixNano()))
	v = append(v, payload...)
	if err := b.Put(k[:8], v); err != nil {
		return err
	}
	s := &w.state[lane]
	s.count++
	s.bytes += size
	w.lc[lane].records++
	w.lc[lane].lastSeq = seq
	w.appended[lane]++
	return nil
}

// enforce applies max ages and caps inside the transaction.
func (w *txWriter) enforce() error {
	cfg := &w.o.cfg
	for _, l := range Lanes {
		lc := cfg.Lanes.Lane(l)
		if lc.MaxAge > 0 {
			cutoff, known := w.now.Add(-lc.MaxAge).UnixNano(), w.o.opts.minTime()
			if err := w.dropHead(l, reasonMaxAge, func(stored int64, _ int64) bool { return stored < cutoff && stored >= known }); err != nil {
				return err
			}
		}
	}
	for _, l := range Lanes {
		lc := cfg.Lanes.Lane(l)
		if lc.MaxBytes > 0 && lc.Policy != PolicyReject && w.state[l].bytes > lc.MaxBytes {
			if err := w.evict(l, w.state[l].bytes-lc.MaxBytes, reasonCap); err != nil {
				return err
			}
		}
	}
	if !w.touched {
		return nil
	}
	if err := w.spacePressure(); err != nil {
		return err
	}
	total := func() int64 {
		var t int64
		for l := range w.state {
			t += w.state[l].bytes
		}
		return t
	}
	for l := LaneDead; l >= w.minLane && total() > cfg.MaxBytes; l-- {
		if cfg.Lanes.Lane(l).Policy == PolicyReject || w.state[l].bytes == 0 {
			if l == 0 {
				break
			}
			continue
		}
		if err := w.evict(l, total()-cfg.MaxBytes, reasonTotalCap); err != nil {
			return err
		}
		if l == 0 {
			break
		}
	}
	return nil
}

// diskHeadroom is the free disk space below which the outbox starts to
// apply drop_oldest before the disk is actually full (bbolt grows its file
// in steps of up to 16 MiB, and a transaction that cannot grow fails
// whole).
const diskHeadroom = 32 << 20

// spacePressure applies the drop_oldest policy early when the file is
// close to MaxFileSize or the disk close to full, counting reason
// "disk_full": the transaction then frees as many bytes as it adds (twice
// as many), so the file stops growing while the backlog churns through
// the freed pages. Deleting only once the disk is full would fail: even a
// delete needs a few new pages.
func (w *txWriter) spacePressure() error {
	cfg := &w.o.cfg
	db := w.tx.DB()
	free := int64(db.Stats().FreePageN) * int64(db.Info().PageSize)
	fileRoom := cfg.MaxFileSize - w.tx.Size()
	headroom := max(cfg.MaxFileSize/16, 128<<10)
	pressure := fileRoom+free < headroom
	if !pressure {
		if d := w.o.diskFree(); d >= 0 && d+free < diskHeadroom {
			pressure = true
		}
	}
	if !pressure {
		return nil
	}
	var added int64
	for l := range w.lc {
		added += w.lc[l].pendBytes
	}
	need := 2*added + int64(db.Info().PageSize)
	_, err := w.relieve(need, w.minLane, reasonDiskFull)
	return err
}

// relieve frees about need bytes when space is short, lane by lane from the
// lowest priority (dead letters, raw) up to minLane: every drop_oldest and
// rollup lane loses its oldest records; a reject lane keeps everything. So
// summaries go before any alert, and alerts are the last to go. No lane loses a record written in
// this transaction: freeing room by deleting what the commit was asked to
// store would only hide the loss (the commit then fails, counted as
// disk_full, and the producer is told). It returns the bytes freed.
func (w *txWriter) relieve(need int64, minLane Lane, reason dropReason) (int64, error) {
	cfg := &w.o.cfg
	start := need
	for l := LaneDead; need > 0; l-- {
		before := w.state[l].bytes
		switch cfg.Lanes.Lane(l).Policy {
		case PolicyRollUp, PolicyDropOldest:
			// A roll-up writes its merged records before the pages of its
			// inputs can be reused (bbolt frees them at the commit), so on
			// a full disk it only makes things worse: the rollup lane loses
			// its oldest instead (its caps still roll up).
			droppable := w.state[l].count - int64(w.appended[l])
			var freed int64
			if err := w.dropHead(l, reason, func(_ int64, size int64) bool {
				if freed >= need || droppable <= 0 {
					return false
				}
				droppable--
				freed += size
				return true
			}); err != nil {
				return start - need, err
			}
			need -= before - w.state[l].bytes
		}
		if l == minLane {
			break
		}
	}
	return start - need, nil
}

// evict frees at least need bytes from lane l by its policy.
func (w *txWriter) evict(l Lane, need int64, reason dropReason) error {
	cfg := &w.o.cfg
	if cfg.Lanes.Lane(l).Policy == PolicyRollUp && w.o.opts.RollUp != nil {
		freed, err := w.rollUp(l, need)
		if err != nil {
			return err
		}
		need -= freed
		if need <= 0 {
			return nil
		}
	}
	var freed int64
	return w.dropHead(l, reason, func(_ int64, size int64) bool {
		if freed >= need {
			return false
		}
		freed += size
		return true
	})
}

// dropHead deletes lane l's oldest records while drop says so.
func (w *txWriter) dropHead(l Lane, reason dropReason, drop func(stored, size int64) bool) error {
	b, err := w.bucket(l)
	if err != nil {
		return err
	}
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.First() {
		if len(v) < valueHeader {
			return fmt.Errorf("%w: lane %s: bad record %x", ErrCorrupt, l, k)
		}
		size := int64(len(v)) + 8
		if !drop(int64(binary.BigEndian.Uint64(v)), size) {
			break
		}
		if err := c.Delete(); err != nil {
			return err
		}
		w.state[l].count--
		w.state[l].bytes -= size
		w.drops[l][reason]++
	}
	return nil
}

// maxRollUpBatch bounds the adaptive growth of a roll-up batch (memory:
// the payloads are copied out of the file).
const maxRollUpBatch = 16384

// rollUp merges lane l's oldest records, RollUpBatch at a time, with the
// configured hook, until need bytes are freed or no progress is made. When
// a batch does not shrink (say its records are all of one window, one per
// sensor, with nothing adjacent to merge), it is doubled, up to
// maxRollUpBatch, before giving up. The merged records are appended at the
// lane's tail with fresh seqs (so an uplink's later ack of an original seq
// cannot delete them) and keep the oldest input's store time (so max_age
// still applies).
func (w *txWriter) rollUp(l Lane, need int64) (int64, error) {
	cfg := &w.o.cfg
	batchMax := cfg.Lanes.Lane(l).RollUpBatch
	b, err := w.bucket(l)
	if err != nil {
		return 0, err
	}
	tail := b.Sequence() // only records older than this round's outputs
	var freed int64
	for freed < need {
		var (
			payloads [][]byte
			keys     [][]byte
			inBytes  int64
			oldest   int64
			more     bool // records beyond the batch remain
		)
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if binary.BigEndian.Uint64(k) > tail {
				break
			}
			if len(payloads) == batchMax {
				more = true
				break
			}
			if len(v) < valueHeader {
				return freed, fmt.Errorf("%w: lane %s: bad record %x", ErrCorrupt, l, k)
			}
			st := int64(binary.BigEndian.Uint64(v))
			if len(payloads) == 0 || st < oldest {
				oldest = st
			}
			payloads = append(payloads, append([]byte(nil), v[valueHeader:]...))
			keys = append(keys, append([]byte(nil), k...))
			inBytes += int64(len(v)) + 8
		}
		if len(payloads) < 2 {
			return freed, nil
		}
		out, err := safeRollUp(w.o.opts.RollUp, payloads)
		var outBytes int64
		for _, p := range out {
			outBytes += int64(len(p)) + recordOverhead
		}
		if err == nil && (len(out) >= len(payloads) || outBytes >= inBytes) && more && batchMax < maxRollUpBatch {
			batchMax = min(2*batchMax, maxRollUpBatch)
			continue
		}
		if err != nil || len(out) >= len(payloads) || outBytes >= inBytes {
			w.o.logger.Warn("outbox roll-up made no room; dropping oldest instead", "lane", l.String(), "in", len(payloads), "out", len(out), "err", err)
			return freed, nil
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return freed, err
			}
		}
		seq := b.Sequence()
		for _, p := range out {
			seq++
			k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+valueHeader+len(p)), seq)
			v := append(binary.BigEndian.AppendUint64(k[8:], uint64(oldest)), p...)
			if err := b.Put(k[:8], v); err != nil {
				return freed, err
			}
		}
		if err := b.SetSequence(seq); err != nil {
			return freed, err
		}
		s := &w.state[l]
		s.count += int64(len(out) - len(payloads))
		s.bytes += outBytes - inBytes
		w.rolledIn[l] += uint64(len(payloads))
		w.rolledOut[l] += uint64(len(out))
		w.drops[l][reasonRolledUp] += uint64(len(payloads) - len(out))
		freed += inBytes - outBytes
		w.o.logger.Debug("outbox rollup", "lane", l.String(), "in", len(payloads), "out", len(out), "last_seq", seq)
	}
	return freed, nil
}

// safeRollUp calls the hook, turning a panic into an error: a bad hook
// must not take the committer (and the gateway) down.
func safeRollUp(fn func([][]byte) ([][]byte, error), payloads [][]byte) (out [][]byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("buffer: roll-up hook panicked: %v", r)
		}
	}()
	return fn(payloads)
}

func (w *txWriter) rolledOutAny() bool {
	for _, n := range w.rolledOut {
		if n > 0 {
			return true
		}
	}
	return false
}

// applyCounters publishes the transaction's counts after its commit.
func (w *txWriter) applyCounters() {
	st := &w.o.st
	for l := range w.drops {
		for r, n := range w.drops[l] {
			if n > 0 {
				st.lanes[l].dropped[r].Add(n)
			}
		}
		st.lanes[l].appended.Add(w.appended[l])
		st.lanes[l].rolledIn.Add(w.rolledIn[l])
		st.lanes[l].rolledOut.Add(w.rolledOut[l])
	}
}

// admit decides whether records of total bytes (the largest of them
// largest) may enter lane given the lanes' committed and pending bytes:
// the reject policy and the total cap.
func admit(cfg *Config, lanes *[numLanes]laneState, lane Lane, total, largest int64) error {
	lc := cfg.Lanes.Lane(lane)
	ls := &lanes[lane]
	if lc.MaxBytes > 0 && largest > lc.MaxBytes || largest > cfg.MaxBytes {
		return fmt.Errorf("%w: a record of %d bytes is larger than the %s lane's cap", ErrFull, largest, lane)
	}
	if lc.Policy == PolicyReject && lc.MaxBytes > 0 && ls.bytes+ls.pendBytes+total > lc.MaxBytes {
		return fmt.Errorf("%w: lane %s at its cap of %d bytes", ErrFull, lane, lc.MaxBytes)
	}
	var used, evictable int64
	for _, l := range Lanes {
		s := &lanes[l]
		used += s.bytes + s.pendBytes
		if l >= lane && cfg.Lanes.Lane(l).Policy != PolicyReject {
			evictable += s.bytes + s.pendBytes
		}
	}
	if used+total > cfg.MaxBytes && used+total-evictable > cfg.MaxBytes {
		return fmt.Errorf("%w: total cap of %d bytes reached and lane %s may not evict", ErrFull, cfg.MaxBytes, lane)
	}
	return nil
}
