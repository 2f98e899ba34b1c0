package rules

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// ckRun runs an engine with checkpoints in a goroutine, on a hand-set
// clock and hand-sent ticks, into sink.
type ckRun struct {
	t    *testing.T
	e    *Engine
	clk  *wallClock
	in   chan ingest.Reading
	tick chan time.Time
	done chan error
	stop context.CancelFunc
}

func startCk(t *testing.T, cfg Config, pol *CommitPolicy, sink Sink, clk *wallClock, before func(*Engine)) *ckRun {
	t.Helper()
	h := &ckRun{t: t, clk: clk, in: make(chan ingest.Reading), tick: make(chan time.Time), done: make(chan error, 1)}
	e, err := New(cfg, Options{Now: clk.Now, Tick: h.tick, Commit: pol})
	if err != nil {
		t.Fatal(err)
	}
	h.e = e
	if before != nil {
		before(e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	go func() { h.done <- e.Run(ctx, h.in, sink) }()
	t.Cleanup(func() {
		cancel()
		<-h.done
		h.done <- nil
	})
	return h
}

func (h *ckRun) send(r ingest.Reading) {
	h.t.Helper()
	select {
	case h.in <- r:
	case err := <-h.done:
		h.t.Fatalf("engine stopped: %v", err)
	case <-time.After(20 * time.Second):
		h.t.Fatal("engine does not take readings")
	}
}

// tickAt sets the clock and delivers two ticks (the second is taken only
// once the first is done).
func (h *ckRun) tickAt(wall float64) {
	h.t.Helper()
	h.clk.ns.Store(sec(wall))
	for range 2 {
		select {
		case h.tick <- time.Unix(0, sec(wall)):
		case err := <-h.done:
			h.t.Fatalf("engine stopped: %v", err)
		case <-time.After(20 * time.Second):
			h.t.Fatal("engine does not take ticks")
		}
	}
}

// closeInput closes the input and returns Run's error.
func (h *ckRun) closeInput() error {
	h.t.Helper()
	close(h.in)
	select {
	case err := <-h.done:
		h.done <- err
		return err
	case <-time.After(20 * time.Second):
		h.t.Fatal("Run does not return after the input closed")
	}
	return nil
}

// kill cancels Run (a hard stop: nothing more is committed).
func (h *ckRun) kill() {
	h.t.Helper()
	h.stop()
	h.done <- <-h.done
}

// boltStore is a Committer that writes records and state into a real
// bbolt file in one transaction per checkpoint, the way cmd does.
type boltStore struct {
	db   *bolt.DB
	mu   sync.Mutex
	held []string
}

func openBolt(t *testing.T, path string) *boltStore {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &boltStore{db: db}
}

func (b *boltStore) Summary(_ context.Context, s *ingest.Summary) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held = append(b.held, summaryRec(s))
	return nil
}

func (b *boltStore) Alert(_ context.Context, a *ingest.Alert) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held = append(b.held, "A "+a.ID+" "+a.State)
	return nil
}

func (b *boltStore) Commit(_ context.Context, cp *Checkpoint) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.db.Update(func(tx *bolt.Tx) error {
		if cp.Replace {
			if err := tx.DeleteBucket([]byte("state")); err != nil && err != bolt.ErrBucketNotFound {
				return err
			}
		}
		st, err := tx.CreateBucketIfNotExists([]byte("state"))
		if err != nil {
			return err
		}
		for _, c := range cp.State {
			if c.Value == nil {
				err = st.Delete(c.Key)
			} else {
				err = st.Put(c.Key, c.Value)
			}
			if err != nil {
				return err
			}
		}
		out, err := tx.CreateBucketIfNotExists([]byte("outbox"))
		if err != nil {
			return err
		}
		for _, r := range b.held {
			seq, _ := out.NextSequence()
			if err := out.Put([]byte{byte(seq >> 8), byte(seq)}, []byte(r)); err != nil {
				return err
			}
		}
		b.held = nil
		return nil
	})
}

func (b *boltStore) load(fn func(k, v []byte) error) error {
	return b.db.View(func(tx *bolt.Tx) error {
		if st := tx.Bucket([]byte("state")); st != nil {
			return st.ForEach(fn)
		}
		return nil
	})
}

