package rules

// The state store's layout, written by checkpoints and read by Restore:
//
//	r/e                              the engine: last tick, last sweep
//	r/w/<rule>\0<sensor>\0<group>\0<metric>  a window key (package window)
//	r/a/<alert id>\0<sensor>\0<metric>       an alert state
//	r/s/<from>\0<sensor>\0<metric>           a route's deadband, rate and dedup state
//	r/d/<stage>\0<sensor>                    a derive stage's inputs
//
// Every value starts with stateVersion.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"strconv"

	"github.com/sensorgate/sensorgate/rules/internal/alertfmt"
	"github.com/sensorgate/sensorgate/rules/internal/state"
	"github.com/sensorgate/sensorgate/rules/window"
)

const stateVersion = 1

var engineKey = []byte("r/e")

// ErrRestore is returned (wrapped) by Restore for an engine that cannot
// restore or a store it cannot read.
var ErrRestore = errors.New("rules: restore")

func appendEngineState(b []byte, e *Engine) []byte {
	b = append(b, stateVersion)
	b = binary.AppendVarint(b, e.lastTick)
	return binary.AppendVarint(b, e.lastSweep)
}

func (e *Engine) stateChanges(b *state.Batch, all bool) {
	e.alerts.ck.Changes(b, all, maps.Values(e.alerts.states), appendAlertName, appendAlertState)
	e.chain.deriveCk.Changes(b, all, maps.Values(e.chain.derives), appendDeriveName, appendDeriveState)
	e.chain.routeCk.Changes(b, all, e.statefulRoutes, appendRouteName, appendRouteState)
}

func (e *Engine) stateCommitted(all bool) (added, deleted int) {
	a1, d1 := e.alerts.ck.Committed(all, maps.Values(e.alerts.states))
	a2, d2 := e.chain.deriveCk.Committed(all, maps.Values(e.chain.derives))
	a3, d3 := e.chain.routeCk.Committed(all, e.statefulRoutes)
	return a1 + a2 + a3, d1 + d2 + d3
}

func (e *Engine) statefulRoutes(yield func(*route) bool) {
	for _, rt := range e.routes {
		if rt.stateful() && !yield(rt) {
			return
		}
	}
}

func stateful(k stageKind) bool { return k == kDeadband || k == kRate || k == kDedup }

func (rt *route) stateful() bool {
	for i := range rt.steps {
		if stateful(rt.steps[i].st.kind) {
			return true
		}
	}
	return false
}

func appendRouteName(b []byte, rt *route) []byte {
	return state.AppendKey(b, "r/s/", strconv.Itoa(rt.key.from), rt.key.sensor, rt.key.metric)
}

func appendRouteState(b []byte, rt *route) []byte {
	b = append(b, stateVersion)
	for i := range rt.steps {
		if s := &rt.steps[i]; stateful(s.st.kind) {
			b = append(binary.AppendUvarint(b, uint64(s.st.idx)), byte(s.st.kind))
			b = state.AppendMemory(b, &s.Memory, s.st.kind == kDedup)
		}
	}
	return b
}

func appendDeriveName(b []byte, ds *deriveState) []byte {
	return state.AppendKey(b, "r/d/", strconv.Itoa(ds.key.stage), ds.key.sensor)
}

func appendDeriveState(b []byte, ds *deriveState) []byte {
	return state.AppendInputs(append(b, stateVersion), &ds.Inputs)
}

func appendAlertName(b []byte, st *alertState) []byte {
	return state.AppendKey(b, "r/a/", st.rule.cfg.ID, st.sensor, st.metric)
}

func appendAlertState(b []byte, st *alertState) []byte {
	b = binary.LittleEndian.AppendUint32(append(b, stateVersion), alertFingerprint(st.rule.cfg))
	return state.AppendAlert(b, &st.Alert)
}

// alertFingerprint identifies an alert rule's definition (sameAlert): the
// state of a rule that changed is dropped on restore.
func alertFingerprint(a AlertRule) uint32 {
	h := fnv.New32a()
	f := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatFloat(*p, 'g', -1, 64)
	}
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%d\x00%d\x00%s\x00%s", a.ID, a.Sensor, a.Metric,
		f(a.Above), f(a.Below), f(a.ClearBelow), f(a.ClearAbove), a.Hold, a.Renotify, a.Severity, a.Message)
	return h.Sum32()
}

// errDrop marks state that the running config cannot continue.
var errDrop = errors.New("state no longer configured")

