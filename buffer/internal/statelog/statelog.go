// Package statelog is the encoding of the outbox's state log: the changes
// of one checkpoint as a stream of operations (put, delete, delete by
// prefix), stored in chunks that keep a bbolt bucket's leaves full, and
// replayed over the base bucket at load or when the log is folded into it.
//
// Guarantees: Replay never panics on arbitrary bytes; it returns
// ErrCorrupt. Caveats: a chunk may end inside an operation (a checkpoint
// never does), so chunks are only read joined (Stream).
package statelog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"
)

// ErrCorrupt is returned (wrapped) by Replay for bytes it cannot read.
var ErrCorrupt = errors.New("statelog: corrupt")

// Chunk is the size of a stored chunk: five chunks and their keys fill a
// 4 KiB page. bbolt never splits a leaf of fewer than five values, so one
// value per checkpoint made every append rewrite up to four earlier
// checkpoints.
const Chunk = 780

// Operations.
const (
	OpPut          = 'P'
	OpDelete       = 'D'
	OpDeletePrefix = 'X'
)

func appendBytes(b, v []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}

// AppendPut appends the put of key (not empty) = value.
func AppendPut(b, key, value []byte) []byte {
	return appendBytes(appendBytes(append(b, OpPut), key), value)
}

// AppendDelete appends the delete of key.
func AppendDelete(b, key []byte) []byte { return appendBytes(append(b, OpDelete), key) }

// AppendDeletePrefix appends the delete of every key starting with prefix.
func AppendDeletePrefix(b, prefix []byte) []byte {
	return appendBytes(append(b, OpDeletePrefix), prefix)
}

// Replay calls fn for each operation of v.
func Replay(v []byte, fn func(op byte, key, value []byte) error) error {
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
			return fmt.Errorf("%w: entry", ErrCorrupt)
		}
		var val []byte
		switch op {
		case OpPut:
			if val, ok = next(); !ok {
				return fmt.Errorf("%w: entry", ErrCorrupt)
			}
		case OpDelete, OpDeletePrefix:
		default:
			return fmt.Errorf("%w: operation %q", ErrCorrupt, op)
		}
		if err := fn(op, k, val); err != nil {
			return err
		}
	}
	return nil
}

// Append stores one checkpoint's operations in lb, in chunks under keys
// (seq, chunk index).
func Append(lb *bbolt.Bucket, ops []byte) error {
	seq, err := lb.NextSequence()
	if err != nil {
		return err
	}
	lb.FillPercent = 1 // appended in key order: pack the leaves
	for i, rest := uint32(0), ops; len(rest) > 0; i++ {
		n := min(len(rest), Chunk)
		k := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(make([]byte, 0, 12), seq), i)
		if err := lb.Put(k, rest[:n]); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// Stream is lb's chunks joined in order: every checkpoint's operations,
// one after the other.
func Stream(lb *bbolt.Bucket) []byte {
	var s []byte
	c := lb.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		s = append(s, v...)
	}
	return s
}

// Apply applies ops to base.
func Apply(base *bbolt.Bucket, ops []byte) error {
	return Replay(ops, func(op byte, k, val []byte) error {
		switch op {
		case OpPut:
			return base.Put(k, val)
		case OpDelete:
			return base.Delete(k)
		default:
			return DeletePrefix(base, k)
		}
	})
}

// DeletePrefix deletes every key of b starting with prefix.
func DeletePrefix(b *bbolt.Bucket, prefix []byte) error {
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Load calls fn, in key order, for every key starting with prefix of base
// (nil: none) with the log lb (nil: none) replayed over it.
func Load(base, lb *bbolt.Bucket, prefix []byte, fn func(key, value []byte) error) error {
	state := map[string][]byte{}
	if base != nil {
		c := base.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			state[string(k)] = v
		}
	}
	if lb != nil {
		err := Replay(Stream(lb), func(op byte, key, val []byte) error {
			switch {
			case op == OpDeletePrefix:
				for s := range state {
					if len(s) >= len(key) && s[:len(key)] == string(key) {
						delete(state, s)
					}
				}
			case !bytes.HasPrefix(key, prefix):
			case op == OpPut:
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
}

// Fold applies the log bucket logName, then last, to the base bucket
// baseName and empties the log (its sequence goes on), in tx.
func Fold(tx *bbolt.Tx, baseName, logName, last []byte) error {
	base, err := tx.CreateBucketIfNotExists(baseName)
	if err != nil {
		return err
	}
	lb := tx.Bucket(logName)
	var seq uint64
	if lb != nil {
		if err := Apply(base, Stream(lb)); err != nil {
			return err
		}
		seq = lb.Sequence()
		if err := tx.DeleteBucket(logName); err != nil {
			return err
		}
	}
	if err := Apply(base, last); err != nil {
		return err
	}
	nb, err := tx.CreateBucket(logName)
	if err != nil {
		return err
	}
	return nb.SetSequence(seq)
}
