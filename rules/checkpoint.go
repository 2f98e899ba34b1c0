package rules

// Checkpoints: the state the readings changed (window keys, stage and
// alert state) goes to the Sink's Committer together with the records
// emitted since the previous checkpoint and the receipts of the durable
// readings it covers; the receipts are completed once it is committed.

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/internal/lograte"
	"github.com/sensorgate/sensorgate/rules/internal/state"
)

// CommitPolicy says when the engine checkpoints (Options.Commit).
type CommitPolicy struct {
	// MaxReceipts: checkpoint as soon as this many receipts are pending
	// (the broker's in-flight window); 0 means 20. A smaller window is
	// learned (see state.Trigger.Due).
	MaxReceipts int
	// MaxDelay: checkpoint at most this long after the first pending
	// receipt or emitted record; 0 means 250ms.
	MaxDelay time.Duration
	// StateEvery: changed state with no receipts and no records is
	// checkpointed at least this often; 0 means 5s.
	StateEvery time.Duration
	// FlushOnClose (decommissioning): when the input closes, emit every
	// open window and pending revision as final, then checkpoint.
	// Otherwise open windows stay open in the store for the next start.
	FlushOnClose bool
}

// Committer must be implemented by the Sink when Options.Commit is set.
// Summary and Alert calls made between two Commit calls belong to the
// second: the sink keeps them and writes them in the same transaction as
// cp.State and the receipts' Key/Value. Called on Run's goroutine; cp and
// every slice in it are valid only until Commit returns. If Commit returns
// an error nothing of cp was written: the engine keeps the state dirty and
// the receipts pending, logs (rate-limited, counted in Stats.CommitErrors)
// and retries at the next trigger with backoff (MaxDelay doubling up to
// 5s); the sink keeps its records and writes them with the retry.
type Committer interface {
	Commit(ctx context.Context, cp *Checkpoint) error
}

// StateChange is one key of the state store: Value nil deletes Key. Every
// key the engine writes starts with "r/".
type StateChange struct{ Key, Value []byte }

// Checkpoint is what one Commit writes.
type Checkpoint struct {
	State []StateChange
	// Receipts in arrival order; the engine calls Committed(nil) on each,
	// in order, after Commit returns nil.
	Receipts []*ingest.Receipt
	// Replace: delete every "r/" key first (the first checkpoint after
	// Adopt, or after a Restore that dropped state).
	Replace bool
	// Final: the last checkpoint of a Run whose input closed.
	Final bool
}

// checkpointer is the engine's checkpoint state, owned by Run's goroutine
// (the counters excepted).
type checkpointer struct {
	pol          CommitPolicy // defaulted
	trig         *state.Trigger
	pending      []*ingest.Receipt
	midInput     bool       // the last reading processed had More set
	backlog      func() int // readings waiting in Run's input
	records      uint64     // summaries + alerts emitted as of the last checkpoint
	replace      bool
	engineStored bool // engineKey is in the store
	batch        state.Batch
	changes      []StateChange
	cp           Checkpoint
	logLimit     lograte.Limiter

	checkpoints, commitErrors, restored, dropped atomic.Uint64
	stateKeys, lastKeys, npending                atomic.Int64
}

func newCheckpointer(p CommitPolicy) *checkpointer {
	if p.MaxReceipts <= 0 {
		p.MaxReceipts = 20
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = 250 * time.Millisecond
	}
	if p.StateEvery <= 0 {
		p.StateEvery = 5 * time.Second
	}
	return &checkpointer{pol: p, trig: state.NewTrigger(p.MaxReceipts, p.MaxDelay, p.StateEvery)}
}

func (e *Engine) records() uint64 { return e.win.Stats().Summaries + e.alerts.sent.Load() }

func (e *Engine) changed() bool {
	c := e.chain
	return e.ck.replace || e.win.Changed() || len(c.routeCk.Dirty)+len(c.routeCk.Gone)+len(c.deriveCk.Dirty)+
		len(c.deriveCk.Gone)+len(e.alerts.ck.Dirty)+len(e.alerts.ck.Gone) > 0
}

