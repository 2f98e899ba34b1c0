package rules

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
)

// store is a Committer sink: it holds the records of the checkpoint being
// built and applies a committed one to a map, the state store. A crash
// throws away everything it holds.
type store struct {
	mu        sync.Mutex
	kv        map[string][]byte
	held      []string // records since the last Commit
	committed []string
	cps       []*Checkpoint // copies of the committed checkpoints (receipts and flags)
	fail      func() bool   // Commit fails when it returns true
	failed    int
	onCommit  func(cp *Checkpoint)
}

var errCommitTest = errors.New("test commit failure")

func newStore() *store { return &store{kv: map[string][]byte{}} }

func summaryRec(s *ingest.Summary) string {
	return fmt.Sprintf("S %s %s/%s/%s/%d rev=%d n=%d sum=%.9g min=%g max=%g late=%d rej=%d", s.ID, s.Window, s.Sensor, s.Metric, s.Start/1e9, s.Revision, s.Count, s.Sum, s.Min, s.Max, s.Late, s.Rejected)
}

func (s *store) Summary(_ context.Context, x *ingest.Summary) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = append(s.held, summaryRec(x))
	return nil
}

func (s *store) Alert(_ context.Context, a *ingest.Alert) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = append(s.held, fmt.Sprintf("A %s %s seq=%d t=%d", a.ID, a.State, a.Seq, a.Time))
	return nil
}

func (s *store) Commit(_ context.Context, cp *Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil && s.fail() {
		s.failed++
		return errCommitTest
	}
	if cp.Replace {
		for k := range s.kv {
			if strings.HasPrefix(k, "r/") {
				delete(s.kv, k)
			}
		}
	}
	for _, c := range cp.State {
		if !strings.HasPrefix(string(c.Key), "r/") {
			panic("state key outside r/: " + string(c.Key))
		}
		if c.Value == nil {
			delete(s.kv, string(c.Key))
		} else {
			s.kv[string(c.Key)] = slices.Clone(c.Value)
		}
	}
	s.committed = append(s.committed, s.held...)
	s.held = s.held[:0]
	c := &Checkpoint{Receipts: slices.Clone(cp.Receipts), Replace: cp.Replace, Final: cp.Final}
	for _, x := range cp.State {
		c.State = append(c.State, StateChange{slices.Clone(x.Key), slices.Clone(x.Value)})
	}
	s.cps = append(s.cps, c)
	if s.onCommit != nil {
		s.onCommit(cp)
	}
	return nil
}

func (s *store) load(fn func(k, v []byte) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range slices.Sorted(maps.Keys(s.kv)) {
		if err := fn([]byte(k), s.kv[k]); err != nil {
			return err
		}
	}
	return nil
}

// snapshot returns copies of the committed records and the store's keys.
func (s *store) snapshot() (committed []string, keys []string, cps []*Checkpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.committed), slices.Sorted(maps.Keys(s.kv)), slices.Clone(s.cps)
}

// crash forgets what the sink held (the records of the checkpoint being
// built): the process died.
func (s *store) crash() { s.held = nil }

const propCheckpointConfig = `
stages:
  - {type: dedup, size: 3}
  - {type: range, metric: t, min: -50, max: 80}
  - {type: deadband, metric: p, delta: 0.5, max_silence: 20s}
  - {type: rate, metric: c, output: c_rate, per: 1s}
  - {type: derive, inputs: [t, p], expr: "t + p", output: tp, max_age: 3s}
alerts:
  - {id: hot, metric: t, above: 30, clear_below: 28, hold: 2s, renotify: 20s}
  - {id: low, metric: p, below: 5}
windows:
  - {name: 10s, size: 10s, lateness: 2s, late: revise, retention: 40s}
  - {name: hop, metric: t, type: hopping, size: 20s, slide: 5s, lateness: 1s}
  - {name: sess, metric: p, type: session, gap: 7s}
`

// event is a step of the driven engine: a reading (with its receipt) at
// wall time wall, or a tick at wall.
type event struct {
	wall int64
	r    *ingest.Reading // nil: a tick
	idx  int             // reading number
}

func propEvents(rng *rand.Rand, n int) []event {
	var evs []event
	sensors := []string{"a", "b", "c"}
	metrics := []string{"t", "p", "c"}
	wall := sec(1000)
	nextTick := wall
	counter := map[string]float64{}
	for i := range n {
		wall += int64(rng.IntN(400)) * int64(time.Millisecond)
		for nextTick <= wall {
			evs = append(evs, event{wall: nextTick})
			nextTick += 500 * int64(time.Millisecond)
		}
		if rng.IntN(40) == 0 { // a silence: idle windows close by the wall clock
			wall += int64(rng.IntN(30)) * int64(time.Second)
		}
		s, m := sensors[rng.IntN(3)], metrics[rng.IntN(3)]
		t := wall - int64(rng.IntN(1000))*int64(time.Millisecond)
		if rng.IntN(10) == 0 {
			t -= int64(rng.IntN(25)) * int64(time.Second) // late, some within retention
		}
		var v float64
		switch m {
		case "t":
			v = 20 + 15*rng.Float64()
			if rng.IntN(30) == 0 {
				v = 100 // rejected by the range stage
			}
		case "p":
			v = float64(rng.IntN(20))
		default:
			counter[s] += float64(rng.IntN(5))
			v = counter[s]
		}
		r := &ingest.Reading{Sensor: s, Metric: m, Value: v, Time: t, Arrival: wall, Unit: "u"}
		evs = append(evs, event{wall: wall, r: r, idx: i})
		if rng.IntN(20) == 0 { // a duplicate for dedup
			d := *r
			evs = append(evs, event{wall: wall, r: &d, idx: i})
		}
	}
	for range 200 { // let everything close
		evs = append(evs, event{wall: nextTick})
		nextTick += int64(time.Second)
	}
	for i := range evs {
		evs[i].idx = i
	}
	return evs
}

