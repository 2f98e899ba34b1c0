package buffer

import (
	"bytes"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"
)

// stateBucket holds the pipeline's durable state (open windows, stage and
// alert state, the sources' records of committed inputs) as opaque keys and
// values, next to the lanes in the same file.
var stateBucket = []byte("state")

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
	return o.Update(func(tx *bbolt.Tx, put func(Lane, []byte) error) error {
		for _, r := range cp.Records {
			if err := put(r.Lane, r.Payload); err != nil && !errors.Is(err, ErrFull) {
				return err
			}
		}
		if len(cp.State) == 0 && len(cp.DeletePrefix) == 0 {
			return nil
		}
		b, err := tx.CreateBucketIfNotExists(stateBucket)
		if err != nil {
			return err
		}
		if len(cp.DeletePrefix) > 0 {
			if err := deletePrefix(b, cp.DeletePrefix); err != nil {
				return err
			}
		}
		for _, c := range cp.State {
			if len(c.Key) == 0 {
				return fmt.Errorf("buffer: state change with an empty key")
			}
			if c.Value == nil {
				err = b.Delete(c.Key)
			} else {
				err = b.Put(c.Key, c.Value)
			}
			if err != nil {
				return err
			}
		}
		o.st.stateChanges.Add(uint64(len(cp.State)))
		return nil
	})
}

// LoadState calls fn for every state key starting with prefix, in key
// order. The slices are only valid during the call.
func (o *Outbox) LoadState(prefix []byte, fn func(key, value []byte) error) error {
	o.dbMu.RLock()
	defer o.dbMu.RUnlock()
	if o.isClosed() {
		return ErrClosed
	}
	return o.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(stateBucket)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if err := fn(k, v); err != nil {
				return err
			}
		}
		return nil
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

func deletePrefix(b *bbolt.Bucket, prefix []byte) error {
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}
