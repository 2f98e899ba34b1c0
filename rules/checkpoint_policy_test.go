package rules

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
)

// receiptLog records the order in which receipts complete.
type receiptLog struct {
	got []string
}

func (l *receiptLog) receipt(name string) *ingest.Receipt {
	return &ingest.Receipt{Done: func(err error) { l.got = append(l.got, fmt.Sprintf("%s:%v", name, err)) }}
}

func (l *receiptLog) take() string {
	s := strings.Join(l.got, " ")
	l.got = nil
	return s
}

func withReceipt(r ingest.Reading, rc *ingest.Receipt) *ingest.Reading {
	r.Arrival = r.Time
	r.Receipt = rc
	return &r
}

// Without checkpoints a receipt is completed as soon as its reading is
// processed, in order, also for a reading the door refuses or a filter drops.
func TestReceiptsWithoutCommit(t *testing.T) {
	cfg := parseConfig(t, `
stages:
  - {type: filter, expr: "value < 100"}
windows:
  - {name: 10s, size: 10s}
`)
	e, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	em := newEmitter(context.Background(), &collect{})
	var l receiptLog
	for i, v := range []float64{1, 200, math.NaN(), 3} {
		if err := e.processReceipt(em, withReceipt(rd("s", "m", float64(i), v), l.receipt(fmt.Sprint(i)))); err != nil {
			t.Fatal(err)
		}
		if got, want := l.take(), fmt.Sprintf("%d:<nil>", i); got != want {
			t.Fatalf("after reading %d: receipts %q, want %q", i, got, want)
		}
	}
}

// With checkpoints, receipts are completed only after the Commit that
// covers them returned nil, in arrival order; a failed Commit completes
// none, keeps the records and the state, and is retried after MaxDelay.
func TestReceiptsAfterCommit(t *testing.T) {
	cfg := parseConfig(t, `
stages:
  - {type: filter, expr: "value < 100"}
windows:
  - {name: 10s, size: 10s}
`)
	st := newStore()
	fail := true
	st.fail = func() bool { return fail }
	clk := &wallClock{}
	d := newDriver(t, cfg, CommitPolicy{MaxReceipts: 3}, st, clk)
	var l receiptLog
	for i, v := range []float64{1, 200, 3} {
		clk.ns.Store(sec(float64(i)))
		if err := d.e.processReceipt(d.em, withReceipt(rd("s", "m", float64(i), v), l.receipt(fmt.Sprint(i)))); err != nil {
			t.Fatal(err)
		}
	}
	if got := l.take(); got != "" || st.failed != 1 || d.e.Stats().CommitErrors != 1 || d.e.Stats().Pending != 3 {
		t.Fatalf("after a failed commit: receipts %q, failures %d, stats %+v", got, st.failed, d.e.Stats())
	}
	// Backoff: no retry before MaxDelay, even with the window full.
	clk.ns.Store(sec(2) + int64(100*time.Millisecond))
	if _, err := d.e.maybeCheckpoint(d.em); err != nil || st.failed != 1 {
		t.Fatalf("retried within the backoff: %v, %d failures", err, st.failed)
	}
	fail = false
	clk.ns.Store(sec(3))
	if _, err := d.e.maybeCheckpoint(d.em); err != nil {
		t.Fatal(err)
	}
	if got := l.take(); got != "0:<nil> 1:<nil> 2:<nil>" {
		t.Fatalf("receipts %q", got)
	}
	if len(st.cps) != 1 || len(st.cps[0].Receipts) != 3 || d.e.Stats().Checkpoints != 1 || d.e.Stats().Pending != 0 {
		t.Fatalf("checkpoints %d, stats %+v", len(st.cps), d.e.Stats())
	}
}

