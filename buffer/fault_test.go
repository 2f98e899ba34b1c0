package buffer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// fillFile writes a closed outbox with n records of size bytes in raw.
func fillFile(t testing.TB, path string, n, size int) {
	t.Helper()
	o, err := Open(testConfigAt(path), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ps := make([][]byte, 0, 1000)
	for i := 0; i < n; i++ {
		p := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		ps = append(ps, p)
		if len(ps) == cap(ps) || i == n-1 {
			if err := o.Append(context.Background(), LaneRaw, ps...); err != nil {
				t.Fatal(err)
			}
			ps = ps[:0]
		}
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptFileQuarantined(t *testing.T) {
	checkGoroutines(t)
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"random bytes", func(t *testing.T, path string) {
			b := make([]byte, 64<<10)
			randBytes(b, 1)
			os.WriteFile(path, b, 0o600)
		}},
		{"short garbage", func(t *testing.T, path string) { os.WriteFile(path, []byte("hello"), 0o600) }},
		{"truncated", func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			os.Truncate(path, fi.Size()/3)
		}},
		{"truncated to one page", func(t *testing.T, path string) { os.Truncate(path, 4096) }},
		{"both metas zeroed", func(t *testing.T, path string) {
			f, _ := os.OpenFile(path, os.O_RDWR, 0)
			f.WriteAt(make([]byte, 8192), 0)
			f.Close()
		}},
		{"data pages overwritten", func(t *testing.T, path string) {
			f, _ := os.OpenFile(path, os.O_RDWR, 0)
			fi, _ := f.Stat()
			b := make([]byte, fi.Size()-16384)
			randBytes(b, 3)
			f.WriteAt(b, 16384)
			f.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "outbox.db")
			fillFile(t, path, 3000, 100)
			tc.damage(t, path)
			if err := Check(path); err == nil {
				t.Fatal("Check passed a damaged file")
			}
			var logBuf bytes.Buffer
			var mu sync.Mutex
			o, err := Open(testConfigAt(path), Options{Logger: newTestLogger(&logBuf, &mu)})
			if err != nil {
				t.Fatalf("Open of a damaged file failed: %v", err)
			}
			defer o.Close()
			st := o.Stats()
			if st.Quarantined != 1 || !strings.HasPrefix(filepath.Base(st.QuarantinedAs), "outbox.db.corrupt-") {
				t.Fatalf("stats %+v", st)
			}
			if _, err := os.Stat(st.QuarantinedAs); err != nil {
				t.Fatalf("quarantined file: %v", err)
			}
			mu.Lock()
			if !strings.Contains(logBuf.String(), "moved aside") {
				t.Errorf("no log line: %s", logBuf.String())
			}
			mu.Unlock()
			// The fresh outbox works.
			if err := o.Append(context.Background(), LaneAlerts, []byte("after")); err != nil {
				t.Fatal(err)
			}
			if recs := readAll(t, o, LaneAlerts); len(recs) != 1 || recs[0].Seq != 1 {
				t.Fatalf("fresh outbox: %+v", recs)
			}
		})
	}
}

func TestEmptyFileIsFresh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	os.WriteFile(path, nil, 0o600)
	o := open(t, path, testConfig())
	if st := o.Stats(); st.Quarantined != 0 {
		t.Fatal("an empty file was quarantined")
	}
}

func TestLockedFileNotQuarantined(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the lock timeout")
	}
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := open(t, path, testConfig())
	o.Append(context.Background(), LaneRaw, []byte("x"))
	// A second gateway on the same file must fail, not quarantine it.
	if _, err := Open(testConfigAt(path), Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open of a locked file: %v, want ErrLocked", err)
	}
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
		t.Fatalf("a locked file was quarantined: %v", m)
	}
	if recs := readAll(t, o, LaneRaw); len(recs) != 1 {
		t.Fatal("record lost")
	}
}

