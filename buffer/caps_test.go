package buffer

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/sensorgate/sensorgate/ingest"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(c *Config)
		paths []string
	}{
		{"defaults", func(c *Config) {}, nil},
		{"negatives", func(c *Config) {
			c.CommitDelay, c.CommitMax, c.QueueMax, c.MaxBytes = -1, -1, -1, -1
		}, []string{"commit_delay", "commit_max", "queue_max", "max_bytes"}},
		{"small file", func(c *Config) { c.MaxFileSize = 1000 }, []string{"max_file_size"}},
		{"lane", func(c *Config) {
			c.Lanes.Raw.MaxBytes, c.Lanes.Raw.MaxAge, c.Lanes.Raw.RollUpBatch = -1, -1, 1
		}, []string{"lanes.raw.max_bytes", "lanes.raw.max_age", "lanes.raw.rollup_batch"}},
		{"unknown policy", func(c *Config) { c.Lanes.Alerts.Policy = "drop" }, []string{"lanes.alerts.policy"}},
		{"rollup", func(c *Config) { c.Lanes.Summaries.Policy = PolicyRollUp }, nil},
		{"rollup on raw", func(c *Config) { c.Lanes.Raw.Policy = PolicyRollUp }, []string{"lanes.raw.policy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			c.Defaults()
			tc.edit(&c)
			err := c.Validate()
			var got []string
			for _, e := range ingest.FlattenErrors(err) {
				var fe *ingest.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("not a FieldError: %v", e)
				}
				got = append(got, fe.Path)
			}
			if strings.Join(got, " ") != strings.Join(tc.paths, " ") {
				t.Fatalf("paths %v, want %v (%v)", got, tc.paths, err)
			}
		})
	}
	var c Config
	c.Defaults()
	if c.CommitDelay != DefaultCommitDelay || c.CommitMax != DefaultCommitMax || c.QueueMax != 2*DefaultCommitMax ||
		c.Lanes.Raw.Policy != PolicyDropOldest || c.Lanes.Dead.MaxBytes != DefaultDeadMaxBytes {
		t.Fatalf("defaults: %+v", c)
	}
	if _, err := Open(Config{Path: filepath.Join(t.TempDir(), "x.db"), CommitMax: -1}, Options{}); err == nil {
		t.Fatal("Open accepted an invalid config")
	}
	// The roll-up hook is a runtime input: Open, not Validate, wants it.
	c.Path = filepath.Join(t.TempDir(), "r.db")
	c.Lanes.Summaries.Policy = PolicyRollUp
	_, err := Open(c, Options{})
	var fe *ingest.FieldError
	if !errors.As(err, &fe) || fe.Path != "lanes.summaries.policy" {
		t.Fatalf("rollup without Options.RollUp: %v", err)
	}
	o, err := Open(c, Options{RollUp: func(p [][]byte) ([][]byte, error) { return p[:1], nil }})
	if err != nil {
		t.Fatal(err)
	}
	o.Close()
}

// sizeOf is the stored size of a payload of n bytes.
func sizeOf(n int) int64 { return int64(n) + recordOverhead }

func testCapDropOldest(t *testing.T, mk factory) {
	ctx := ctx10(t)
	cfg := testConfig()
	cfg.Lanes.Raw.MaxBytes = 10 * sizeOf(10)
	o := mk(t, cfg, Options{})
	for i := range 25 {
		if err := o.Enqueue(ctx, LaneRaw, payload(i)); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			o.Flush(ctx)
		}
	}
	o.Flush(ctx)
	recs := readAll(t, o, LaneRaw)
	if len(recs) != 10 || string(recs[0].Payload) != "rec-000015" || string(recs[9].Payload) != "rec-000024" {
		t.Fatalf("kept %v", payloads(recs))
	}
	st := o.Stats().Lanes[LaneRaw]
	if st.Dropped["cap"] != 15 || st.Depth != 10 || st.Bytes != 10*sizeOf(10) || st.TotalDropped() != 15 {
		t.Fatalf("stats %+v", st)
	}
}

