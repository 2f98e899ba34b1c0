package buffer

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// ioCounter reads this process's bytes written to storage
// (/proc/self/io write_bytes), or wchar when write_bytes is not accounted
// here. ok is false when neither is available.
func ioCounter() (n int64, field string, ok bool) {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return 0, "", false
	}
	defer f.Close()
	vals := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, found := strings.Cut(sc.Text(), ":")
		if found {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			vals[k] = n
		}
	}
	if vals["write_bytes"] > 0 {
		return vals["write_bytes"], "write_bytes", true
	}
	if w, ok := vals["wchar"]; ok {
		return w, "wchar", true
	}
	return 0, "", false
}

// benchIO reports records/s and disk bytes per record for a run that
// stored n records.
type benchIO struct {
	start    time.Time
	io0      int64
	field    string
	ioUsable bool
}

func startIO() benchIO {
	n, field, ok := ioCounter()
	return benchIO{start: time.Now(), io0: n, field: field, ioUsable: ok}
}

func (s benchIO) report(b *testing.B, records int) {
	el := time.Since(s.start)
	b.ReportMetric(float64(records)/el.Seconds(), "records/s")
	if n, field, ok := ioCounter(); ok && s.ioUsable && field == s.field && records > 0 {
		b.ReportMetric(float64(n-s.io0)/float64(records), "disk-B/rec("+field+")")
	}
}

func benchOutbox(b *testing.B, cfg Config) *Outbox {
	b.Helper()
	cfg.Path = filepath.Join(b.TempDir(), "outbox.db")
	o, err := Open(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { o.Close() })
	return o
}

var payload100 = []byte(strings.Repeat("p", 100))

// BenchmarkAppendParallel: durable Append of one 100-byte record per call
// from many concurrent producers, default commit settings.
func BenchmarkAppendParallel(b *testing.B) {
	for _, producers := range []int{64, 1024, 4096} {
		b.Run("producers="+strconv.Itoa(producers), func(b *testing.B) {
			o := benchOutbox(b, Config{MaxBytes: 8 << 30, MaxFileSize: 4 << 30})
			ctx := context.Background()
			b.SetParallelism(max(1, producers/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			io := startIO()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := o.Append(ctx, LaneSummaries, payload100); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			io.report(b, b.N)
			st := o.Stats()
			b.ReportMetric(float64(st.CommitRecords)/float64(st.Commits), "records/commit")
		})
	}
}

// BenchmarkAppendBatches: each producer appends 100 records per call.
func BenchmarkAppendBatches(b *testing.B) {
	o := benchOutbox(b, Config{MaxBytes: 8 << 30, MaxFileSize: 4 << 30})
	ctx := context.Background()
	batch := make([][]byte, 100)
	for i := range batch {
		batch[i] = payload100
	}
	var stored atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	io := startIO()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := o.Append(ctx, LaneSummaries, batch...); err != nil {
				b.Error(err)
				return
			}
			stored.Add(100)
		}
	})
	b.StopTimer()
	io.report(b, int(stored.Load()))
}

// BenchmarkEnqueue: Enqueue from concurrent producers, then Flush: every
// record is durable at the end of the timed run.
func BenchmarkEnqueue(b *testing.B) {
	for _, cfg := range []struct {
		name string
		cfg  Config
	}{
		{"default", Config{}},
		{"commit_max=5000", Config{CommitMax: 5000}},
	} {
		b.Run(cfg.name, func(b *testing.B) {
			c := cfg.cfg
			c.MaxBytes, c.MaxFileSize = 8<<30, 4<<30
			o := benchOutbox(b, c)
			ctx := context.Background()
			b.SetParallelism(4)
			b.ReportAllocs()
			io := startIO()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := o.Enqueue(ctx, LaneSummaries, payload100); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if err := o.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			io.report(b, b.N)
			st := o.Stats()
			if st.Commits > 0 {
				b.ReportMetric(float64(st.CommitRecords)/float64(st.Commits), "records/commit")
			}
		})
	}
}

// BenchmarkReplay: a backlog of b.N 100-byte records is read in batches
// of 1000, delivered to a no-op and acked.
func BenchmarkReplay(b *testing.B) {
	o := benchOutbox(b, Config{MaxBytes: 8 << 30, MaxFileSize: 4 << 30})
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		if err := o.Enqueue(ctx, LaneSummaries, payload100); err != nil {
			b.Fatal(err)
		}
	}
	if err := o.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	deliver := func(Record) {}
	seqs := make([]uint64, 0, 1000)
	b.ReportAllocs()
	io := startIO()
	b.ResetTimer()
	var after uint64
	done := 0
	for done < b.N {
		recs, err := o.Read(LaneSummaries, after, 1000)
		if err != nil {
			b.Fatal(err)
		}
		if len(recs) == 0 {
			b.Fatalf("backlog ended after %d of %d", done, b.N)
		}
		seqs = seqs[:0]
		for _, r := range recs {
			deliver(r)
			seqs = append(seqs, r.Seq)
		}
		if err := o.Ack(LaneSummaries, seqs...); err != nil {
			b.Fatal(err)
		}
		after = recs[len(recs)-1].Seq
		done += len(recs)
	}
	b.StopTimer()
	io.report(b, done)
}

// BenchmarkAppendOneProducer: a single producer appending one record at a
// time, each its own commit: the anti-pattern group commit avoids, for
// comparison of the bytes written per record.
func BenchmarkAppendOneProducer(b *testing.B) {
	o := benchOutbox(b, Config{})
	ctx := context.Background()
	b.ReportAllocs()
	io := startIO()
	b.ResetTimer()
	for range b.N {
		if err := o.Append(ctx, LaneSummaries, payload100); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	io.report(b, b.N)
}
