package buffer

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestOpenSurvivesDamage flips random bytes of a good file: Open must
// never hang, crash or fail; it opens or quarantines (FuzzOpen goes
// further).
func TestOpenSurvivesDamage(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	fillFile(t, good, 50, 20)
	b, _ := os.ReadFile(good)
	for seed := uint64(0); seed < 300; seed++ {
		r := rand.New(rand.NewPCG(seed, 9))
		d := bytes.Clone(b)
		for range 1 + r.IntN(40) {
			d[r.IntN(len(d))] = byte(r.Uint32())
		}
		path := filepath.Join(dir, fmt.Sprintf("f%d.db", seed))
		os.WriteFile(path, d, 0o600)
		done := make(chan struct{})
		go func() {
			defer close(done)
			o, err := Open(testConfigAt(path), Options{})
			if err != nil {
				t.Errorf("seed %d: %v", seed, err)
				return
			}
			o.Append(context.Background(), LaneRaw, []byte("x"))
			o.Read(LaneRaw, 0, 1000)
			o.Close()
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("seed %d: Open hangs", seed)
		}
		os.Remove(path)
		os.Remove(path + ".corrupt")
	}
}
