package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"
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
// in one or two pages of log. The chunks keep the log's leaves full: bbolt
// never splits a leaf of fewer than five values, so one value per
// checkpoint made every append rewrite up to four earlier checkpoints (48 KB
// written per 40-key checkpoint in BenchmarkCheckpointWrite, against 1 or 2
// pages of changes). Every stateCompactEntries checkpoints (or
// stateCompactBytes of log) the checkpoint's transaction applies the log to
// the base instead and empties it. LoadState reads the base and replays
// the log.
var (
	stateBucket    = []byte("state")
	stateLogBucket = []byte("state.log")
)

// When a checkpoint folds the log into the base, and the log's chunk size
// (five chunks and their keys fill a 4 KiB page).
const (
	stateCompactEntries = 512
	stateCompactBytes   = 8 << 20
	stateLogChunk       = 780
)

// stateLogSize is what the log holds, kept by Commit (under wmu) so that
// it does not walk the bucket every time.
type stateLogSize struct {
	known bool
	n     int
	bytes int64
}

// Log value operations.
const (
	opPut          = 'P'
	opDelete       = 'D'
	opDeletePrefix = 'X'
)

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
		b = append(b, opDeletePrefix)
		b = appendBytes(b, cp.DeletePrefix)
	}
	for _, c := range cp.State {
		if len(c.Key) == 0 {
			return b, errors.New("buffer: state change with an empty key")
		}
		if c.Value == nil {
			b = append(b, opDelete)
			b = appendBytes(b, c.Key)
			continue
		}
		b = append(b, opPut)
		b = appendBytes(b, c.Key)
		b = appendBytes(b, c.Value)
	}
	return b, nil
}

func appendBytes(b, v []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
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
			if err := o.foldStateLog(tx, lb, cp.log); err != nil {
				return err
			}
			size.n, size.bytes = 0, 0
		} else {
			seq, err := lb.NextSequence()
			if err != nil {
				return err
			}
			lb.FillPercent = 1 // appended in key order: pack the leaves
			for i, rest := uint32(0), cp.log; len(rest) > 0; i++ {
				n := min(len(rest), stateLogChunk)
				k := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(make([]byte, 0, 12), seq), i)
				if err := lb.Put(k, rest[:n]); err != nil {
					return err
				}
				rest = rest[n:]
			}
			size.n++
			size.bytes += int64(len(cp.log))
		}
		tx.OnCommit(func() { o.stateLog = size }) // wmu is held until Update returns
		o.st.stateChanges.Add(uint64(len(cp.State)))
		return nil
	})
}

// foldStateLog applies the log, then last (this checkpoint's changes), to
// the base and empties the log, in tx.
func (o *Outbox) foldStateLog(tx *bbolt.Tx, lb *bbolt.Bucket, last []byte) error {
	base, err := tx.CreateBucketIfNotExists(stateBucket)
	if err != nil {
		return err
	}
	apply := func(v []byte) error {
		return replay(v, func(op byte, k, val []byte) error {
			switch op {
			case opPut:
				return base.Put(k, val)
			case opDelete:
				return base.Delete(k)
			default:
				return deletePrefix(base, k)
			}
		})
	}
	if err := apply(logStream(lb)); err != nil {
		return err
	}
	if err := apply(last); err != nil {
		return err
	}
	seq := lb.Sequence()
	if err := tx.DeleteBucket(stateLogBucket); err != nil {
		return err
	}
	nb, err := tx.CreateBucket(stateLogBucket)
	if err != nil {
		return err
	}
	o.st.stateFolds.Add(1)
	return nb.SetSequence(seq)
}

// logStream is the log's chunks joined in order: every checkpoint's
// operations, one after the other (a chunk may end inside an operation,
// a checkpoint never does).
func logStream(lb *bbolt.Bucket) []byte {
	var s []byte
	c := lb.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		s = append(s, v...)
	}
	return s
}

// replay calls fn for each operation of a log value.
func replay(v []byte, fn func(op byte, key, value []byte) error) error {
	next := func() ([]byte, bool) {
		n, w := binary.Uvarint(v)
		if w <= 0 || uint64(len(v)-w) < n {
			return nil, false
		}
		b := v[w : w+int(n)]
		v = v[w+int(n):]
		return b, true
	}
	for len(v) > 0 {
		op := v[0]
		v = v[1:]
		k, ok := next()
		if !ok || len(k) == 0 {
			return fmt.Errorf("%w: state log entry", ErrCorrupt)
		}
		var val []byte
		switch op {
		case opPut:
			if val, ok = next(); !ok {
				return fmt.Errorf("%w: state log entry", ErrCorrupt)
			}
		case opDelete, opDeletePrefix:
		default:
			return fmt.Errorf("%w: state log operation %q", ErrCorrupt, op)
		}
		if err := fn(op, k, val); err != nil {
			return err
		}
	}
	return nil
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
		state := map[string][]byte{}
		if b := tx.Bucket(stateBucket); b != nil {
			c := b.Cursor()
			for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				state[string(k)] = v
			}
		}
		if lb := tx.Bucket(stateLogBucket); lb != nil {
			{
				err := replay(logStream(lb), func(op byte, key, val []byte) error {
					switch {
					case op == opDeletePrefix:
						for s := range state {
							if len(s) >= len(key) && s[:len(key)] == string(key) {
								delete(state, s)
							}
						}
					case !bytes.HasPrefix(key, prefix):
					case op == opPut:
						state[string(key)] = val
					default:
						delete(state, string(key))
					}
					return nil
				})
				if err != nil {
					return err
				}
			}
		}
		keys := make([]string, 0, len(state))
		for k := range state {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if err := fn([]byte(k), state[k]); err != nil {
				return err
			}
		}
		return nil
	})
}

func deletePrefix(b *bbolt.Bucket, prefix []byte) error {
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
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
