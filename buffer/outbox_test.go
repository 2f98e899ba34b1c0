package buffer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/sensorgate/sensorgate/test/leak"
)

// checkGoroutines fails the test if goroutines started during it are
// still running at its end (with a retry loop for slow exits).
func checkGoroutines(t *testing.T) {
	t.Helper()
	leak.Check(t)
}

func testConfig() Config {
	var c Config
	c.CommitDelay = 2 * time.Millisecond
	return c
}

// testConfigAt is testConfig for the file at path.
func testConfigAt(path string) Config {
	c := testConfig()
	c.Path = path
	return c
}

// open opens an outbox in dir (a fresh temp dir when empty) and closes it
// at the end of the test.
func open(t *testing.T, path string, cfg Config) *Outbox {
	t.Helper()
	return openWith(t, path, cfg, Options{})
}

// openWith is open with runtime options (a roll-up hook, a clock).
func openWith(t *testing.T, path string, cfg Config, opts Options) *Outbox {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "outbox.db")
	}
	cfg.Path = path
	o, err := Open(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func payload(i int) []byte { return []byte(fmt.Sprintf("rec-%06d", i)) }

func readAll(t *testing.T, o *Outbox, l Lane) []Record {
	t.Helper()
	var out []Record
	var after uint64
	for {
		recs, err := o.Read(l, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
		after = recs[len(recs)-1].Seq
	}
}

func payloads(recs []Record) []string {
	var s []string
	for _, r := range recs {
		s = append(s, string(r.Payload))
	}
	return s
}

func testOrderWithinLane(t *testing.T, mk factory) {
	checkGoroutines(t)
	ctx := ctx10(t)
	for _, tc := range []struct {
		name string
		add  func(o *Outbox, i int) error
	}{
		{"enqueue", func(o *Outbox, i int) error { return o.Enqueue(ctx, LaneSummaries, payload(i)) }},
		{"append", func(o *Outbox, i int) error { return o.Append(ctx, LaneSummaries, payload(i)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.CommitMax = 7 // many small batches
			o := mk(t, cfg, Options{})
			buf := make([]byte, 0, 32)
			for i := range 100 {
				if err := tc.add(o, i); err != nil {
					t.Fatal(err)
				}
			}
			// The caller may reuse its buffer once Enqueue returned.
			buf = append(buf[:0], "reused"...)
			if err := o.Enqueue(ctx, LaneSummaries, buf); err != nil {
				t.Fatal(err)
			}
			copy(buf, "XXXXXX")
			if err := o.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			recs := readAll(t, o, LaneSummaries)
			if len(recs) != 101 {
				t.Fatalf("got %d records, want 101", len(recs))
			}
			for i, r := range recs[:100] {
				if string(r.Payload) != string(payload(i)) {
					t.Fatalf("record %d: %q, want %q", i, r.Payload, payload(i))
				}
				if r.Seq != recs[0].Seq+uint64(i) {
					t.Fatalf("record %d: seq %d after %d", i, r.Seq, recs[0].Seq)
				}
				if want := fmt.Sprintf("%s-summaries-%d", o.Epoch(), r.Seq); r.ID != want {
					t.Fatalf("id %q, want %q", r.ID, want)
				}
				if r.Lane != LaneSummaries || r.Stored == 0 {
					t.Fatalf("record %+v", r)
				}
			}
			if string(recs[100].Payload) != "reused" {
				t.Fatalf("enqueued payload changed with the caller's buffer: %q", recs[100].Payload)
			}
			// Read with after and max.
			base := recs[0].Seq - 1
			part, err := o.Read(LaneSummaries, base+50, 3)
			if err != nil || len(part) != 3 || part[0].Seq != base+51 || part[2].Seq != base+53 {
				t.Fatalf("Read(50,3): %v %v", part, err)
			}
		})
	}
}

func testPriorityAcrossLanes(t *testing.T, mk factory) {
	ctx := ctx10(t)
	o := mk(t, testConfig(), Options{})
	// Lower priority first, so that arrival order differs from priority.
	for i := range 3 {
		for _, l := range []Lane{LaneDead, LaneRaw, LaneSummaries, LaneAlerts} {
			if err := o.Enqueue(ctx, l, []byte(fmt.Sprintf("%s-%d", l, i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err := o.ReadByPriority(nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"alerts-0", "alerts-1", "alerts-2", "summaries-0", "summaries-1", "summaries-2", "raw-0", "raw-1", "raw-2"}
	if got := payloads(recs); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %v, want %v", got, want)
	}
	// A max smaller than the first lane, and resuming after what was taken.
	recs, _ = o.ReadByPriority(nil, 2)
	if got := payloads(recs); strings.Join(got, ",") != "alerts-0,alerts-1" {
		t.Fatalf("max 2: %v", got)
	}
	last := map[Lane]uint64{LaneAlerts: recs[1].Seq + 1}
	recs, _ = o.ReadByPriority(func(l Lane) uint64 { return last[l] }, 2)
	if got := payloads(recs); strings.Join(got, ",") != "summaries-0,summaries-1" {
		t.Fatalf("after alerts: %v", got)
	}
}

func testAckPartialBatch(t *testing.T, mk factory) {
	ctx := ctx10(t)
	o := mk(t, testConfig(), Options{})
	var ps [][]byte
	for i := range 10 {
		ps = append(ps, payload(i))
	}
	if err := o.Append(ctx, LaneAlerts, ps...); err != nil {
		t.Fatal(err)
	}
	recs, _ := o.Read(LaneAlerts, 0, 10)
	if len(recs) != 10 {
		t.Fatalf("read %d", len(recs))
	}
	// Ack a partial, unordered batch plus unknown seqs.
	if err := o.Ack(LaneAlerts, recs[3].Seq, recs[0].Seq, recs[1].Seq, 999, recs[1].Seq); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(LaneSummaries, 1); err != nil { // another lane, unknown
		t.Fatal(err)
	}
	left := readAll(t, o, LaneAlerts)
	want := []string{"rec-000002", "rec-000004", "rec-000005", "rec-000006", "rec-000007", "rec-000008", "rec-000009"}
	if got := payloads(left); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("after ack: %v", got)
	}
	st := o.Stats()
	a := st.Lanes[LaneAlerts]
	if a.Depth != 7 || a.Acked != 3 || a.Appended != 10 {
		t.Fatalf("stats: %+v", a)
	}
	if a.Bytes != 7*(10+recordOverhead) {
		t.Fatalf("bytes %d", a.Bytes)
	}
	var all []uint64
	for _, r := range left {
		all = append(all, r.Seq)
	}
	if err := o.Ack(LaneAlerts, all...); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Lanes[LaneAlerts].Depth != 0 || st.Lanes[LaneAlerts].Bytes != 0 || st.Lanes[LaneAlerts].OldestAge != 0 {
		t.Fatalf("after acking all: %+v", st.Lanes[LaneAlerts])
	}
}

func TestReopen(t *testing.T) {
	checkGoroutines(t)
	ctx := ctx10(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	cfg := testConfig()
	cfg.CommitDelay = time.Hour // only Close commits
	cfg.Path = path
	o, err := Open(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := o.Enqueue(ctx, LaneRaw, payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	epoch := o.Epoch()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := o.Enqueue(ctx, LaneRaw, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("enqueue after close: %v", err)
	}
	if err := o.Append(ctx, LaneRaw, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if _, err := o.Read(LaneRaw, 0, 10); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if err := o.Ack(LaneRaw, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("ack after close: %v", err)
	}
	if err := o.Flush(ctx); err != nil {
		t.Fatalf("flush after close: %v", err)
	}
	_ = o.Stats() // must not fail on a closed outbox
	if err := o.Compact(); !errors.Is(err, ErrClosed) {
		t.Fatalf("compact after close: %v", err)
	}
	if err := o.Maintain(); !errors.Is(err, ErrClosed) {
		t.Fatalf("maintain after close: %v", err)
	}
	if err := Check(path); err != nil {
		t.Fatal(err)
	}

	o, err = Open(testConfigAt(path), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if o.Epoch() != epoch {
		t.Fatalf("epoch changed: %s -> %s", epoch, o.Epoch())
	}
	recs := readAll(t, o, LaneRaw)
	if len(recs) != 5 || recs[4].Seq != 5 || recs[0].ID != epoch+"-raw-1" {
		t.Fatalf("after reopen: %+v", recs)
	}
	if st := o.Stats(); st.Lanes[LaneRaw].Depth != 5 || st.Lanes[LaneRaw].Bytes != 5*(10+recordOverhead) {
		t.Fatalf("stats after reopen: %+v", st.Lanes[LaneRaw])
	}
	// Ack everything: seqs still continue after another reopen.
	for _, r := range recs {
		o.Ack(LaneRaw, r.Seq)
	}
	o.Close()
	o, err = Open(testConfigAt(path), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.Append(ctx, LaneRaw, []byte("next")); err != nil {
		t.Fatal(err)
	}
	recs = readAll(t, o, LaneRaw)
	if len(recs) != 1 || recs[0].Seq != 6 {
		t.Fatalf("seq did not continue: %+v", recs)
	}
}

func TestAppendIsDurableOnReturn(t *testing.T) {
	ctx := ctx10(t)
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := newTestLogger(&buf, &mu)
	path := filepath.Join(t.TempDir(), "outbox.db")
	o, err := Open(testConfigAt(path), Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	notified, unsubscribe := o.Subscribe()
	defer unsubscribe()
	if err := o.Append(ctx, LaneAlerts, []byte("a"), []byte("b")); err != nil {
		t.Fatal(err)
	}
	// Visible without Flush, and the commit was logged before Append returned.
	if recs := readAll(t, o, LaneAlerts); len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	mu.Lock()
	log := buf.String()
	mu.Unlock()
	if !strings.Contains(log, `msg="outbox commit" lane=alerts last_seq=2 records=2`) {
		t.Fatalf("commit log line missing: %s", log)
	}
	select {
	case <-notified:
	default:
		t.Fatal("no notification after a commit")
	}
	if err := o.Append(ctx, Lane(9), []byte("x")); err == nil {
		t.Fatal("unknown lane accepted")
	}
}

func testEnqueueBackpressure(t *testing.T, mk factory) {
	checkGoroutines(t)
	ctx := ctx10(t)
	cfg := testConfig()
	cfg.CommitDelay = time.Hour
	cfg.CommitMax = 100
	cfg.QueueMax = 3
	o := mk(t, cfg, Options{})
	for i := range 3 {
		if err := o.Enqueue(ctx, LaneRaw, payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- o.Enqueue(short, LaneRaw, payload(3)) }()
	select {
	case err := <-done:
		t.Fatalf("Enqueue on a full queue returned %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("blocked Enqueue: %v, want context.Canceled", err)
	}
	// A blocked producer proceeds once the queue drains.
	go func() { done <- o.Enqueue(ctx, LaneRaw, payload(4)) }()
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := payloads(readAll(t, o, LaneRaw)); strings.Join(got, ",") != "rec-000000,rec-000001,rec-000002,rec-000004" {
		t.Fatalf("got %v", got)
	}
}

func TestCloseCommitsPending(t *testing.T) {
	checkGoroutines(t)
	ctx := ctx10(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	cfg := testConfig()
	cfg.CommitDelay = time.Hour
	cfg.Path = path
	o, err := Open(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				o.Enqueue(ctx, LaneSummaries, []byte(fmt.Sprintf("%d-%d", p, i)))
			}
		}()
	}
	wg.Wait()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = open(t, path, testConfig())
	if n := len(readAll(t, o, LaneSummaries)); n != 200 {
		t.Fatalf("%d records after close and reopen, want 200", n)
	}
}

// TestConcurrentProducers mixes Append and Enqueue from many goroutines
// and checks every record arrived once, in each producer's order.
func testConcurrentProducers(t *testing.T, mk factory) {
	checkGoroutines(t)
	ctx := ctx10(t)
	cfg := testConfig()
	cfg.CommitMax = 50
	cfg.QueueMax = 64
	o := mk(t, cfg, Options{})
	const producers, each = 16, 200
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; {
				if p%2 == 0 {
					if err := o.Enqueue(ctx, LaneRaw, []byte(fmt.Sprintf("%02d-%04d", p, i))); err != nil {
						t.Error(err)
						return
					}
					i++
					continue
				}
				// Appends of 1 to 3 records.
				n := min(1+i%3, each-i)
				var ps [][]byte
				for j := range n {
					ps = append(ps, []byte(fmt.Sprintf("%02d-%04d", p, i+j)))
				}
				if err := o.Append(ctx, LaneRaw, ps...); err != nil {
					t.Error(err)
					return
				}
				i += n
			}
		}()
	}
	// A reader acks as it goes.
	stop := make(chan struct{})
	var acked atomic.Int64
	var got sync.Map
	rdone := make(chan struct{})
	notified, unsubscribe := o.Subscribe()
	defer unsubscribe()
	go func() {
		defer close(rdone)
		var after uint64
		for {
			recs, err := o.Read(LaneRaw, after, 100)
			if err != nil {
				t.Error(err)
				return
			}
			for _, r := range recs {
				if _, dup := got.LoadOrStore(string(r.Payload), r.Seq); dup {
					t.Errorf("duplicate %s", r.Payload)
				}
				after = r.Seq
				if err := o.Ack(LaneRaw, r.Seq); err != nil {
					t.Error(err)
				}
				acked.Add(1)
			}
			if len(recs) == 0 {
				select {
				case <-stop:
					return
				case <-notified:
				case <-time.After(5 * time.Millisecond):
				}
			}
		}
	}()
	wg.Wait()
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for acked.Load() < producers*each && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	<-rdone
	if acked.Load() != producers*each {
		t.Fatalf("acked %d of %d", acked.Load(), producers*each)
	}
	// Per producer, seqs increase with the producer's own order.
	for p := range producers {
		var last uint64
		for i := range each {
			v, ok := got.Load(fmt.Sprintf("%02d-%04d", p, i))
			if !ok {
				t.Fatalf("missing %02d-%04d", p, i)
			}
			if s := v.(uint64); s <= last {
				t.Fatalf("producer %d out of order at %d", p, i)
			} else {
				last = s
			}
		}
	}
	st := o.Stats()
	if st.Lanes[LaneRaw].Depth != 0 || st.Lanes[LaneRaw].Appended != producers*each || st.CommitRecords != producers*each {
		t.Fatalf("stats %+v", st)
	}
	if st.Commits == 0 || st.CommitLatency <= 0 {
		t.Fatalf("commit stats %+v", st)
	}
	var hl, hs uint64
	for i := range st.CommitLatencyHist {
		hl += st.CommitLatencyHist[i]
	}
	for i := range st.CommitSizeHist {
		hs += st.CommitSizeHist[i]
	}
	if hl != st.Commits || hs != st.Commits || len(st.CommitSizeHist) != len(CommitSizeBounds)+1 {
		t.Fatalf("histograms %v %v, %d commits", st.CommitLatencyHist, st.CommitSizeHist, st.Commits)
	}
}

func TestEnqueueAllocs(t *testing.T) {
	cfg := testConfig()
	cfg.CommitDelay = time.Hour
	cfg.CommitMax = 100000
	cfg.QueueMax = 100000
	o := open(t, "", cfg)
	ctx := context.Background()
	p := make([]byte, 100)
	// Warm both arenas up.
	for range 2 {
		for range 2000 {
			o.Enqueue(ctx, LaneRaw, p)
		}
		o.Flush(ctx)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if err := o.Enqueue(ctx, LaneRaw, p); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Enqueue allocated %v times per record", allocs)
	}
}

// TestStoredFormat pins the on-disk layout other tools rely on.
func TestStoredFormat(t *testing.T) {
	ctx := ctx10(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	o, err := Open(testConfigAt(path), Options{})
	if err != nil {
		t.Fatal(err)
	}
	o.Append(ctx, LaneSummaries, []byte("p"))
	epoch := o.Epoch()
	o.Close()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bbolt.Tx) error {
		if e := tx.Bucket([]byte("meta")).Get([]byte("epoch")); string(e) != epoch || len(e) != 16 {
			t.Errorf("epoch %q", e)
		}
		b := tx.Bucket([]byte("lane.summaries"))
		k, v := b.Cursor().First()
		if binary.BigEndian.Uint64(k) != 1 || string(v[8:]) != "p" || b.Sequence() != 1 {
			t.Errorf("record %x %x seq %d", k, v, b.Sequence())
		}
		return nil
	})
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func newTestLogger(buf *bytes.Buffer, mu *sync.Mutex) *slog.Logger {
	return slog.New(slog.NewTextHandler(lockedWriter{mu, buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func testAppendDoesNotWaitForCommitDelay(t *testing.T, mk factory) {
	ctx := ctx10(t)
	cfg := testConfig()
	cfg.CommitDelay = time.Hour
	o := mk(t, cfg, Options{})
	// An enqueued record waits for the delay...
	if err := o.Enqueue(ctx, LaneRaw, []byte("queued")); err != nil {
		t.Fatal(err)
	}
	// ...until an Append, whose caller waits, takes it along.
	if err := o.Append(ctx, LaneAlerts, []byte("now")); err != nil {
		t.Fatal(err)
	}
	if got := payloads(readAll(t, o, LaneRaw)); len(got) != 1 {
		t.Fatalf("the queued record did not share the Append's commit: %v", got)
	}
	// With an append delay, a cancelled wait returns the context's error.
	cfg.AppendDelay = time.Hour
	o2 := mk(t, cfg, Options{})
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := o2.Append(short, LaneAlerts, []byte("late")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	// Close still commits it.
	o2.Close()
	if st := o2.Stats(); st.Lanes[LaneAlerts].Appended != 1 {
		t.Fatalf("stats %+v", st.Lanes[LaneAlerts])
	}
}

// TestDrained: Drained returns once nothing is left to deliver, woken by
// the ack that empties the last delivery lane; the dead lane does not count,
// a record waiting for its commit does, and Close ends the wait.
func TestDrained(t *testing.T) {
	ctx := ctx10(t)
	cfg := testConfig()
	cfg.CommitDelay = time.Hour // only Flush commits
	o := open(t, "", cfg)
	if err := o.Drained(ctx); err != nil {
		t.Fatalf("empty outbox: %v", err)
	}
	if err := o.Append(ctx, LaneDead, []byte("dead")); err != nil {
		t.Fatal(err)
	}
	if err := o.Drained(ctx); err != nil {
		t.Fatalf("dead lane only: %v", err)
	}
	for i := range 3 {
		if err := o.Enqueue(ctx, LaneRaw, payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- o.Drained(ctx) }()
	expired, cancel := context.WithCancel(ctx)
	cancel()
	if err := o.Drained(expired); !errors.Is(err, context.Canceled) {
		t.Fatalf("pending records: %v, want context.Canceled", err)
	}
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, o, LaneRaw)
	if len(recs) != 3 {
		t.Fatalf("%d records", len(recs))
	}
	if err := o.Ack(LaneRaw, recs[0].Seq, recs[1].Seq); err != nil {
		t.Fatal(err)
	}
	if err := o.Drained(expired); !errors.Is(err, context.Canceled) {
		t.Fatalf("one record left: %v, want context.Canceled", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Drained returned %v with a record left", err)
	default:
	}
	if err := o.Ack(LaneRaw, recs[2].Seq); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if err := o.Enqueue(ctx, LaneAlerts, []byte("a")); err != nil {
		t.Fatal(err)
	}
	go func() { done <- o.Drained(ctx) }()
	o.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Drained across Close: %v", err)
	}
}