// FuzzOpen: whatever bytes the file holds, Open neither panics nor fails;
// it opens the file or quarantines it, or refuses a valid bbolt file
// holding none of the outbox's buckets (ErrRefused) and leaves it.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	good := filepath.Join(dir, "good.db")
	fillFile(f, good, 50, 20)
	b, _ := os.ReadFile(good)
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte{})
	f.Add([]byte("garbage"))
	flipped := bytes.Clone(b)
	flipped[4096*3+100] ^= 0xff
	f.Add(flipped)
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "outbox.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := testConfig()
		cfg.Path = path
		o, err := Open(cfg, Options{})
		if errors.Is(err, ErrRefused) {
			if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
				t.Fatal("a refused file was changed")
			}
			return
		} else if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer o.Close()
		if err := o.Append(context.Background(), LaneAlerts, []byte("x")); err != nil {
			t.Fatalf("Append: %v", err)
		}
		if _, err := o.Read(LaneRaw, 0, 100); err != nil {
			t.Fatalf("Read: %v", err)
		}
	})
}

func TestDiskFullAndRecovery(t *testing.T) {
	ctx := ctx10(t)
	cfg := testConfig()
	cfg.MaxFileSize = 1 << 20 // the "disk"
	cfg.MaxBytes = 64 << 20   // so that the disk fills before the cap
	cfg.Lanes.Alerts.Policy = PolicyReject
	o := open(t, "", cfg)
	p := bytes.Repeat([]byte{'x'}, 1000)
	var stored int
	var err error
	for i := 0; i < 5000; i++ {
		if err = o.Append(ctx, LaneAlerts, p); err != nil {
			break
		}
		stored++
	}
	if !errors.Is(err, ErrDiskFull) || !errors.Is(err, ErrFull) {
		t.Fatalf("after %d appends: %v, want ErrDiskFull", stored, err)
	}
	// Enqueued records that hit the full disk are dropped and counted.
	for range 50 {
		if err := o.Enqueue(ctx, LaneAlerts, p); err != nil {
			t.Fatal(err)
		}
	}
	o.Flush(ctx)
	st := o.Stats()
	al := st.Lanes[LaneAlerts]
	if al.Dropped["disk_full"] == 0 || al.Depth+int64(al.Dropped["disk_full"]) != int64(stored)+50 || st.CommitErrors == 0 {
		t.Fatalf("stats after disk full: %+v", st)
	}
	// Space comes back when the backlog is delivered.
	recs := readAll(t, o, LaneAlerts)
	var seqs []uint64
	for _, r := range recs[:len(recs)/2] {
		seqs = append(seqs, r.Seq)
	}
	if err := o.Ack(LaneAlerts, seqs...); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := o.Append(ctx, LaneAlerts, p); err != nil {
			t.Fatalf("append %d after space returned: %v", i, err)
		}
	}
	if got := len(readAll(t, o, LaneAlerts)); got != len(recs)-len(seqs)+10 {
		t.Fatalf("%d records", got)
	}
}