func testCapReject(t *testing.T, mk factory) {
	ctx := ctx10(t)
	cfg := testConfig()
	cfg.Lanes.Alerts.MaxBytes = 3 * sizeOf(10)
	cfg.Lanes.Alerts.Policy = PolicyReject
	o := mk(t, cfg, Options{})
	for i := range 3 {
		if err := o.Enqueue(ctx, LaneAlerts, payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Pending records count: the 4th is refused before any commit.
	if err := o.Enqueue(ctx, LaneAlerts, payload(3)); !errors.Is(err, ErrFull) {
		t.Fatalf("enqueue past the cap: %v, want ErrFull", err)
	}
	if err := o.Append(ctx, LaneAlerts, payload(4)); !errors.Is(err, ErrFull) {
		t.Fatalf("append past the cap: %v, want ErrFull", err)
	}
	if err := o.Append(ctx, LaneAlerts, make([]byte, 1000)); !errors.Is(err, ErrFull) {
		t.Fatalf("record larger than the cap: %v", err)
	}
	// Other lanes are not affected.
	if err := o.Append(ctx, LaneRaw, payload(5)); err != nil {
		t.Fatal(err)
	}
	o.Flush(ctx)
	recs := readAll(t, o, LaneAlerts)
	if len(recs) != 3 {
		t.Fatalf("%d records", len(recs))
	}
	if st := o.Stats().Lanes[LaneAlerts]; st.Dropped["full"] != 3 {
		t.Fatalf("dropped %v", st.Dropped)
	}
	// Delivery makes room again.
	o.Ack(LaneAlerts, recs[0].Seq)
	if err := o.Append(ctx, LaneAlerts, payload(6)); err != nil {
		t.Fatalf("after ack: %v", err)
	}
}

// fakeRollUp merges payloads "n=<count>" into one "n=<sum>" per group of
// up to 4, the contract cmd's rules-based hook has (fewer, coarser
// records, same coverage).
func fakeRollUp(ps [][]byte) ([][]byte, error) {
	var out [][]byte
	for i := 0; i < len(ps); i += 4 {
		sum := 0
		for _, p := range ps[i:min(i+4, len(ps))] {
			var n int
			if _, err := fmt.Sscanf(string(p), "n=%d", &n); err != nil {
				return nil, err
			}
			sum += n
		}
		out = append(out, []byte(fmt.Sprintf("n=%d", sum)))
	}
	return out, nil
}

func testCapRollUp(t *testing.T, mk factory) {
	ctx := ctx10(t)
	cfg := testConfig()
	opts := Options{RollUp: fakeRollUp}
	cfg.Lanes.Summaries.Policy = PolicyRollUp
	cfg.Lanes.Summaries.MaxBytes = 20 * sizeOf(3)
	cfg.Lanes.Summaries.RollUpBatch = 8
	o := mk(t, cfg, opts)
	const total = 100
	for range total {
		if err := o.Append(ctx, LaneSummaries, []byte("n=1")); err != nil {
			t.Fatal(err)
		}
	}
	recs := readAll(t, o, LaneSummaries)
	sum := 0
	var bytes int64
	for i, r := range recs {
		var n int
		fmt.Sscanf(string(r.Payload), "n=%d", &n)
		sum += n
		bytes += sizeOf(len(r.Payload))
		if i > 0 && r.Seq <= recs[i-1].Seq {
			t.Fatal("seqs out of order")
		}
	}
	st := o.Stats().Lanes[LaneSummaries]
	if bytes > cfg.Lanes.Summaries.MaxBytes || st.Bytes != bytes {
		t.Fatalf("%d bytes stored (stats %d), cap %d", bytes, st.Bytes, cfg.Lanes.Summaries.MaxBytes)
	}
	// Coverage is kept: nothing was dropped, only merged.
	if sum != total {
		t.Fatalf("coverage: sum %d, want %d (records %v)", sum, total, payloads(recs))
	}
	if st.Dropped["cap"] != 0 || st.RolledUpIn == 0 || st.RolledUpIn-st.RolledUpOut != st.Dropped["rolled_up"] {
		t.Fatalf("stats %+v", st)
	}
	if int64(len(recs)) != st.Depth || st.Depth >= total {
		t.Fatalf("depth %d, %d records", st.Depth, len(recs))
	}
}

// keyedRollUp merges records "<key>:<count>" of the same key, like the
// rules hook merges adjacent windows of one sensor: a batch holding each
// key once cannot shrink.
func keyedRollUp(ps [][]byte) ([][]byte, error) {
	sums := map[string]int{}
	var order []string
	for _, p := range ps {
		k, v, ok := strings.Cut(string(p), ":")
		if !ok {
			return nil, fmt.Errorf("bad payload %q", p)
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, err
		}
		if _, seen := sums[k]; !seen {
			order = append(order, k)
		}
		sums[k] += n
	}
	var out [][]byte
	for _, k := range order {
		out = append(out, []byte(fmt.Sprintf("%s:%d", k, sums[k])))
	}
	return out, nil
}

func testCapRollUpGrowsBatch(t *testing.T, mk factory) {
	ctx := ctx10(t)
	cfg := testConfig()
	opts := Options{RollUp: keyedRollUp}
	cfg.Lanes.Summaries.Policy = PolicyRollUp
	cfg.Lanes.Summaries.RollUpBatch = 4
	const keys, windows = 10, 8
	cfg.Lanes.Summaries.MaxBytes = int64(keys*windows) * sizeOf(4) / 2
	o := mk(t, cfg, opts)
	// Window by window, one record per key: the 4 oldest never share a key.
	for range windows {
		for k := range keys {
			if err := o.Append(ctx, LaneSummaries, []byte(fmt.Sprintf("k%d:1", k))); err != nil {
				t.Fatal(err)
			}
		}
	}
	total := map[string]int{}
	for _, r := range readAll(t, o, LaneSummaries) {
		k, v, _ := strings.Cut(string(r.Payload), ":")
		n, _ := strconv.Atoi(v)
		total[k] += n
	}
	st := o.Stats().Lanes[LaneSummaries]
	if st.Dropped["cap"] != 0 || st.RolledUpIn == 0 {
		t.Fatalf("the roll-up batch did not grow to find mergeable records: %+v", st)
	}
	for k := range keys {
		if n := total[fmt.Sprintf("k%d", k)]; n != windows {
			t.Fatalf("key k%d covers %d windows, want %d", k, n, windows)
		}
	}
}

func testCapRollUpFallsBack(t *testing.T, mk factory) {
	for _, hook := range []func([][]byte) ([][]byte, error){
		func(ps [][]byte) ([][]byte, error) { return nil, errors.New("cannot merge") },
		func(ps [][]byte) ([][]byte, error) { return ps, nil }, // nothing to merge
		func(ps [][]byte) ([][]byte, error) { panic("bad hook") },
	} {
		rollUpFallsBack(t, mk, hook)
	}
}

func rollUpFallsBack(t *testing.T, mk factory, hook func([][]byte) ([][]byte, error)) {
	ctx := ctx10(t)
	cfg := testConfig()
	opts := Options{RollUp: hook}
	cfg.Lanes.Summaries.Policy = PolicyRollUp
	cfg.Lanes.Summaries.MaxBytes = 5 * sizeOf(3)
	o := mk(t, cfg, opts)
	for range 8 {
		if err := o.Append(ctx, LaneSummaries, []byte("n=1")); err != nil {
			t.Fatal(err)
		}
	}
	st := o.Stats().Lanes[LaneSummaries]
	if st.Depth != 5 || st.Dropped["cap"] != 3 {
		t.Fatalf("a failing roll-up must fall back to drop oldest: %+v", st)
	}
}

func testTotalCap(t *testing.T, mk factory) {
	ctx := ctx10(t)
	cfg := testConfig()
	cfg.MaxBytes = 10 * sizeOf(10)
	cfg.Lanes.Summaries.Policy = PolicyReject
	o := mk(t, cfg, Options{})
	for i := range 10 {
		if err := o.Append(ctx, LaneRaw, payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Alerts evict raw (lower priority, drop_oldest).
	if err := o.Append(ctx, LaneAlerts, payload(100), payload(101)); err != nil {
		t.Fatal(err)
	}
	st := o.Stats()
	if st.Lanes[LaneRaw].Depth != 8 || st.Lanes[LaneRaw].Dropped["total_cap"] != 2 || st.Lanes[LaneAlerts].Depth != 2 {
		t.Fatalf("after alerts: raw %+v alerts %+v", st.Lanes[LaneRaw], st.Lanes[LaneAlerts])
	}
	// Raw evicts its own oldest.
	if err := o.Append(ctx, LaneRaw, payload(200)); err != nil {
		t.Fatal(err)
	}
	if got := payloads(readAll(t, o, LaneRaw)); got[0] != "rec-000003" || got[len(got)-1] != "rec-000200" {
		t.Fatalf("raw %v", got)
	}
	// Summaries (reject) may evict raw, which is lower...
	for i := range 8 {
		if err := o.Append(ctx, LaneSummaries, payload(300+i)); err != nil {
			t.Fatalf("summary %d: %v", i, err)
		}
	}
	// ...but once raw is empty it rejects: alerts are higher, never evicted.
	if err := o.Append(ctx, LaneSummaries, payload(400)); !errors.Is(err, ErrFull) {
		t.Fatalf("summaries with nothing to evict: %v", err)
	}
	st = o.Stats()
	var total int64
	for _, l := range st.Lanes {
		total += l.Bytes
	}
	if total > cfg.MaxBytes || st.Lanes[LaneAlerts].Depth != 2 || st.Lanes[LaneRaw].Depth != 0 {
		t.Fatalf("total %d > %d or wrong lanes: %+v", total, cfg.MaxBytes, st.Lanes)
	}
}

func testMaxAge(t *testing.T, mk factory) {
	ctx := ctx10(t)
	var mu sync.Mutex
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	cfg := testConfig()
	opts := Options{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	cfg.Lanes.Raw.MaxAge = time.Hour
	cfg.MaintainEvery = time.Hour // the test drives Maintain
	o := mk(t, cfg, opts)
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	for i := range 3 {
		o.Append(ctx, LaneRaw, payload(i))
		o.Append(ctx, LaneAlerts, payload(i))
	}
	advance(40 * time.Minute)
	o.Append(ctx, LaneRaw, payload(3))
	if age := o.Stats().Lanes[LaneRaw].OldestAge; age != 40*time.Minute {
		t.Fatalf("oldest age %v", age)
	}
	advance(30 * time.Minute) // first three are 70 min old, the last 30
	if err := o.Maintain(); err != nil {
		t.Fatal(err)
	}
	if got := payloads(readAll(t, o, LaneRaw)); strings.Join(got, ",") != "rec-000003" {
		t.Fatalf("raw after max age: %v", got)
	}
	st := o.Stats()
	if st.Lanes[LaneRaw].Dropped["max_age"] != 3 || st.Lanes[LaneAlerts].Depth != 3 {
		t.Fatalf("stats %+v", st.Lanes)
	}
	// A commit applies it too.
	advance(time.Hour)
	o.Append(ctx, LaneRaw, payload(4))
	if got := payloads(readAll(t, o, LaneRaw)); strings.Join(got, ",") != "rec-000004" {
		t.Fatalf("raw after commit: %v", got)
	}
}

func testUpdateJoinsTransaction(t *testing.T, mk factory) {
	ctx := ctx10(t)
	cfg := testConfig()
	cfg.CommitDelay = time.Hour
	o := mk(t, cfg, Options{})
	journal := []byte("journal")
	// An enqueued record goes before the one Update puts.
	o.Enqueue(ctx, LaneSummaries, []byte("before"))
	err := o.Update(func(tx *bbolt.Tx, put func(Lane, []byte) error) error {
		b, err := tx.CreateBucketIfNotExists(journal)
		if err != nil {
			return err
		}
		if err := b.Put([]byte("k"), []byte("v")); err != nil {
			return err
		}
		return put(LaneSummaries, []byte("summary"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := payloads(readAll(t, o, LaneSummaries)); strings.Join(got, ",") != "before,summary" {
		t.Fatalf("got %v", got)
	}
	// A failing function leaves nothing behind, in either bucket.
	boom := errors.New("boom")
	err = o.Update(func(tx *bbolt.Tx, put func(Lane, []byte) error) error {
		tx.Bucket(journal).Delete([]byte("k"))
		put(LaneSummaries, []byte("lost"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
	if got := payloads(readAll(t, o, LaneSummaries)); strings.Join(got, ",") != "before,summary" {
		t.Fatalf("after failed update: %v", got)
	}
	if st := o.Stats(); st.Lanes[LaneSummaries].Depth != 2 || st.CommitErrors != 0 {
		t.Fatalf("stats %+v", st)
	}
	o.dbMu.RLock()
	o.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(journal).Get([]byte("k")); string(v) != "v" {
			t.Errorf("journal entry %q", v)
		}
		return nil
	})
	o.dbMu.RUnlock()
}

// TestConfigComparable: a reload compares buffer configs with ==, so
// Config must stay a plain value (a func field would not compile here).
func TestConfigComparable(t *testing.T) {
	var a, b Config
	a.Defaults()
	b.Defaults()
	if a != b {
		t.Fatal("equal defaults differ")
	}
	b.Lanes.Raw.MaxAge = time.Minute
	if a == b {
		t.Fatal("lane change not seen")
	}
	b = a
	b.AppendDelay = time.Millisecond
	if a == b {
		t.Fatal("append_delay change not seen")
	}
}

func testUpdatePutRejects(t *testing.T, mk factory) {
	cfg := testConfig()
	cfg.Lanes.Alerts.Policy = PolicyReject
	cfg.Lanes.Alerts.MaxBytes = 2 * sizeOf(1)
	o := mk(t, cfg, Options{})
	var putErr error
	err := o.Update(func(tx *bbolt.Tx, put func(Lane, []byte) error) error {
		for _, p := range []string{"a", "b", "c"} {
			if putErr = put(LaneAlerts, []byte(p)); putErr != nil {
				return putErr
			}
		}
		return nil
	})
	if !errors.Is(err, ErrFull) || !errors.Is(putErr, ErrFull) {
		t.Fatalf("err %v, put %v", err, putErr)
	}
	// The function chose to fail: nothing was written.
	if n := len(readAll(t, o, LaneAlerts)); n != 0 {
		t.Fatalf("%d records", n)
	}
	if err := o.Update(func(tx *bbolt.Tx, put func(Lane, []byte) error) error {
		return put(Lane(7), nil)
	}); err == nil {
		t.Fatal("unknown lane accepted")
	}
}

// TestMaxAgeSurvivesClockStep (hardening finding 8): a board without a
// real-time clock stores records at 1970 stamps until NTP steps the clock
// to today. Those records have no known age; the step must not make them
// 56 years old and delete them (the dead-letter lane has a 7-day max_age by
// default). Records stored after the step age as usual.
func TestMaxAgeSurvivesClockStep(t *testing.T) {
	ctx := ctx10(t)
	var mu sync.Mutex
	now := time.Unix(3600, 0) // the boot: 1970
	cfg := testConfig()
	opts := Options{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	cfg.Lanes.Dead.MaxAge = 7 * 24 * time.Hour
	cfg.MaintainEvery = time.Hour
	o := openWith(t, "", cfg, opts)
	for i := range 3 {
		if err := o.Append(ctx, LaneDead, payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	now = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC) // NTP
	mu.Unlock()
	if err := o.Append(ctx, LaneDead, payload(3)); err != nil { // a commit applies max_age
		t.Fatal(err)
	}
	if err := o.Maintain(); err != nil {
		t.Fatal(err)
	}
	if got := payloads(readAll(t, o, LaneDead)); strings.Join(got, ",") != "rec-000000,rec-000001,rec-000002,rec-000003" {
		t.Fatalf("dead letters after the clock step: %v (max_age dropped %d)", got, o.Stats().Lanes[LaneDead].Dropped["max_age"])
	}
}
