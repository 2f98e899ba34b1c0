package buffer

import (
	"errors"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/sensorgate/sensorgate/buffer/internal/statelog"
)

// The pipeline's durable state (open windows, stage and alert state, the
// sources' records of committed inputs) lives next to the lanes in the same
// file, as opaque keys and values, in two buckets:
//
//   - stateBucket, the base: one bbolt key per state key;
//   - stateLogBucket, the changes since the base was last brought up to
//     date: every change of a checkpoint, in order, cut into chunks of
//     stateLogChunk bytes under keys (checkpoint sequence, chunk index).
//
// A checkpoint appends one log value instead of updating its keys in
// place. The state keys of a busy gateway are spread over the whole base
// (a thousand sensors, each its own window key), so updating forty of them
// in place rewrites some thirty 4 KiB pages, while their forty changes fit
// in one or two pages of log (the encoding: package statelog). Every stateCompactEntries checkpoints (or
// stateCompactBytes of log) the checkpoint's transaction applies the log to
// the base instead and empties it. LoadState reads the base and replays
// the log.
var (
	stateBucket    = []byte("state")
	stateLogBucket = []byte("state.log")
)

// When a checkpoint folds the log into the base.
const (
	stateCompactEntries = 512
	stateCompactBytes   = 2 << 20
)

// stateLogSize is what the log holds, kept by Commit (under wmu) so that
// it does not walk the bucket every time.
type stateLogSize struct {
	known bool
	n     int
	bytes int64
}

// StateChange is one key of the state store: Value nil deletes Key.
type StateChange struct {
	Key, Value []byte
}

// Checkpoint is one atomic commit of the pipeline: the records its rules
// emitted since the previous checkpoint and the state that changed.
type Checkpoint struct {
	Records []Pending
	State   []StateChange
	// DeletePrefix, when not empty, deletes every state key starting with
	// it before State is applied (a checkpoint that replaces all of a
	// component's state).
	DeletePrefix []byte

	log []byte // the encoded changes, reused
}

// Pending is a record to append to a lane in a Checkpoint.
type Pending struct {
	Lane    Lane
	Payload []byte
}

// Reset empties cp for reuse, keeping its slices' capacity.
func (cp *Checkpoint) Reset() {
	clear(cp.Records)
	clear(cp.State)
	cp.Records, cp.State, cp.DeletePrefix = cp.Records[:0], cp.State[:0], nil
}

// encode appends cp's state changes as one log value.
func (cp *Checkpoint) encode(b []byte) ([]byte, error) {
	if len(cp.DeletePrefix) > 0 {
		b = statelog.AppendDeletePrefix(b, cp.DeletePrefix)
	}
	for _, c := range cp.State {
		switch {
		case len(c.Key) == 0:
			return b, errors.New("buffer: state change with an empty key")
		case c.Value == nil:
			b = statelog.AppendDelete(b, c.Key)
		default:
			b = statelog.AppendPut(b, c.Key, c.Value)
		}
	}
	return b, nil
}

// Commit writes cp in one synced bbolt transaction: the records (after
// anything enqueued before, so lane order holds) and the state changes,
// both or neither. A record refused by its lane's reject policy (ErrFull)
// is the lane's declared, counted drop and does not fail the commit; any
// other error rolls everything back and is returned, and cp may be
// committed again.
func (o *Outbox) Commit(cp *Checkpoint) error {
	if len(cp.Records) == 0 && len(cp.State) == 0 && len(cp.DeletePrefix) == 0 {
		return nil
	}
	var err error
	if cp.log, err = cp.encode(cp.log[:0]); err != nil {
		return err
	}
	return o.Update(func(tx *bbolt.Tx, put func(Lane, []byte) error) error {
		for _, r := range cp.Records {
			if err := put(r.Lane, r.Payload); err != nil && !errors.Is(err, ErrFull) {
				return err
			}
		}
		if len(cp.log) == 0 {
			return nil
		}
		lb, err := tx.CreateBucketIfNotExists(stateLogBucket)
		if err != nil {
			return err
		}
		if !o.stateLog.known {
			st := lb.Stats() // once: it walks the bucket
			o.stateLog = stateLogSize{known: true, n: st.KeyN, bytes: int64(st.LeafInuse)}
		}
		size := o.stateLog
		if size.n+1 >= stateCompactEntries || size.bytes+int64(len(cp.log)) >= stateCompactBytes {
			if err := statelog.Fold(tx, stateBucket, stateLogBucket, cp.log); err != nil {
				return err
			}
			o.st.stateFolds.Add(1)
			size.n, size.bytes = 0, 0
		} else {
			if err := statelog.Append(lb, cp.log); err != nil {
				return err
			}
			size.n++
			size.bytes += int64(len(cp.log))
		}
		tx.OnCommit(func() { o.stateLog = size }) // wmu is held until Update returns
		o.st.stateChanges.Add(uint64(len(cp.State)))
		return nil
	})
}

// LoadState calls fn for every state key starting with prefix, in key
// order: the base with the log replayed over it. The slices are only valid
// during the call.
func (o *Outbox) LoadState(prefix []byte, fn func(key, value []byte) error) error {
	o.dbMu.RLock()
	defer o.dbMu.RUnlock()
	if o.isClosed() {
		return ErrClosed
	}
	return o.db.View(func(tx *bbolt.Tx) error {
		err := statelog.Load(tx.Bucket(stateBucket), tx.Bucket(stateLogBucket), prefix, fn)
		if errors.Is(err, statelog.ErrCorrupt) {
			err = fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		return err
	})
}

// countWrite counts tx, once it is committed, in the write counters.
func (o *Outbox) countWrite(tx *bbolt.Tx) {
	pageSize := uint64(tx.DB().Info().PageSize) // tx.DB() is nil once committed
	tx.OnCommit(func() {
		o.st.writeTxs.Add(1)
		st := tx.Stats()
		o.st.bytesWritten.Add(uint64(st.GetPageAlloc()) + pageSize)
	})
}