// Restore loads the state committed by an earlier process's checkpoints,
// before Run, into an engine made with Options.Commit that has no state
// yet. load calls fn for every "r/" key/value in the store (any order; the
// slices need not outlive the call). State of window rules, stages and
// alerts no longer in the config (or whose definition changed) is dropped,
// logged and counted (Stats.StateDropped); if anything was dropped the
// first checkpoint is Replace. A value that cannot be read fails Restore
// (wrapping ErrRestore): the store is damaged, and starting empty would
// count again what it held.
func (e *Engine) Restore(load func(fn func(key, value []byte) error) error) error {
	if e.ck == nil {
		return fmt.Errorf("%w: Options.Commit is not set", ErrRestore)
	}
	if e.running.Load() {
		return ErrRunning
	}
	if e.win.Stats().Keys != 0 || len(e.routes) != 0 || len(e.alerts.states) != 0 {
		return fmt.Errorf("%w: the engine already has state", ErrRestore)
	}
	// Windows and alerts first, routes last: a restored route finds the
	// window keys, alert and derive states it leads to.
	var byKind [5][][2][]byte
	kinds := []string{"r/e", "r/w/", "r/a/", "r/d/", "r/s/"}
	err := load(func(key, value []byte) error {
		for i, p := range kinds {
			if bytes.HasPrefix(key, []byte(p)) {
				byKind[i] = append(byKind[i], [2][]byte{bytes.Clone(key), bytes.Clone(value)})
				return nil
			}
		}
		e.ck.dropped.Add(1)
		e.log.Warn("rules: unknown state key dropped", "key", string(key))
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRestore, err)
	}
	restore := []func(k, v []byte) error{e.restoreEngine, e.restoreWindow, e.restoreAlert, e.restoreDerive, e.restoreRoute}
	n := 0
	for i, list := range byKind {
		for _, kv := range list {
			err := restore[i](kv[0], kv[1])
			switch {
			case err == nil:
				n++
			case errors.Is(err, errDrop) || errors.Is(err, window.ErrDropped):
				e.ck.dropped.Add(1)
				e.ck.replace = true
				e.log.Info("rules: state dropped", "key", string(kv[0]), "why", err)
			default:
				return fmt.Errorf("%w: %q: %w", ErrRestore, kv[0], err)
			}
		}
	}
	e.win.Resume(e.lastTick)
	e.pinUntil = e.lastTick + int64(e.cfg.KeyTTL)
	e.ck.restored.Store(uint64(n))
	e.ck.stateKeys.Store(int64(n) + int64(e.ck.dropped.Load())) // the dropped ones stay until the Replace
	e.ck.engineStored = len(byKind[0]) > 0
	return nil
}

func (e *Engine) restoreEngine(_, v []byte) error {
	d, err := state.Versioned(v, stateVersion)
	if err != nil {
		return err
	}
	e.lastTick, e.lastSweep = d.Varint(), d.Varint()
	return d.Done()
}

func (e *Engine) restoreWindow(k, v []byte) error { return e.win.RestoreKey(k, v, e.windows) }

func (e *Engine) restoreAlert(k, v []byte) error {
	p, err := state.SplitKey(k, "r/a/", 3)
	if err != nil {
		return err
	}
	d, err := state.Versioned(v, stateVersion)
	if err != nil {
		return err
	}
	if len(d.B) < 4 {
		return state.ErrCorrupt
	}
	fp := binary.LittleEndian.Uint32(d.B)
	d.B = d.B[4:]
	idx := -1
	for i, a := range e.alerts.rules {
		if a.cfg.ID == p[0] && alertFingerprint(a.cfg) == fp {
			idx = i
		}
	}
	if idx < 0 {
		return errDrop
	}
	st := &alertState{rule: e.alerts.rules[idx], sensor: p[1], metric: p[2], key: alertKey{idx, p[1], p[2]}, Alert: state.DecodeAlert(d)}
	if err := d.Done(); err != nil {
		return err
	}
	st.id = alertfmt.ID(st.rule.cfg.ID, st.sensor, st.metric, st.Since)
	st.Stored = true
	e.alerts.states[st.key] = st
	return nil
}

func (e *Engine) restoreDerive(k, v []byte) error {
	p, err := state.SplitKey(k, "r/d/", 2)
	if err != nil {
		return err
	}
	d, err := state.Versioned(v, stateVersion)
	if err != nil {
		return err
	}
	idx, err := strconv.Atoi(p[0])
	c := e.chain
	if err != nil || idx < 0 || idx >= len(c.stages) || c.stages[idx].kind != kDerive {
		return errDrop
	}
	in, ok := state.DecodeInputs(d, len(c.stages[idx].cfg.Inputs))
	if !ok {
		return errDrop
	}
	if err := d.Done(); err != nil {
		return err
	}
	dk := deriveKey{idx, p[1]}
	ds := &deriveState{Inputs: in, key: dk}
	ds.Stored = true
	c.derives[dk] = ds
	return nil
}

func (e *Engine) restoreRoute(k, v []byte) error {
	p, err := state.SplitKey(k, "r/s/", 3)
	if err != nil {
		return err
	}
	d, err := state.Versioned(v, stateVersion)
	if err != nil {
		return err
	}
	from, err := strconv.Atoi(p[0])
	if err != nil || from < 0 || from > len(e.chain.stages) || from == 0 && !e.door.allows(p[1]) {
		return errDrop
	}
	rt := e.routeFor(p[1], p[2], from)
	if rt == nil {
		return errDrop
	}
	rt.Stored = true
	restored, entries := 0, 0
	for ; len(d.B) > 0 && d.Err == nil; entries++ {
		idx, kind := int(d.Uvarint()), stageKind(d.Byte())
		var scratch state.Memory // for a stage that went away
		m := &scratch
		for i := range rt.steps {
			if rt.steps[i].st.idx == idx && rt.steps[i].st.kind == kind {
				m = &rt.steps[i].Memory
				restored++
			}
		}
		state.DecodeMemory(d, m, kind == kDedup)
	}
	if err := d.Done(); err != nil {
		return err
	}
	if restored < entries {
		return errDrop // what was restored stays; the first checkpoint replaces the rest
	}
	return nil
}