// driver runs an engine the way Run does, one event at a time, on a
// hand-set clock.
type driver struct {
	t   *testing.T
	e   *Engine
	clk *wallClock
	em  *emitter
	// done[i]: the receipt of event i was completed (nil error).
	done map[int]bool
}

func newDriver(t *testing.T, cfg Config, pol CommitPolicy, sink *store, clk *wallClock) *driver {
	e, err := New(cfg, Options{Now: clk.Now, Tick: make(chan time.Time), Commit: &pol})
	if err != nil {
		t.Fatal(err)
	}
	return &driver{t: t, e: e, clk: clk, em: newEmitter(context.Background(), sink), done: map[int]bool{}}
}

func (d *driver) step(ev event) {
	d.t.Helper()
	d.clk.ns.Store(ev.wall)
	if ev.r == nil {
		if err := d.e.tick(d.em); err != nil {
			d.t.Fatal(err)
		}
	} else {
		r := *ev.r
		i := ev.idx
		if r.Receipt == nil {
			r.Receipt = &ingest.Receipt{Done: func(err error) {
				if err == nil {
					if d.done[i] {
						d.t.Fatalf("receipt %d completed twice", i)
					}
					d.done[i] = true
				}
			}}
		}
		if err := d.e.processReceipt(d.em, &r); err != nil {
			d.t.Fatal(err)
		}
	}
	if _, err := d.e.maybeCheckpoint(d.em); err != nil {
		d.t.Fatal(err)
	}
}

// finish closes the input the way Run does, flushing everything.
func (d *driver) finish() {
	d.t.Helper()
	d.e.ck.pol.FlushOnClose = true
	if err := d.e.closed(d.em); err != nil {
		d.t.Fatal(err)
	}
}

// TestCheckpointCrashReplay: a random stream through an engine that is
// killed at random points (everything after its last committed checkpoint
// lost, the sink's held records included), restored from the committed
// store and fed what the broker would redeliver (the readings whose
// receipts were not completed) gives exactly the records of an
// uninterrupted run, each once.
func TestCheckpointCrashReplay(t *testing.T) {
	cfg := parseConfig(t, propCheckpointConfig)
	for seed := range uint64(60) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 13))
			evs := propEvents(rng, 1500)
			pol := CommitPolicy{MaxReceipts: 1 + rng.IntN(30), MaxDelay: 250 * time.Millisecond, StateEvery: 2 * time.Second}

			ref := newStore()
			rd := newDriver(t, cfg, pol, ref, &wallClock{})
			for _, ev := range evs {
				rd.step(ev)
			}
			rd.finish()
			all := strings.Join(ref.committed, "\n")
			for _, want := range []string{"/tp/", "/c_rate/", " rev=1 ", "hop/", "sess/", " fire ", " clear ", "late=1"} {
				if !strings.Contains(all, want) {
					t.Fatalf("no record with %q: the stream does not exercise it", want)
				}
			}

			st := newStore()
			st.fail = func() bool { return rng.IntN(8) == 0 }
			clk := &wallClock{}
			d := newDriver(t, cfg, pol, st, clk)
			lastCommit := -1 // event after which the store was last committed
			cur := 0
			st.onCommit = func(*Checkpoint) { lastCommit = cur }
			crashes, started := 0, 0
			for cur = 0; cur < len(evs); cur++ {
				d.step(evs[cur])
				if rng.IntN(150) != 0 {
					continue
				}
				// kill -9: the engine and what the sink held are gone.
				crashes++
				st.crash()
				done := d.done
				d = newDriver(t, cfg, pol, st, clk)
				if err := d.e.Restore(st.load); err != nil {
					t.Fatal(err)
				}
				// The broker redelivers every reading whose receipt was
				// not completed; the events after the last commit are
				// exactly those (and the ticks between them).
				for i := lastCommit + 1; i <= cur; i++ {
					if evs[i].r != nil && done[i] {
						t.Fatalf("event %d: receipt completed but not in the committed checkpoint", i)
					}
				}
				for i := started; i <= lastCommit; i++ {
					if evs[i].r != nil && !done[i] {
						t.Fatalf("event %d: committed but its receipt was not completed", i)
					}
				}
				cur, started = lastCommit, lastCommit+1
			}
			st.fail = nil
			d.finish()
			if crashes == 0 {
				t.Fatal("no crash")
			}
			compareRecords(t, st.committed, ref.committed)
			t.Logf("%d events, %d crashes, %d commit failures, %d records", len(evs), crashes, st.failed, len(st.committed))
		})
	}
}

func compareRecords(t *testing.T, got, want []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range got {
		if seen[r] {
			t.Errorf("record twice: %s", r)
		}
		seen[r] = true
	}
	g, w := slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
	if !slices.Equal(g, w) {
		for _, r := range w {
			if !seen[r] {
				t.Errorf("missing: %s", r)
			}
		}
		ws := map[string]bool{}
		for _, r := range w {
			ws[r] = true
		}
		for _, r := range g {
			if !ws[r] {
				t.Errorf("extra: %s", r)
			}
		}
		t.Fatalf("got %d records, want %d", len(g), len(w))
	}
}