// receipt handles the receipt of a processed reading (err: processing
// failed, Run is about to return and completes the pending ones, in order).
func (e *Engine) receipt(rc *ingest.Receipt, err error) {
	if e.ck == nil {
		rc.Committed(err)
		return
	}
	e.ck.pending = append(e.ck.pending, rc)
	e.ck.npending.Store(int64(len(e.ck.pending)))
	e.ck.trig.Receipt()
}

// abandon completes the pending receipts with err: Run returns without a
// commit, the inputs stay unacknowledged.
func (e *Engine) abandon(err error) {
	if e.ck == nil {
		return
	}
	for _, rc := range e.ck.pending {
		rc.Committed(err)
	}
	clear(e.ck.pending)
	e.ck.pending = e.ck.pending[:0]
	e.ck.npending.Store(0)
}

// maybeCheckpoint checkpoints when a trigger of the policy is due; it
// returns the wall time (ns) at which to look again (0: nothing pending).
func (e *Engine) maybeCheckpoint(em *emitter) (int64, error) {
	ck := e.ck
	if ck.midInput { // the rest of a durable input is on its way (Reading.More)
		return e.now().UnixNano() + int64(time.Millisecond), nil
	}
	due, next := ck.trig.Due(e.now().UnixNano(), len(ck.pending), e.records() != ck.records, e.changed())
	if !due {
		return next, nil
	}
	return 0, e.checkpoint(em, false)
}

// ErrNoCommitter is returned by Run when Options.Commit is set and the
// sink is not a Committer.
var ErrNoCommitter = errors.New("rules: Options.Commit is set but the sink does not implement Committer")

// checkpoint builds and commits a checkpoint. A failed commit is retried
// later, except the final one, whose error is returned.
func (e *Engine) checkpoint(em *emitter, final bool) error {
	ck := e.ck
	cm, ok := em.sink.(Committer)
	if !ok {
		return ErrNoCommitter
	}
	b := &ck.batch
	b.Reset()
	all := ck.replace
	recs := e.records()
	e.win.Changes(b, all)
	e.stateChanges(b, all)
	now := e.now().UnixNano()
	if b.Len() == 0 && len(ck.pending) == 0 && recs == ck.records && !all {
		ck.trig.Done()
		return nil
	}
	b.Start()
	b.Buf = append(b.Buf, engineKey...)
	b.Mid()
	b.Buf = appendEngineState(b.Buf, e)
	b.End()
	ck.changes = ck.changes[:0]
	b.Each(func(k, v []byte) { ck.changes = append(ck.changes, StateChange{k, v}) })
	ck.cp = Checkpoint{State: ck.changes, Receipts: ck.pending, Replace: all, Final: final}
	err := cm.Commit(em.ctx, &ck.cp)
	ck.cp = Checkpoint{}
	if err != nil {
		ck.commitErrors.Add(1)
		ck.trig.Failed(now)
		if ck.logLimit.Allow() {
			e.log.Warn("rules: checkpoint not committed, will retry", "err", err, "receipts", len(ck.pending),
				"state_keys", b.Len(), "suppressed", ck.logLimit.TakeSuppressed())
		}
		if final {
			return fmt.Errorf("rules: final checkpoint: %w", err)
		}
		return nil
	}
	added, deleted := e.win.Committed(all)
	a2, d2 := e.stateCommitted(all)
	if all {
		ck.stateKeys.Store(int64(added + a2 + 1))
	} else if n := added + a2 - deleted - d2; ck.engineStored {
		ck.stateKeys.Add(int64(n))
	} else {
		ck.stateKeys.Add(int64(n + 1))
	}
	ck.engineStored = true
	ck.lastKeys.Store(int64(b.Len()))
	ck.checkpoints.Add(1)
	ck.replace = false
	ck.trig.Done()
	ck.records = recs
	for _, rc := range ck.pending {
		rc.Committed(nil)
	}
	clear(ck.pending)
	ck.pending = ck.pending[:0]
	ck.npending.Store(0)
	return nil
}