func (b *boltStore) records(t *testing.T) (recs []string, stateKeys []string) {
	t.Helper()
	err := b.db.View(func(tx *bolt.Tx) error {
		if out := tx.Bucket([]byte("outbox")); out != nil {
			out.ForEach(func(_, v []byte) error { recs = append(recs, string(v)); return nil })
		}
		if st := tx.Bucket([]byte("state")); st != nil {
			st.ForEach(func(k, _ []byte) error { stateKeys = append(stateKeys, string(k)); return nil })
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return recs, stateKeys
}

const ckWindowConfig = `
windows:
  - {name: 10s, size: 10s, lateness: 2s}
  - {name: 1m, size: 1m, lateness: 2s}
`

func ckReading(sensor string, t float64, v float64) ingest.Reading {
	r := rd(sensor, "m", t, v)
	r.Arrival = r.Time
	return r
}

// A clean stop keeps the open windows in the store (no flush, a Final
// checkpoint); the next process continues them, and one summary per
// window comes out with every reading of both processes. Through a real
// bbolt file.
func TestCheckpointCleanStopContinues(t *testing.T) {
	checkNoLeak(t)
	cfg := parseConfig(t, ckWindowConfig)
	path := filepath.Join(t.TempDir(), "state.db")
	bs := openBolt(t, path)
	clk := &wallClock{}
	pol := &CommitPolicy{}
	a := startCk(t, cfg, pol, bs, clk, nil)
	for i := 1; i <= 5; i++ {
		clk.ns.Store(sec(float64(i)))
		a.send(ckReading("s1", float64(i), float64(i)))
	}
	if err := a.closeInput(); err != nil {
		t.Fatal(err)
	}
	recs, keys := bs.records(t)
	if len(recs) != 0 {
		t.Fatalf("a clean stop emitted %v", recs)
	}
	if !slices.Contains(keys, "r/w/10s\x00s1\x00\x00m") || !slices.Contains(keys, "r/e") {
		t.Fatalf("state keys after the stop: %q", keys)
	}
	if st := a.e.Stats(); st.Checkpoints != 1 || st.StateKeys != int64(len(keys)) || st.Pending != 0 {
		t.Fatalf("stats %+v, %d keys in the store", st, len(keys))
	}

	b := startCk(t, cfg, pol, bs, clk, func(e *Engine) {
		if err := e.Restore(bs.load); err != nil {
			t.Fatal(err)
		}
		if st := e.Stats(); st.Restored != uint64(len(keys)) || st.Keys != 2 {
			t.Fatalf("restored stats %+v", st)
		}
	})
	for i := 6; i <= 9; i++ {
		clk.ns.Store(sec(float64(i)))
		b.send(ckReading("s1", float64(i), float64(i)))
	}
	b.tickAt(13) // 10s window: end + lateness passed
	b.tickAt(13.5)
	if err := b.closeInput(); err != nil {
		t.Fatal(err)
	}
	recs, _ = bs.records(t)
	if len(recs) != 1 || !strings.Contains(recs[0], "10s/s1/m/0 rev=0 n=9 sum=45") {
		t.Fatalf("records %q", recs)
	}
}

// FlushOnClose (decommissioning) emits everything as final and leaves no
// window state behind.
func TestCheckpointFlushOnClose(t *testing.T) {
	cfg := parseConfig(t, ckWindowConfig)
	st := newStore()
	clk := &wallClock{}
	a := startCk(t, cfg, &CommitPolicy{FlushOnClose: true}, st, clk, nil)
	for i := 1; i <= 5; i++ {
		a.send(ckReading("s1", float64(i), 1))
	}
	if err := a.closeInput(); err != nil {
		t.Fatal(err)
	}
	recs, keys, cps := st.snapshot()
	if len(recs) != 2 || !cps[len(cps)-1].Final {
		t.Fatalf("records %q, checkpoints %d", recs, len(cps))
	}
	// The keys stay (their watermarks say what was emitted), with no open
	// window.
	e, err := New(cfg, Options{Commit: &CommitPolicy{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Restore(st.load); err != nil {
		t.Fatal(err)
	}
	if s := e.Stats(); s.OpenWindows != 0 || s.Keys != 2 || s.Restored != uint64(len(keys)) {
		t.Fatalf("after the flush: %+v", s)
	}
}

// A window whose end plus lateness passed while the gateway was down is
// emitted at the first tick; one still open continues.
func TestCheckpointWindowExpiredWhileDown(t *testing.T) {
	cfg := parseConfig(t, ckWindowConfig)
	st := newStore()
	clk := &wallClock{}
	a := startCk(t, cfg, &CommitPolicy{}, st, clk, nil)
	for i := 1; i <= 5; i++ {
		clk.ns.Store(sec(float64(i)))
		a.send(ckReading("s1", float64(i), 2))
	}
	a.tickAt(5.5)
	if err := a.closeInput(); err != nil {
		t.Fatal(err)
	}
	clk.ns.Store(sec(40)) // down from 5.5 s to 40 s
	b := startCk(t, cfg, &CommitPolicy{}, st, clk, func(e *Engine) {
		if err := e.Restore(st.load); err != nil {
			t.Fatal(err)
		}
	})
	b.tickAt(40)
	st.mu.Lock()
	held := slices.Clone(st.held)
	st.mu.Unlock()
	if len(held) != 1 || !strings.Contains(held[0], "10s/s1/m/0 rev=0 n=5") {
		t.Fatalf("after the first tick the sink holds %q", held)
	}
	b.send(ckReading("s1", 41, 2))
	b.tickAt(63)
	b.tickAt(63.5)
	if err := b.closeInput(); err != nil {
		t.Fatal(err)
	}
	recs, _, _ := st.snapshot()
	want := []string{"10s/s1/m/0 rev=0 n=5 sum=10", "10s/s1/m/40 rev=0 n=1 sum=2", "1m/s1/m/0 rev=0 n=6 sum=12"}
	if len(recs) != len(want) {
		t.Fatalf("records %q, want %q", recs, want)
	}
	for i := range want {
		if !strings.Contains(recs[i], want[i]) {
			t.Fatalf("records %q, want %q", recs, want)
		}
	}
}

// Alert state survives a kill: no second fire, one clear.
func TestCheckpointAlertSurvivesKill(t *testing.T) {
	cfg := parseConfig(t, `
alerts:
  - {id: hot, metric: m, above: 30, clear_below: 28}
`)
	st := newStore()
	clk := &wallClock{}
	pol := &CommitPolicy{MaxReceipts: 1}
	a := startCk(t, cfg, pol, st, clk, nil)
	done := make(chan error, 1)
	r := ckReading("s1", 1, 35)
	r.Receipt = &ingest.Receipt{Done: func(err error) { done <- err }}
	a.send(r)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	a.kill()
	b := startCk(t, cfg, pol, st, clk, func(e *Engine) {
		if err := e.Restore(st.load); err != nil {
			t.Fatal(err)
		}
	})
	b.send(ckReading("s1", 2, 36))
	b.send(ckReading("s1", 3, 20))
	b.send(ckReading("s1", 4, 21))
	if err := b.closeInput(); err != nil {
		t.Fatal(err)
	}
	recs, _, _ := st.snapshot()
	if len(recs) != 2 || !strings.HasSuffix(recs[0], "fire seq=0 t=1000000000") || !strings.Contains(recs[1], "clear seq=1 t=3000000000") ||
		recs[0][:19] != recs[1][:19] {
		t.Fatalf("alerts %q", recs)
	}
}

// Without Options.Tick the checkpoint triggers run on their own timer:
// one receipt is completed MaxDelay after it arrived, with no more input.
func TestCheckpointTimer(t *testing.T) {
	checkNoLeak(t)
	cfg := parseConfig(t, ckWindowConfig)
	st := newStore()
	e, err := New(cfg, Options{Commit: &CommitPolicy{MaxDelay: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	in := make(chan ingest.Reading, 1)
	runErr := make(chan error, 1)
	go func() { runErr <- e.Run(context.Background(), in, st) }()
	var mu sync.Mutex
	var got []error
	r := ckReading("s1", float64(time.Now().Unix()), 1)
	r.Receipt = &ingest.Receipt{Done: func(err error) { mu.Lock(); got = append(got, err); mu.Unlock() }}
	in <- r
	mqtttest.WaitFor(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1 && got[0] == nil
	}, "the receipt completed by the timer")
	close(in)
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
}
