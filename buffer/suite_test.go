package buffer

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// factory opens an outbox for a test of the shared suite.
type factory func(t *testing.T, cfg Config, opts Options) *Outbox

// factories are the outboxes the suite runs against: a new file, a file
// that already went through records (acked, so the lanes are empty but
// seqs continue and pages are free) and was reopened, and such a file
// after a compaction.
var factories = []struct {
	name string
	mk   factory
}{
	{"fresh", func(t *testing.T, cfg Config, opts Options) *Outbox { return openWith(t, "", cfg, opts) }},
	{"reopened", func(t *testing.T, cfg Config, opts Options) *Outbox { return used(t, cfg, opts, false) }},
	{"compacted", func(t *testing.T, cfg Config, opts Options) *Outbox { return used(t, cfg, opts, true) }},
}

func used(t *testing.T, cfg Config, opts Options, compact bool) *Outbox {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outbox.db")
	// Same caps, but commits that do not wait for the test's delays.
	pre := cfg
	pre.CommitDelay, pre.AppendDelay, pre.QueueMax = time.Millisecond, 0, 0
	pre.Path = path
	o, err := Open(pre, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 300 {
		for _, l := range Lanes {
			o.Enqueue(ctx, l, []byte("n=1")) // caps of the test's config may refuse some
			if i%100 == 0 {
				o.Flush(ctx)
			}
		}
	}
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, l := range Lanes {
		for {
			recs, err := o.Read(l, 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 0 {
				break
			}
			var seqs []uint64
			for _, r := range recs {
				seqs = append(seqs, r.Seq)
			}
			if err := o.Ack(l, seqs...); err != nil {
				t.Fatal(err)
			}
		}
	}
	if compact {
		if err := o.Compact(); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	return openWith(t, path, cfg, opts)
}

// TestSuite runs the shared outbox tests against every factory.
func TestSuite(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, mk factory)
	}{
		{"OrderWithinLane", testOrderWithinLane},
		{"PriorityAcrossLanes", testPriorityAcrossLanes},
		{"AckPartialBatch", testAckPartialBatch},
		{"EnqueueBackpressure", testEnqueueBackpressure},
		{"ConcurrentProducers", testConcurrentProducers},
		{"CapDropOldest", testCapDropOldest},
		{"CapReject", testCapReject},
		{"CapRollUp", testCapRollUp},
		{"CapRollUpFallsBack", testCapRollUpFallsBack},
		{"CapRollUpGrowsBatch", testCapRollUpGrowsBatch},
		{"TotalCap", testTotalCap},
		{"MaxAge", testMaxAge},
		{"UpdateJoinsTransaction", testUpdateJoinsTransaction},
		{"AppendDoesNotWaitForCommitDelay", testAppendDoesNotWaitForCommitDelay},
		{"UpdatePutRejects", testUpdatePutRejects},
	}
	for _, f := range factories {
		t.Run(f.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) { tc.run(t, f.mk) })
			}
		})
	}
}