// The triggers: MaxReceipts at once; MaxDelay after the first receipt or
// record; StateEvery for state alone; nothing, nothing sent.
func TestCheckpointTriggers(t *testing.T) {
	cfg := parseConfig(t, `
windows:
  - {name: 10s, size: 10s}
`)
	st := newStore()
	clk := &wallClock{}
	d := newDriver(t, cfg, CommitPolicy{MaxReceipts: 2, MaxDelay: 250 * time.Millisecond, StateEvery: 2 * time.Second}, st, clk)
	var l receiptLog
	ms := func(n int64) int64 { return n * int64(time.Millisecond) }
	at := func(wall int64, r *ingest.Reading) {
		t.Helper()
		if r != nil {
			d.step(event{wall: wall, r: r, idx: -1})
		} else {
			d.step(event{wall: wall})
		}
	}
	proc := func(wall int64, ts float64, rc *ingest.Receipt) {
		t.Helper()
		clk.ns.Store(wall)
		if err := d.e.processReceipt(d.em, withReceipt(rd("s", "m", ts, 1), rc)); err != nil {
			t.Fatal(err)
		}
		if _, err := d.e.maybeCheckpoint(d.em); err != nil {
			t.Fatal(err)
		}
	}
	// MaxReceipts.
	proc(ms(1000), 1, l.receipt("a"))
	proc(ms(1010), 1.1, l.receipt("b"))
	if got := l.take(); got != "a:<nil> b:<nil>" || len(st.cps) != 1 {
		t.Fatalf("MaxReceipts: %q, %d checkpoints", got, len(st.cps))
	}
	// MaxDelay from the first receipt, checked on ticks.
	proc(ms(2000), 2, l.receipt("c"))
	at(ms(2200), nil)
	if len(st.cps) != 1 {
		t.Fatal("checkpoint before MaxDelay")
	}
	at(ms(2250), nil)
	if got := l.take(); got != "c:<nil>" || len(st.cps) != 2 {
		t.Fatalf("MaxDelay: %q, %d checkpoints", got, len(st.cps))
	}
	// State alone (a reading without receipt): StateEvery.
	proc(ms(3000), 3, nil)
	at(ms(4900), nil)
	if len(st.cps) != 2 {
		t.Fatal("state checkpointed before StateEvery")
	}
	at(ms(5000), nil)
	if len(st.cps) != 3 || len(st.cps[2].Receipts) != 0 {
		t.Fatalf("StateEvery: %d checkpoints", len(st.cps))
	}
	// A record alone (the window closes on a tick): MaxDelay.
	at(ms(20000), nil)
	at(ms(20250), nil)
	if len(st.cps) != 4 || len(st.committed) != 1 {
		t.Fatalf("record: %d checkpoints, records %q", len(st.cps), st.committed)
	}
	// Nothing: nothing is sent.
	for w := int64(21000); w < 40000; w += 500 {
		at(ms(w), nil)
	}
	if len(st.cps) != 4 {
		t.Fatalf("empty checkpoints sent: %d", len(st.cps))
	}
	_ = at
}

// The broker's in-flight window is learned downward: a MaxDelay
// checkpoint that finds P < MaxReceipts receipts pending, none of them
// recent, lowers the limit to P.
func TestCheckpointLearnsInflightWindow(t *testing.T) {
	cfg := parseConfig(t, `
windows:
  - {name: 10s, size: 10s}
`)
	st := newStore()
	clk := &wallClock{}
	d := newDriver(t, cfg, CommitPolicy{MaxReceipts: 20, MaxDelay: 200 * time.Millisecond}, st, clk)
	var l receiptLog
	ms := func(n int64) int64 { return n * int64(time.Millisecond) }
	burst := func(wall int64) {
		for i := range 5 {
			clk.ns.Store(wall + int64(i))
			if err := d.e.processReceipt(d.em, withReceipt(rd("s", "m", 1, 1), l.receipt("r"))); err != nil {
				t.Fatal(err)
			}
			if _, err := d.e.maybeCheckpoint(d.em); err != nil {
				t.Fatal(err)
			}
		}
	}
	burst(ms(1000)) // the broker sends 5 and waits for the PUBACKs
	if len(st.cps) != 0 {
		t.Fatal("checkpoint before MaxDelay")
	}
	d.step(event{wall: ms(1200)})
	if len(st.cps) != 1 || d.e.ck.trig.Limit() != 20 {
		t.Fatalf("%d checkpoints, limit %d: one stall (it could be a lone message) must not lower the limit", len(st.cps), d.e.ck.trig.Limit())
	}
	burst(ms(1300)) // again 5, and a wait: the broker's window is 5
	d.step(event{wall: ms(1500)})
	if len(st.cps) != 2 || d.e.ck.trig.Limit() != 5 {
		t.Fatalf("%d checkpoints, limit %d after two stalls at 5", len(st.cps), d.e.ck.trig.Limit())
	}
	burst(ms(1600)) // the next 5: committed at the fifth, without waiting
	if len(st.cps) != 3 || len(st.cps[2].Receipts) != 5 {
		t.Fatalf("%d checkpoints", len(st.cps))
	}
	// Input already waiting after a checkpoint at the limit: the window
	// is larger than learned, the limit doubles.
	d.e.ck.backlog = func() int { return 1 }
	burst(ms(1700))
	if d.e.ck.trig.Limit() != 10 {
		t.Fatalf("limit %d after a backlog at 5, want 10", d.e.ck.trig.Limit())
	}
	d.e.ck.backlog = nil
	// A minute later the limit goes back up.
	d.step(event{wall: ms(62000)})
	if d.e.ck.trig.Limit() != 20 {
		t.Fatalf("limit %d a minute later", d.e.ck.trig.Limit())
	}
}