func TestDiskFullDropOldest(t *testing.T) {
	ctx := ctx10(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	cfg := testConfig()
	cfg.MaxFileSize = 1 << 20
	cfg.MaxBytes = 64 << 20
	o := open(t, path, cfg)
	p := bytes.Repeat([]byte{'y'}, 1000)
	// The raw lane's policy makes room: appends keep succeeding.
	for i := range 1500 {
		if err := o.Append(ctx, LaneRaw, append([]byte(strconv.Itoa(i)+":"), p...)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	st := o.Stats().Lanes[LaneRaw]
	if st.Dropped["disk_full"] == 0 || st.Depth+int64(st.Dropped["disk_full"]) != 1500 {
		t.Fatalf("stats %+v", st)
	}
	recs := readAll(t, o, LaneRaw)
	if int64(len(recs)) != st.Depth || !strings.HasPrefix(string(recs[len(recs)-1].Payload), "1499:") {
		t.Fatalf("%d records, stats depth %d", len(recs), st.Depth)
	}
	o.Close()
	if err := Check(path); err != nil {
		t.Fatal(err)
	}
}

func TestCompactionKeepsConcurrentAppends(t *testing.T) {
	checkGoroutines(t)
	ctx := ctx10(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	cfg := testConfig()
	cfg.CompactMinSize = 1 << 20
	o := open(t, path, cfg)
	big := bytes.Repeat([]byte{'b'}, 1000)
	for range 10 {
		batch := make([][]byte, 500)
		for i := range batch {
			batch[i] = big
		}
		if err := o.Append(ctx, LaneRaw, batch...); err != nil {
			t.Fatal(err)
		}
	}
	// Drain most of the backlog.
	recs := readAll(t, o, LaneRaw)
	var seqs []uint64
	for _, r := range recs[:len(recs)-10] {
		seqs = append(seqs, r.Seq)
	}
	o.Ack(LaneRaw, seqs...)
	before := o.Stats().FileSize

	// Producers keep appending while compaction runs.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var appended [4][]string
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				s := fmt.Sprintf("p%d-%d", p, i)
				if p%2 == 0 {
					if err := o.Append(ctx, LaneSummaries, []byte(s)); err != nil {
						t.Error(err)
						return
					}
				} else if err := o.Enqueue(ctx, LaneSummaries, []byte(s)); err != nil {
					t.Error(err)
					return
				}
				appended[p] = append(appended[p], s)
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	if err := o.Maintain(); err != nil { // decides to compact by itself
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	close(stop)
	wg.Wait()
	o.Flush(ctx)
	st := o.Stats()
	if st.Compactions != 1 || st.FileSize >= before {
		t.Fatalf("compactions %d, size %d -> %d", st.Compactions, before, st.FileSize)
	}
	got := map[string]bool{}
	for _, r := range readAll(t, o, LaneSummaries) {
		got[string(r.Payload)] = true
	}
	for p := range appended {
		for _, s := range appended[p] {
			if !got[s] {
				t.Fatalf("record %s appended during compaction is missing", s)
			}
		}
	}
	if n := len(readAll(t, o, LaneRaw)); n != 10 {
		t.Fatalf("raw %d records after compaction, want 10", n)
	}
	// Seqs continue after compaction.
	o.Append(ctx, LaneRaw, []byte("next"))
	all := readAll(t, o, LaneRaw)
	if last := all[len(all)-1]; last.Seq != 5001 || string(last.Payload) != "next" {
		t.Fatalf("last %+v", last)
	}
	o.Close()
	if err := Check(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + compactSuffix); !os.IsNotExist(err) {
		t.Fatal("temporary compaction file left behind")
	}
}

// TestKill9 re-runs this test binary as a child that appends records
// and prints every seq Append reported durable, kills it with SIGKILL at
// a random moment, and checks that every reported record is in the
// reopened file and that the file passes bbolt's check.
func TestKill9(t *testing.T) {
	if path := os.Getenv("BUFFER_KILL9_CHILD"); path != "" {
		kill9Child(path)
		return
	}
	if testing.Short() {
		t.Skip("spawns processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	path := filepath.Join(t.TempDir(), "outbox.db")
	rng := rand.New(rand.NewPCG(7, 7))
	durable := map[string]bool{}
	for round := range 5 {
		cmd := exec.Command(exe, "-test.run=^TestKill9$")
		cmd.Env = append(os.Environ(), "BUFFER_KILL9_CHILD="+path, "BUFFER_KILL9_ROUND="+strconv.Itoa(round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		killAt := 50 + rng.IntN(500)
		n := 0
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "durable ") {
				continue
			}
			for _, id := range strings.Fields(strings.TrimPrefix(line, "durable ")) {
				durable[id] = true
			}
			if n++; n == killAt {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		cmd.Wait()
		if err := Check(path); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	if len(durable) == 0 {
		t.Fatal("the child reported nothing")
	}
	o := open(t, path, testConfig())
	if o.Stats().Quarantined != 0 {
		t.Fatal("file quarantined after kill -9")
	}
	have := map[string]bool{}
	for _, l := range []Lane{LaneAlerts, LaneRaw} {
		for _, r := range readAll(t, o, l) {
			have[string(r.Payload)] = true
		}
	}
	for id := range durable {
		if !have[id] {
			t.Fatalf("record %s was reported durable but is gone after kill -9", id)
		}
	}
	t.Logf("%d durable records checked", len(durable))
}

func kill9Child(path string) {
	round := os.Getenv("BUFFER_KILL9_ROUND")
	cfg := Config{CommitDelay: time.Millisecond}
	cfg.Path = path
	o, err := Open(cfg, Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	w := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lane := LaneRaw
			if p == 0 {
				lane = LaneAlerts
			}
			for i := 0; i < 100000; i++ {
				var ps [][]byte
				for j := range 1 + i%5 {
					ps = append(ps, []byte(fmt.Sprintf("r%s-p%d-%d-%d", round, p, i, j)))
				}
				if p == 3 {
					// Enqueue, then Flush: durable once Flush returned.
					for _, b := range ps {
						if err := o.Enqueue(ctx, lane, b); err != nil {
							os.Exit(1)
						}
					}
					if err := o.Flush(ctx); err != nil {
						os.Exit(1)
					}
				} else if err := o.Append(ctx, lane, ps...); err != nil {
					os.Exit(1)
				}
				mu.Lock()
				w.WriteString("durable")
				for _, b := range ps {
					w.WriteString(" ")
					w.Write(b)
				}
				w.WriteString("\n")
				w.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	o.Close()
	os.Exit(0)
}

func randBytes(b []byte, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
}

func TestSequenceBehindRecordsRepaired(t *testing.T) {
	ctx := ctx10(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	fillFile(t, path, 5, 10)
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("lane.raw")).SetSequence(2) })
	db.Close()
	o := open(t, path, testConfig())
	if o.Stats().Quarantined != 0 {
		t.Fatal("quarantined")
	}
	if err := o.Append(ctx, LaneRaw, []byte("new")); err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, o, LaneRaw)
	if len(recs) != 6 || recs[5].Seq != 6 || string(recs[5].Payload) != "new" {
		t.Fatalf("records %d, last %+v", len(recs), recs[len(recs)-1])
	}
}

func TestOfflineToolsLeaveDamagedFilesAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	fillFile(t, path, 100, 10)
	info, err := Inspect(path)
	if err != nil || info.Lanes[LaneRaw].Depth != 100 || info.Lanes[LaneRaw].NextSeq != 101 {
		t.Fatalf("inspect: %+v %v", info, err)
	}
	os.Truncate(path, 8192)
	if _, err := Inspect(path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("inspect of a truncated file: %v", err)
	}
	if _, err := Peek(path, LaneRaw, 5); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("peek of a truncated file: %v", err)
	}
	if _, _, err := CompactFile(path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("compact of a truncated file: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 8192 {
		t.Fatal("an offline tool changed or moved the damaged file")
	}
}

// TestSpacePressureSparesAlerts (hardening finding 2): with the "disk"
// nearly full of summaries (rollup, the default) and of dead letters, the
// alerts written next survive, every one: the dead letters go first, then
// the oldest summaries. Before, space
// pressure evicted only drop_oldest lanes, alerts included, and skipped
// the summaries: every alert went in the transaction that wrote it while
// old summaries kept the disk.
func TestSpacePressureSparesAlerts(t *testing.T) {
	ctx := ctx10(t)
	cfg := testConfig()
	cfg.MaxFileSize = 1 << 20
	cfg.MaxBytes = 64 << 20
	cfg.Lanes.Summaries.Policy = PolicyRollUp // the gateway's default
	// A roll-up that halves: each pair of records becomes the first.
	rollUp := func(in [][]byte) ([][]byte, error) {
		var out [][]byte
		for i := 0; i < len(in); i += 2 {
			out = append(out, in[i])
		}
		return out, nil
	}
	o := openWith(t, "", cfg, Options{RollUp: rollUp})
	p := bytes.Repeat([]byte{'s'}, 1000)
	for i := range 20 {
		if err := o.Append(ctx, LaneDead, append([]byte("d"+strconv.Itoa(i)), p...)); err != nil {
			t.Fatalf("dead letter %d: %v", i, err)
		}
	}
	for i := range 2000 {
		if err := o.Append(ctx, LaneSummaries, append([]byte("s"+strconv.Itoa(i)), p...)); err != nil {
			t.Fatalf("summary %d: %v", i, err)
		}
	}
	const alerts = 300
	for i := range alerts {
		if err := o.Append(ctx, LaneAlerts, append([]byte("a"+strconv.Itoa(i)), p[:200]...)); err != nil {
			t.Fatalf("alert %d: %v", i, err)
		}
	}
	st := o.Stats()
	al, sm, dl := st.Lanes[LaneAlerts], st.Lanes[LaneSummaries], st.Lanes[LaneDead]
	if al.Depth != alerts || len(al.Dropped) > 0 && al.Dropped["disk_full"] > 0 {
		t.Fatalf("alerts: depth %d of %d, dropped %v; summaries %+v", al.Depth, alerts, al.Dropped, sm)
	}
	if dl.Dropped["disk_full"] == 0 {
		t.Fatalf("no dead letter made room: %+v", dl)
	}
	if sm.Dropped["disk_full"] == 0 {
		t.Fatalf("the summaries gave no room: %+v", sm)
	}
}
