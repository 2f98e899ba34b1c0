package buffer

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
)

// Stats is a snapshot of the outbox's state and counters, for metrics.
type Stats struct {
	// Lanes is indexed by Lane (alerts, summaries, raw, dead).
	Lanes []LaneStats
	// Pending is the number of records enqueued but not yet committed.
	Pending int
	// Commits counts successful write transactions of records;
	// CommitRecords the records they stored and CommitLatency their total
	// duration (begin to fsync done), so CommitLatency/Commits is the mean.
	Commits           uint64
	CommitRecords     uint64
	CommitLatency     time.Duration
	LastCommitRecords uint64
	LastCommitLatency time.Duration
	MaxCommitLatency  time.Duration
	// CommitLatencyHist and CommitSizeHist count commits per bucket of
	// CommitLatencyBounds / CommitSizeBounds (not cumulative; the last
	// bucket counts what is above the last bound).
	CommitLatencyHist []uint64
	CommitSizeHist    []uint64
	// CommitErrors counts failed commits (full disk, I/O errors).
	CommitErrors uint64
	// WriteTxs counts committed write transactions of every kind (records,
	// checkpoints, acks, evictions) and BytesWritten what bbolt wrote for
	// them: the pages each allocated plus its meta page. That is what the
	// flash sees from the outbox, less the file system's own metadata; its
	// ratio to the durable readings is the flash wear per reading.
	WriteTxs, BytesWritten uint64
	// StateChanges counts state keys written or deleted by checkpoints;
	// StateFolds the checkpoints that folded the state log into its base.
	StateChanges, StateFolds uint64
	// FileSize is the bbolt file's size; FreePages its free pages (of
	// PageSize bytes), which a compaction gives back.
	FileSize  int64
	FreePages int
	PageSize  int
	// Compactions and CompactErrors count online compactions.
	Compactions   uint64
	CompactErrors uint64
	// Quarantined counts corrupt files moved aside by Open; QuarantinedAs
	// is the last one's new name.
	Quarantined   uint64
	QuarantinedAs string
	// Epoch is the file's random epoch (the first part of record ids).
	Epoch string
}

// Histogram bounds for Stats (upper bounds, inclusive).
var (
	CommitLatencyBounds = [...]time.Duration{time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
		10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
		250 * time.Millisecond, 500 * time.Millisecond, time.Second}
	CommitSizeBounds = [...]uint64{1, 10, 100, 500, 1000, 2000, 5000}
)

type histograms struct {
	latency [len(CommitLatencyBounds) + 1]atomic.Uint64
	size    [len(CommitSizeBounds) + 1]atomic.Uint64
}

func (h *histograms) observe(lat time.Duration, records uint64) {
	i := 0
	for i < len(CommitLatencyBounds) && lat > CommitLatencyBounds[i] {
		i++
	}
	h.latency[i].Add(1)
	j := 0
	for j < len(CommitSizeBounds) && records > CommitSizeBounds[j] {
		j++
	}
	h.size[j].Add(1)
}

// LaneStats describes one lane.
type LaneStats struct {
	Lane Lane
	Name string
	// Depth and Bytes are the stored records and their bytes (payload
	// plus 16 per record).
	Depth int64
	Bytes int64
	// Pending records are enqueued but not yet committed.
	Pending int64
	// OldestAge is the age of the oldest stored record (0 if none).
	OldestAge time.Duration
	// Appended, Acked count records in and delivered.
	Appended uint64
	Acked    uint64
	// RolledUpIn records were merged into RolledUpOut coarser ones.
	RolledUpIn  uint64
	RolledUpOut uint64
	// Dropped counts records lost by reason (see DropReasons); every
	// reason is present, zero or not.
	Dropped map[string]uint64
}

// TotalDropped sums Dropped.
func (s LaneStats) TotalDropped() uint64 {
	var t uint64
	for _, n := range s.Dropped {
		t += n
	}
	return t
}

// Stats returns a snapshot of the outbox's state and counters.
func (o *Outbox) Stats() Stats {
	s := Stats{
		Lanes:             make([]LaneStats, numLanes),
		Commits:           o.st.commits.Load(),
		CommitRecords:     o.st.commitRecords.Load(),
		CommitLatency:     time.Duration(o.st.commitNanos.Load()),
		LastCommitRecords: o.st.lastCommitRecords.Load(),
		LastCommitLatency: time.Duration(o.st.lastCommitNanos.Load()),
		MaxCommitLatency:  time.Duration(o.st.maxCommitNanos.Load()),
		CommitErrors:      o.st.commitErrors.Load(),
		WriteTxs:          o.st.writeTxs.Load(),
		BytesWritten:      o.st.bytesWritten.Load(),
		StateChanges:      o.st.stateChanges.Load(),
		StateFolds:        o.st.stateFolds.Load(),
		Compactions:       o.st.compactions.Load(),
		CompactErrors:     o.st.compactErrors.Load(),
		Quarantined:       o.st.quarantined.Load(),
		Epoch:             o.epoch,
	}
	for i := range o.st.hist.latency {
		s.CommitLatencyHist = append(s.CommitLatencyHist, o.st.hist.latency[i].Load())
	}
	for i := range o.st.hist.size {
		s.CommitSizeHist = append(s.CommitSizeHist, o.st.hist.size[i].Load())
	}
	if p := o.st.quarantinedAs.Load(); p != nil {
		s.QuarantinedAs = *p
	}
	o.mu.Lock()
	s.Pending = len(o.pending)
	for _, l := range Lanes {
		ls := &s.Lanes[l]
		ls.Lane, ls.Name = l, l.String()
		ls.Depth = o.lanes[l].count
		ls.Bytes = o.lanes[l].bytes
		ls.Pending = o.lanes[l].pendCount
	}
	o.mu.Unlock()
	now := o.opts.now().UnixNano()
	o.dbMu.RLock()
	if !o.closed() {
		bs := o.db.Stats()
		s.FreePages = bs.FreePageN
		o.db.View(func(tx *bbolt.Tx) error {
			s.FileSize = tx.Size()
			s.PageSize = tx.DB().Info().PageSize
			for _, l := range Lanes {
				if b := tx.Bucket(laneBuckets[l]); b != nil {
					if _, v := b.Cursor().First(); len(v) >= valueHeader {
						s.Lanes[l].OldestAge = time.Duration(max(0, now-int64(binary.BigEndian.Uint64(v))))
					}
				}
			}
			return nil
		})
	}
	o.dbMu.RUnlock()
	for _, l := range Lanes {
		c := &o.st.lanes[l]
		ls := &s.Lanes[l]
		ls.Appended = c.appended.Load()
		ls.Acked = c.acked.Load()
		ls.RolledUpIn = c.rolledIn.Load()
		ls.RolledUpOut = c.rolledOut.Load()
		ls.Dropped = make(map[string]uint64, numReasons)
		for r := range numReasons {
			ls.Dropped[r.String()] = c.dropped[r].Load()
		}
	}
	return s
}

// closed reports whether the file is closed (dbMu held).
func (o *Outbox) closed() bool {
	return o.db == nil || o.db.Path() == ""
}