// Only what changed since the last checkpoint is in the next one; a
// closing window's state leaves with its summary.
func TestCheckpointDirtyOnly(t *testing.T) {
	cfg := parseConfig(t, `
stages:
  - {type: deadband, delta: 0.1}
alerts:
  - {id: hot, above: 30}
windows:
  - {name: 10s, size: 10s}
`)
	st := newStore()
	clk := &wallClock{}
	d := newDriver(t, cfg, CommitPolicy{MaxReceipts: 1}, st, clk)
	var l receiptLog
	for i, s := range []string{"a", "b", "c"} {
		d.step(event{wall: sec(1), r: withReceipt(rd(s, "m", 1, float64(i)), l.receipt(s)), idx: -1})
	}
	if len(st.cps) != 3 {
		t.Fatalf("%d checkpoints", len(st.cps))
	}
	keys := func(cp *Checkpoint) (ks []string) {
		for _, c := range cp.State {
			ks = append(ks, fmt.Sprintf("%q del=%v", c.Key, c.Value == nil))
		}
		return ks
	}
	want := `["\"r/w/10s\\x00c\\x00\\x00m\" del=false" "\"r/a/hot\\x00c\\x00m\" del=false" "\"r/s/0\\x00c\\x00m\" del=false" "\"r/e\" del=false"]`
	if got := fmt.Sprintf("%q", keys(st.cps[2])); got != want {
		t.Fatalf("third checkpoint %s, want %s", got, want)
	}
	// The window of b closes with b's next reading: its summary and its
	// key's new state are in the same checkpoint.
	d.step(event{wall: sec(12), r: withReceipt(rd("b", "m", 11, 5), l.receipt("b2")), idx: -1})
	last := st.cps[len(st.cps)-1]
	if len(st.committed) != 1 || !strings.Contains(st.committed[0], "10s/b/m/0") || !strings.Contains(fmt.Sprint(keys(last)), `r/w/10s\x00b`) {
		t.Fatalf("records %q, last checkpoint %q", st.committed, keys(last))
	}
	if s := d.e.Stats(); s.StateKeys != int64(len(st.kv)) || s.CheckpointKeys != int64(len(last.State)) {
		t.Fatalf("stats %+v, %d keys in the store", s, len(st.kv))
	}
}

// State of a window rule, alert or stage that is gone is dropped on
// restore (counted), and the first checkpoint replaces the store.
func TestRestoreDropsRemovedRules(t *testing.T) {
	old := parseConfig(t, `
stages:
  - {type: deadband, delta: 0.1}
alerts:
  - {id: hot, above: 30}
windows:
  - {name: 10s, size: 10s}
  - {name: 1m, size: 1m}
`)
	st := newStore()
	clk := &wallClock{}
	d := newDriver(t, old, CommitPolicy{MaxReceipts: 1}, st, clk)
	var l receiptLog
	d.step(event{wall: sec(1), r: withReceipt(rd("a", "m", 1, 40), l.receipt("a")), idx: -1})
	nkeys := len(st.kv)

	cfg := parseConfig(t, `
alerts:
  - {id: hot, above: 35}
windows:
  - {name: 10s, size: 10s}
  - {name: 1m, size: 2m}
`)
	d2 := newDriver(t, cfg, CommitPolicy{MaxReceipts: 1}, st, clk)
	if err := d2.e.Restore(st.load); err != nil {
		t.Fatal(err)
	}
	// The alert changed its threshold, the 1m window its size, the
	// deadband went: three keys dropped; the 10s window and r/e restored.
	if s := d2.e.Stats(); s.StateDropped != 3 || s.Restored != uint64(nkeys-3) {
		t.Fatalf("stats %+v of %d keys", s, nkeys)
	}
	d2.step(event{wall: sec(2), r: withReceipt(rd("a", "m", 2, 1), l.receipt("b")), idx: -1})
	if cp := st.cps[len(st.cps)-1]; !cp.Replace {
		t.Fatal("the first checkpoint after a drop is not Replace")
	}
	for k := range st.kv {
		if strings.HasPrefix(k, "r/s/") {
			t.Fatalf("dropped key %q still in the store", k)
		}
	}
	// A corrupt value fails Restore.
	st.kv["r/w/10s\x00a\x00\x00m"] = []byte{1, 2}
	d3 := newDriver(t, cfg, CommitPolicy{}, st, clk)
	if err := d3.e.Restore(st.load); !errors.Is(err, ErrRestore) {
		t.Fatalf("corrupt value: %v", err)
	}
}

