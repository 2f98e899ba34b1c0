package buffer

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"go.etcd.io/bbolt"
)

const compactSuffix = ".compact"

// Update runs fn in one write transaction of the outbox's bbolt file, so
// that other buckets of the same file (the ingest journal) change in the
// same transaction as the records fn puts into the outbox: both commit,
// or neither does. Records enqueued before the call are committed first,
// so lane order is kept. put follows the same rules as Append (ErrFull for
// a reject lane without room; caps and max ages apply at the end of the
// transaction).
//
// fn must not touch the outbox's own buckets ("meta" and "lane.*"), must
// not keep tx or put after it returns, and must not call other Outbox
// methods (it runs under the outbox's write lock). If fn returns an error
// the transaction is rolled back and Update returns that error.
func (o *Outbox) Update(fn func(tx *bbolt.Tx, put func(lane Lane, payload []byte) error) error) error {
	o.mu.Lock()
	closing := o.closing
	o.mu.Unlock()
	if closing {
		return ErrClosed
	}
	o.wmu.Lock()
	defer o.wmu.Unlock()
	o.mu.Lock()
	o.takeBatchLocked(true)
	o.mu.Unlock()
	if len(o.batch) > 0 {
		o.writeLocked(o.batch, o.batchBuf, nil)
		o.releaseBatch()
	}
	return o.writeLocked(nil, nil, func(tx *bbolt.Tx, w *txWriter) error {
		return fn(tx, w.put)
	})
}

// Maintain applies the lanes' max ages and compacts the file when it is
// mostly free space (see Config.CompactMinSize). The committer calls it
// every MaintainEvery; tests and tools may call it directly.
func (o *Outbox) Maintain() error {
	o.wmu.Lock()
	defer o.wmu.Unlock()
	if o.wasClosed() {
		return ErrClosed
	}
	if o.expired() {
		if err := o.writeLocked(nil, nil, nil); err != nil {
			return err
		}
	}
	if o.cfg.CompactMinSize < 0 {
		return nil
	}
	size, live := o.fileSize(), o.liveBytes()
	if size > o.cfg.CompactMinSize && live*4 < size {
		return o.compactLocked()
	}
	return nil
}

// expired reports whether some lane's oldest record is past its max age.
func (o *Outbox) expired() bool {
	now := o.opts.now()
	found := false
	o.dbMu.RLock()
	defer o.dbMu.RUnlock()
	o.db.View(func(tx *bbolt.Tx) error {
		for _, l := range Lanes {
			lc := o.cfg.Lanes.Lane(l)
			if lc.MaxAge <= 0 {
				continue
			}
			if b := tx.Bucket(laneBuckets[l]); b != nil {
				if _, v := b.Cursor().First(); len(v) >= valueHeader && int64(binary.BigEndian.Uint64(v)) < now.Add(-lc.MaxAge).UnixNano() &&
					int64(binary.BigEndian.Uint64(v)) >= o.opts.minTime() {
					found = true
				}
			}
		}
		return nil
	})
	return found
}

func (o *Outbox) fileSize() int64 {
	fi, err := os.Stat(o.path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func (o *Outbox) liveBytes() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	var t int64
	for l := range o.lanes {
		t += o.lanes[l].bytes
	}
	return t
}

// Compact rewrites the file without its free pages, giving disk space back
// after a backlog drained. Records appended meanwhile wait in the pending
// queue and are committed to the new file; readers wait. It runs
// automatically (see Maintain).
func (o *Outbox) Compact() error {
	o.wmu.Lock()
	defer o.wmu.Unlock()
	if o.wasClosed() {
		return ErrClosed
	}
	return o.compactLocked()
}

func (o *Outbox) compactLocked() error {
	o.dbMu.Lock()
	defer o.dbMu.Unlock()
	before := o.fileSize()
	start := time.Now()
	if err := compactInto(o.db, o.path, &o.cfg); err != nil {
		o.st.compactErrors.Add(1)
		return fmt.Errorf("buffer: compact: %w", err)
	}
	// The compacted copy is complete and synced: swap it in.
	if err := o.db.Close(); err != nil {
		os.Remove(o.path + compactSuffix)
		o.st.compactErrors.Add(1)
		return fmt.Errorf("buffer: compact: %w", err)
	}
	renameErr := os.Rename(o.path+compactSuffix, o.path)
	if renameErr == nil {
		syncDir(dirOf(o.path))
	} else {
		os.Remove(o.path + compactSuffix)
	}
	db, err := openWritable(o.path, &o.cfg)
	if err != nil {
		// Leave the closed handle in place: every call fails cleanly
		// until the gateway restarts (and quarantines, if it must).
		o.st.compactErrors.Add(1)
		return fmt.Errorf("buffer: compact: reopen: %w", err)
	}
	o.db = db
	if renameErr != nil {
		o.st.compactErrors.Add(1)
		return fmt.Errorf("buffer: compact: %w", renameErr)
	}
	o.st.compactions.Add(1)
	o.logger.Info("outbox compacted", "path", o.path, "size_before", before, "size_after", o.fileSize(), "took", time.Since(start))
	return nil
}

// compactInto writes a compacted copy of src to path+".compact", synced.
func compactInto(src *bbolt.DB, path string, cfg *Config) error {
	tmp := path + compactSuffix
	os.Remove(tmp)
	dst, err := openBolt(tmp, boltOptions(cfg, false))
	if err != nil {
		return err
	}
	err = bbolt.Compact(dst, src, 16<<20)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// CompactFile compacts the closed outbox file at path in place (the
// operator's offline compaction) and returns the sizes before and after.
func CompactFile(path string) (before, after int64, err error) {
	cfg := Config{}
	cfg.Defaults()
	if _, err := scanFile(path, &cfg); err != nil {
		return 0, 0, fmt.Errorf("buffer: compact %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, fmt.Errorf("buffer: compact %s: %w", path, err)
	}
	before = fi.Size()
	src, err := openBolt(path, boltOptions(&cfg, true))
	if err != nil {
		return 0, 0, fmt.Errorf("buffer: compact %s: %w", path, err)
	}
	err = compactInto(src, path, &cfg)
	src.Close()
	if err == nil {
		err = os.Rename(path+compactSuffix, path)
		if err != nil {
			os.Remove(path + compactSuffix)
		}
	}
	if err != nil {
		return before, 0, fmt.Errorf("buffer: compact %s: %w", path, err)
	}
	syncDir(dirOf(path))
	fi, err = os.Stat(path)
	if err != nil {
		return before, 0, fmt.Errorf("buffer: compact %s: %w", path, err)
	}
	return before, fi.Size(), nil
}

// wasClosed reports whether the file was closed by Close (wmu held, so
// Close is not half way).
func (o *Outbox) wasClosed() bool {
	o.dbMu.RLock()
	defer o.dbMu.RUnlock()
	return o.isClosed()
}
