package rules

import (
	"context"
	"errors"
	"fmt"
)

// ErrAdopt is returned by Adopt for engines that cannot hand over state.
var ErrAdopt = errors.New("rules: adopt")

// Adopt takes over the state of old, the engine of the previous
// configuration, so that a config reload neither cuts windows in two (two
// summaries with one ID: upstream would drop the second as a duplicate)
// nor re-fires alerts. Neither engine may be running; old must have been
// stopped without a flush (PrepareHandover before its input closed, or its
// context cancelled), and is not usable afterwards. A reload then goes:
// stop the sources, old.PrepareHandover(), close old's input, wait for its
// Run to return, New, Adopt, Run the new engine.
//
// Open and retained windows of window rules that exist in both configs
// under the same name with the same kind of window (type, size, slide, gap,
// time, late policy, retention, group_by, aggregates, quantiles, sketch
// accuracy; the sensor and metric globs and the lateness may change)
// continue in e. The windows of the other rules of old are flushed to sink
// now. Alert state moves for rules with the same id and the same
// definition; a firing alert of a rule that changed or went away is
// forgotten without a clear. Per-route stage state (deadband, rate, dedup,
// derive inputs) starts afresh. With checkpoints, e's first checkpoint is
// Replace, with its full state.
func (e *Engine) Adopt(ctx context.Context, old *Engine, sink Sink) error {
	if e == old {
		return fmt.Errorf("%w: an engine cannot adopt itself", ErrAdopt)
	}
	if e.running.Load() || old.running.Load() {
		return ErrRunning
	}
	if e.win.Stats().Keys != 0 || len(e.alerts.states) != 0 {
		return fmt.Errorf("%w: the engine already has state", ErrAdopt)
	}
	em := newEmitter(ctx, sink)
	flushErr := e.win.Adopt(old.win, e.windows, em.summary)
	e.alerts.adopt(old.alerts)
	e.lastTick, e.lastSweep = old.lastTick, old.lastSweep
	if e.ck != nil {
		e.ck.replace = true
		e.ck.trig.Soon(e.now().UnixNano()) // what the flush of old's windows emitted is committed soon
	}
	old.routes = map[routeKey]*route{}
	old.nroutes.Store(0)
	if flushErr != nil {
		return fmt.Errorf("rules: adopt: flush: %w", flushErr)
	}
	return nil
}
