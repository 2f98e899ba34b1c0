package buffer

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// BenchmarkCheckpointWrite: the bytes bbolt writes per checkpoint of n
// changed keys out of 2,000 (a thousand sensors with two metrics), each
// with a 120-byte value, plus n/2 receipt entries: the flash wear of the
// durable path, without the pipeline.
func BenchmarkCheckpointWrite(b *testing.B) {
	for _, n := range []int{40, 2000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			o := openBench(b, filepath.Join(b.TempDir(), "outbox.db"))
			val := make([]byte, 120)
			cp := &Checkpoint{}
			for i := range 2000 {
				cp.State = append(cp.State, StateChange{[]byte(fmt.Sprintf("r/w/win\x00sensor-%04d\x00\x00m%d", i/2, i%2)), val})
			}
			if err := o.Commit(cp); err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			keys := make([][]byte, 2000)
			for i := range keys {
				keys[i] = []byte(fmt.Sprintf("r/w/win\x00sensor-%04d\x00\x00m%d", i/2, i%2))
			}
			var pid uint16
			before := o.Stats().BytesWritten
			b.ResetTimer()
			for range b.N {
				cp.Reset()
				for range n {
					cp.State = append(cp.State, StateChange{keys[rng.IntN(len(keys))], val})
				}
				for range n / 2 {
					pid++
					cp.State = append(cp.State, StateChange{[]byte{'s', 'r', 'c', '/', 'x', '/', byte(pid >> 8), byte(pid)}, val[:8]})
				}
				if err := o.Commit(cp); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			w := float64(o.Stats().BytesWritten-before) / float64(b.N)
			b.ReportMetric(w, "B-written/commit")
			b.ReportMetric(w/float64(n), "B-written/key")
		})
	}
}

func openBench(b *testing.B, path string) *Outbox {
	c := testConfig()
	c.Path = path
	o, err := Open(c, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { o.Close() })
	return o
}
