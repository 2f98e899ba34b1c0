package window

import (
	"bytes"
	"cmp"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/rules/internal/state"
)

// commitTo applies the changes of kd (all: a full checkpoint) to a real
// bbolt bucket in one transaction, the way the gateway's Committer does.
func commitTo(t *testing.T, db *bolt.DB, kd *Keyed, all bool) int {
	t.Helper()
	var b state.Batch
	kd.Changes(&b, all)
	err := db.Update(func(tx *bolt.Tx) error {
		if all {
			if err := tx.DeleteBucket([]byte("state")); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return err
			}
		}
		bk, err := tx.CreateBucketIfNotExists([]byte("state"))
		if err != nil {
			return err
		}
		b.Each(func(k, v []byte) {
			if v == nil {
				err = errors.Join(err, bk.Delete(k))
			} else {
				err = errors.Join(err, bk.Put(k, v))
			}
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	kd.Committed(all)
	return b.Len()
}

func restoreFrom(t *testing.T, db *bolt.DB, rules []*Rule) *Keyed {
	t.Helper()
	kd := NewKeyed(nil)
	kd.Track()
	err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("state")).ForEach(func(k, v []byte) error {
			return kd.RestoreKey(bytes.Clone(k), bytes.Clone(v), rules)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return kd
}

// Per-key checkpoints (only the changed keys after the first), committed
// to a real bbolt file at several points and restored, continue exactly
// like an uninterrupted run: every kind of window, sketches, samples,
// late revisions.
func TestKeyStateRoundTripThroughBolt(t *testing.T) {
	rs := snapshotReadings()
	whole := &keepAll{}
	{
		rules := snapshotRules()
		kd := NewKeyed(nil)
		feedAll(t, kd, rules, rs, whole.emit)
		if err := kd.Flush(whole.emit); err != nil {
			t.Fatal(err)
		}
	}
	db, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	split := &keepAll{}
	rules := snapshotRules()
	kd := NewKeyed(nil)
	kd.Track()
	cuts := []int{0, 37, 120, 121, 250, 333, len(rs)}
	for i := 1; i < len(cuts); i++ {
		feedAll(t, kd, rules, rs[cuts[i-1]:cuts[i]], split.emit)
		n := commitTo(t, db, kd, i == 1)
		if cuts[i]-cuts[i-1] == 1 && n > len(rules) {
			// One reading touches one key per rule.
			t.Fatalf("a checkpoint after one reading wrote %d keys of %d", n, kd.Stats().Keys)
		}
		before := stateMap(kd)
		rules = snapshotRules()
		kd = restoreFrom(t, db, rules)
		if after := stateMap(kd); !reflect.DeepEqual(before, after) {
			t.Fatalf("cut %d: the restored state differs from the committed one", i)
		}
	}
	if err := kd.Flush(split.emit); err != nil {
		t.Fatal(err)
	}
	// The restored keys come back in store order: the summaries are the
	// same, the order of emission across keys may differ.
	byID := func(a, b ingest.Summary) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Revision, b.Revision))
	}
	slices.SortFunc(whole.got, byID)
	slices.SortFunc(split.got, byID)
	if len(whole.got) == 0 || !reflect.DeepEqual(whole.got, split.got) {
		t.Fatalf("restored runs differ: %d summaries uninterrupted, %d with restores", len(whole.got), len(split.got))
	}
}

// stateMap returns the encoded state of every key of kd by store key.
func stateMap(kd *Keyed) map[string]string {
	m := map[string]string{}
	for _, k := range kd.order {
		m[string(k.appendName(nil))] = string(k.appendState(nil))
	}
	return m
}

func TestRestoreKeyRefuses(t *testing.T) {
	rules := snapshotRules()
	kd := NewKeyed(nil)
	kd.Track()
	feedAll(t, kd, rules, snapshotReadings()[:50], (&keepAll{}).emit)
	var b state.Batch
	kd.Changes(&b, true)
	var key, val []byte
	b.Each(func(k, v []byte) { key, val = k, v })
	changed := snapshotRules()
	changed[len(changed)-1] = Compile(3, Config{Name: "r", Type: Tumbling, Size: 6 * time.Second, Time: EventTime, Late: LateRevise, Retention: 50 * time.Second})
	if err := NewKeyed(nil).RestoreKey(key, val, changed); !errors.Is(err, ErrDropped) {
		t.Fatalf("a changed window size: %v", err)
	}
	if err := NewKeyed(nil).RestoreKey(key, val[:len(val)-3], snapshotRules()); !errors.Is(err, state.ErrCorrupt) {
		t.Fatalf("a truncated value: %v", err)
	}
	bad := append([]byte{9}, val[1:]...)
	if err := NewKeyed(nil).RestoreKey(key, bad, snapshotRules()); !errors.Is(err, state.ErrCorrupt) {
		t.Fatalf("an unknown version: %v", err)
	}
}
