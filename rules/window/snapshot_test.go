package window

import (
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sensorgate/sensorgate/ingest"
)

func snapshotRules() []*Rule {
	return compileAll(
		Config{Name: "t", Size: 10 * time.Second, Lateness: time.Second, Aggregates: []string{AggTWA, AggDelta, AggQuantiles},
			Quantiles: []float64{0.5, 0.9}, SketchAccuracy: 0.01},
		Config{Name: "h", Type: Hopping, Size: 10 * time.Second, Slide: 5 * time.Second, Aggregates: []string{AggRate}},
		Config{Name: "s", Type: Session, Gap: 3 * time.Second},
		Config{Name: "r", Size: 5 * time.Second, Late: LateRevise, Retention: 50 * time.Second},
	)
}

func snapshotReadings() []ingest.Reading {
	var rs []ingest.Reading
	for i := range 400 {
		sensor := []string{"a", "b", "c"}[i%3]
		ts := int64(i) * int64(150*time.Millisecond)
		if i%17 == 0 {
			ts -= int64(6 * time.Second) // late: dropped or revised
		}
		rs = append(rs, ingest.Reading{Sensor: sensor, Metric: "m", Value: float64(i%23) + 0.5, Time: ts, Unit: "u",
			Quality: ingest.Quality(i % 2)})
	}
	return rs
}

// keepAll is an emit that keeps every summary with its sketch.
type keepAll struct{ got []ingest.Summary }

func (c *keepAll) emit(s *ingest.Summary) error {
	cp := *s
	cp.Quantiles = append([]ingest.Quantile(nil), s.Quantiles...)
	cp.Sketch = append([]byte(nil), s.Sketch...)
	c.got = append(c.got, cp)
	return nil
}

// Open windows stopped half way, snapshotted into a real bbolt file,
// restored into a new Keyed and run to the end emit exactly the summaries
// of an uninterrupted run.
func TestSnapshotRoundTripThroughBolt(t *testing.T) {
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

	split := &keepAll{}
	path := filepath.Join(t.TempDir(), "state.db")
	{
		rules := snapshotRules()
		kd := NewKeyed(nil)
		feedAll(t, kd, rules, rs[:len(rs)/2], split.emit)
		if kd.Stats().OpenWindows == 0 {
			t.Fatal("nothing open at the snapshot: the test tests nothing")
		}
		snap, err := kd.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("windows"))
			if err != nil {
				return err
			}
			return b.Put([]byte("state"), snap)
		}); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	{
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var snap []byte
		if err := db.View(func(tx *bolt.Tx) error {
			snap = append(snap, tx.Bucket([]byte("windows")).Get([]byte("state"))...)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		rules := snapshotRules()
		kd := NewKeyed(nil)
		if err := kd.Restore(snap, rules); err != nil {
			t.Fatal(err)
		}
		feedAll(t, kd, rules, rs[len(rs)/2:], split.emit)
		if err := kd.Flush(split.emit); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d summaries, %d revisions", len(whole.got), kd0Revisions(whole.got))
	if len(whole.got) == 0 || !reflect.DeepEqual(whole.got, split.got) {
		t.Fatalf("restored run differs: %d summaries uninterrupted, %d with a restore", len(whole.got), len(split.got))
	}
}

func feedAll(t *testing.T, kd *Keyed, rules []*Rule, rs []ingest.Reading, emit Emit) {
	t.Helper()
	for i := range rs {
		r := rs[i]
		for _, w := range rules {
			k := kd.Key(w, r.Sensor, "", r.Metric, map[string]string{"site": "x"})
			k.Release()
			if err := kd.Add(k, &r, emit); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestRestoreRefusesBadSnapshots(t *testing.T) {
	rules := snapshotRules()
	kd := NewKeyed(nil)
	feedAll(t, kd, rules, snapshotReadings()[:50], func(*ingest.Summary) error { return nil })
	snap, err := kd.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"empty":     nil,
		"version":   append([]byte{99}, snap[1:]...),
		"truncated": snap[:len(snap)/2],
		"trailing":  append(append([]byte(nil), snap...), 0),
	} {
		if err := NewKeyed(nil).Restore(b, rules); !errors.Is(err, ErrSnapshot) {
			t.Errorf("%s: Restore = %v, want ErrSnapshot", name, err)
		}
	}
	if err := NewKeyed(nil).Restore(snap, rules[:1]); !errors.Is(err, ErrSnapshot) {
		t.Errorf("unknown rule: Restore = %v, want ErrSnapshot", err)
	}
}

func kd0Revisions(ss []ingest.Summary) (n int) {
	for _, s := range ss {
		if s.Revision > 0 {
			n++
		}
	}
	return n
}
