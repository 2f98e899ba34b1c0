// The uplinks' side: reading records in lane order and deleting them when
// upstream confirmed them.

package buffer

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"go.etcd.io/bbolt"
)

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
		o.countWrite(tx)
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
	o.changedLocked()
	o.mu.Unlock()
	o.st.lanes[lane].acked.Add(uint64(n))
	return nil
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
