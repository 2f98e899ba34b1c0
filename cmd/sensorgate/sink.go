package main

import (
	"context"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/rules"
)

// stateRules is the prefix of the rules engine's keys in the outbox's
// state bucket (see rules.StateChange).
var stateRules = []byte("r/")

// outboxSink is the rules' sink and committer: it encodes what the rules
// emit and keeps it until the engine's next checkpoint, then writes the
// records, the state that changed and the sources' receipt entries in one
// bbolt transaction (buffer.Outbox.Commit). A summary therefore enters the
// outbox exactly when the window state it closes leaves the store. The
// engine calls it from one goroutine.
type outboxSink struct {
	ob    *buffer.Outbox
	cp    buffer.Checkpoint
	arena []byte // the payloads of cp.Records, reused after each commit
}

func newOutboxSink(ob *buffer.Outbox) *outboxSink {
	return &outboxSink{ob: ob, arena: make([]byte, 0, 4096)}
}

func (s *outboxSink) Summary(_ context.Context, sum *ingest.Summary) error {
	start := len(s.arena)
	b, err := ingest.AppendSummary(s.arena, sum)
	if err != nil {
		return err
	}
	s.keep(buffer.LaneSummaries, b, start)
	return nil
}

func (s *outboxSink) Alert(_ context.Context, a *ingest.Alert) error {
	start := len(s.arena)
	b, err := ingest.AppendAlert(s.arena, a)
	if err != nil {
		return err
	}
	s.keep(buffer.LaneAlerts, b, start)
	return nil
}

// keep records the payload b[start:]. When the append moved the arena,
// the earlier payloads still point into the old array, which stays valid.
func (s *outboxSink) keep(lane buffer.Lane, b []byte, start int) {
	s.arena = b
	s.cp.Records = append(s.cp.Records, buffer.Pending{Lane: lane, Payload: b[start:len(b):len(b)]})
}

// Commit writes the records kept since the last commit with cp's state and
// receipts. On an error nothing was written and the records stay for the
// engine's retry. A lane with the reject policy that is at its cap refuses
// a record: that is the lane's declared drop, counted by the outbox
// (reason "full"), not a failed commit.
func (s *outboxSink) Commit(_ context.Context, cp *rules.Checkpoint) error {
	s.cp.State = s.cp.State[:0]
	for _, c := range cp.State {
		s.cp.State = append(s.cp.State, buffer.StateChange{Key: c.Key, Value: c.Value})
	}
	for _, r := range cp.Receipts {
		if len(r.Key) > 0 {
			s.cp.State = append(s.cp.State, buffer.StateChange{Key: r.Key, Value: r.Value})
		}
	}
	s.cp.DeletePrefix = nil
	if cp.Replace {
		s.cp.DeletePrefix = stateRules
	}
	if err := s.ob.Commit(&s.cp); err != nil {
		return err
	}
	s.cp.Reset()
	s.arena = s.arena[:0]
	return nil
}

// loadRules is the engine's Restore input: its keys in the state bucket.
func loadRules(ob *buffer.Outbox) func(fn func(key, value []byte) error) error {
	return func(fn func(key, value []byte) error) error { return ob.LoadState(stateRules, fn) }
}

// outboxDepth is what the uplinks still have to deliver (the dead-letter
// lane is kept for inspection, not delivered).
func outboxDepth(ob *buffer.Outbox) int64 {
	st := ob.Stats()
	n := int64(st.Pending)
	for _, l := range st.Lanes {
		if l.Lane != buffer.LaneDead {
			n += l.Depth
		}
	}
	return n
}
