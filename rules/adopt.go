package rules

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// derive inputs) starts afresh.
func (e *Engine) Adopt(ctx context.Context, old *Engine, sink Sink) error {
	if e == old {
		return fmt.Errorf("%w: an engine cannot adopt itself", ErrAdopt)
	}
	if e.running.Load() || old.running.Load() {
		return ErrRunning
	}
	if len(e.keys) != 0 || len(e.astates) != 0 {
		return fmt.Errorf("%w: the engine already has state", ErrAdopt)
	}
	byName := map[string]*window{}
	for _, w := range e.windows {
		byName[w.cfg.Name] = w
	}
	em := &emitter{ctx, sink}
	var flushErr error
	for _, k := range old.keys {
		nw := byName[k.w.cfg.Name]
		if nw == nil || !sameWindow(nw.cfg, k.w.cfg) {
			if flushErr == nil {
				flushErr = old.flushKey(em, k)
			}
			continue
		}
		id := wkeyID{win: nw.idx, sensor: k.sensor, group: k.group, metric: k.metric}
		k.w, k.id, k.refs = nw, id, 0
		e.wkeys[id] = k
		e.keys = append(e.keys, k)
		e.nkeys.Add(1)
		e.openWindows.Add(int64(len(k.open)))
	}
	rules := map[string]int{}
	for i, a := range e.alertsR {
		rules[a.cfg.ID] = i
	}
	for _, st := range old.astates {
		i, ok := rules[st.rule.cfg.ID]
		if !ok || !sameAlert(e.alertsR[i].cfg, st.rule.cfg) {
			continue
		}
		st.rule, st.key, st.refs = e.alertsR[i], alertKey{i, st.sensor, st.metric}, 0
		e.astates[st.key] = st
	}
	e.lastTick, e.lastSweep = old.lastTick, old.lastSweep
	old.keys, old.wkeys, old.astates, old.routes = nil, map[wkeyID]*wkey{}, map[alertKey]*alertState{}, map[routeKey]*route{}
	old.openWindows.Store(0)
	old.nkeys.Store(0)
	old.nroutes.Store(0)
	if flushErr != nil {
		return fmt.Errorf("rules: adopt: flush: %w", flushErr)
	}
	return nil
}

// flushKey emits every open window and pending revision of k.
func (e *Engine) flushKey(em *emitter, k *wkey) error {
	if k.w.kind == kindHopping {
		if err := e.emitHopping(em, k, k.wm, 1<<63-1); err != nil {
			return err
		}
	}
	for len(k.open) > 0 {
		b := k.open[0]
		k.open = k.open[1:]
		e.openWindows.Add(-1)
		err := e.emit(em, k, b)
		e.retire(k, b)
		if err != nil {
			return err
		}
	}
	k.open = nil
	return e.revise(em, k)
}

func sameWindow(a, b WindowConfig) bool {
	return a.Name == b.Name && a.Type == b.Type && a.Size == b.Size && a.Slide == b.Slide && a.Gap == b.Gap &&
		a.Time == b.Time && a.Late == b.Late && a.Retention == b.Retention && a.GroupBy == b.GroupBy &&
		slices.Equal(a.Aggregates, b.Aggregates) && slices.Equal(a.Quantiles, b.Quantiles) && a.SketchAccuracy == b.SketchAccuracy
}

func sameAlert(a, b AlertRule) bool {
	eq := func(x, y *float64) bool { return x == nil && y == nil || x != nil && y != nil && *x == *y }
	return a.ID == b.ID && a.Sensor == b.Sensor && a.Metric == b.Metric && eq(a.Above, b.Above) && eq(a.Below, b.Below) &&
		eq(a.ClearBelow, b.ClearBelow) && eq(a.ClearAbove, b.ClearAbove) && a.Hold == b.Hold && a.Renotify == b.Renotify &&
		a.Severity == b.Severity && a.Message == b.Message
}