// After Adopt the first checkpoint is Replace with the full state; a
// handover closes with a Final checkpoint without a flush, so the store
// matches memory.
func TestCheckpointAdoptAndHandover(t *testing.T) {
	cfg := parseConfig(t, `
alerts:
  - {id: hot, above: 30}
windows:
  - {name: 10s, size: 10s}
`)
	st := newStore()
	clk := &wallClock{}
	a := startCk(t, cfg, &CommitPolicy{}, st, clk, nil)
	a.send(ckReading("s1", 1, 40))
	a.send(ckReading("s2", 1, 1))
	a.e.PrepareHandover()
	if err := a.closeInput(); err != nil {
		t.Fatal(err)
	}
	recs, keys, cps := st.snapshot()
	if len(cps) != 1 || !cps[0].Final || len(recs) != 1 || !strings.HasPrefix(recs[0], "A ") {
		t.Fatalf("handover: records %q, %d checkpoints", recs, len(cps))
	}
	b, err := New(cfg, Options{Now: clk.Now, Tick: make(chan time.Time), Commit: &CommitPolicy{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Adopt(context.Background(), a.e, st); err != nil {
		t.Fatal(err)
	}
	em := newEmitter(context.Background(), st)
	if err := b.checkpoint(em, false); err != nil {
		t.Fatal(err)
	}
	_, keys2, cps := st.snapshot()
	last := cps[len(cps)-1]
	if !last.Replace || len(last.State) != len(keys) || fmt.Sprint(keys2) != fmt.Sprint(keys) {
		t.Fatalf("after Adopt: replace %v, %d changes, keys %q, before %q", last.Replace, len(last.State), keys2, keys)
	}
}

// A key that key_ttl forgets is deleted from the store with the next
// checkpoint (window key, route state, alert state).
func TestCheckpointSweptKeysDeleted(t *testing.T) {
	cfg := parseConfig(t, `
key_ttl: 1m
stages:
  - {type: deadband, delta: 0.1}
alerts:
  - {id: hot, above: 30}
windows:
  - {name: 10s, size: 10s}
`)
	st := newStore()
	clk := &wallClock{}
	d := newDriver(t, cfg, CommitPolicy{MaxReceipts: 1}, st, clk)
	var l receiptLog
	d.step(event{wall: sec(1), r: withReceipt(rd("a", "m", 1, 1), l.receipt("a")), idx: -1})
	if len(st.kv) != 4 {
		t.Fatalf("keys %q", st.kv)
	}
	for w := 2.0; w < 200; w += 0.5 {
		d.step(event{wall: sec(w)})
	}
	if len(st.kv) != 1 || st.kv["r/e"] == nil || d.e.Stats().StateKeys != 1 || d.e.Stats().Keys != 0 {
		t.Fatalf("after key_ttl: keys %q, stats %+v", st.kv, d.e.Stats())
	}
}

// TestCheckpointNotInsideAnInput: the readings of one durable input
// (Reading.More on all but the last) are never split by a checkpoint, even
// when the delay falls due between them: the broker would redeliver the
// whole input after a crash, and the part already committed would count
// twice.
func TestCheckpointNotInsideAnInput(t *testing.T) {
	cfg := parseConfig(t, `
windows:
  - {name: 10s, size: 10s}
`)
	st := newStore()
	clk := &wallClock{}
	d := newDriver(t, cfg, CommitPolicy{MaxReceipts: 2, MaxDelay: 250 * time.Millisecond, StateEvery: 2 * time.Second}, st, clk)
	var l receiptLog
	ms := func(n int64) int64 { return n * int64(time.Millisecond) }
	proc := func(wall int64, r *ingest.Reading) {
		t.Helper()
		clk.ns.Store(wall)
		if err := d.e.processReceipt(d.em, r); err != nil {
			t.Fatal(err)
		}
		if _, err := d.e.maybeCheckpoint(d.em); err != nil {
			t.Fatal(err)
		}
	}
	proc(ms(1000), withReceipt(rd("s", "m", 1, 1), l.receipt("a")))
	first := withReceipt(rd("s", "n", 1.2, 2), nil)
	first.More = true
	proc(ms(1300), first) // MaxDelay is due, but the input is not complete
	if len(st.cps) != 0 {
		t.Fatalf("checkpoint inside an input: %d", len(st.cps))
	}
	proc(ms(1301), withReceipt(rd("s", "p", 1.2, 3), l.receipt("b")))
	if got := l.take(); got != "a:<nil> b:<nil>" || len(st.cps) != 1 {
		t.Fatalf("after the input: receipts %q, %d checkpoints", got, len(st.cps))
	}
}
