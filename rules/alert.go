package rules

import (
	"sync/atomic"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/rules/internal/alertfmt"
	"github.com/sensorgate/sensorgate/rules/internal/state"
)

// alertSet owns the alert rules and the state of every (rule, sensor,
// metric) they watch, shared by the routes that lead there.
type alertSet struct {
	rules  []*alertRule
	states map[alertKey]*alertState
	alert  ingest.Alert // reused for every emission
	sent   atomic.Uint64
	ck     state.List[*alertState] // checkpoints: states changed since the last one
}

func newAlertSet(cfg []AlertRule) *alertSet {
	as := &alertSet{states: map[alertKey]*alertState{}}
	for _, a := range cfg {
		as.rules = append(as.rules, compileAlert(a))
	}
	return as
}

// attach returns the states of the rules that watch sensor and metric,
// creating them on first use and taking a reference on each (release
// gives it back).
func (as *alertSet) attach(sensor, metric string, meta map[string]string) []*alertState {
	var out []*alertState
	for i, a := range as.rules {
		if !match(a.cfg.Sensor, sensor) || !match(a.cfg.Metric, metric) {
			continue
		}
		ak := alertKey{i, sensor, metric}
		st := as.states[ak]
		if st == nil {
			st = &alertState{rule: a, sensor: sensor, metric: metric, meta: meta, key: ak}
			as.states[ak] = st
		}
		if st.meta == nil {
			st.meta = meta // restored from a checkpoint
		}
		st.refs++
		out = append(out, st)
	}
	return out
}

// release drops a reference taken by attach; the state goes with the last.
func (as *alertSet) release(st *alertState) {
	if st.refs--; st.refs == 0 {
		delete(as.states, st.key)
		as.ck.Drop(st)
	}
}

// adopt takes over the states of old for rules with the same id and the
// same definition; a firing alert of a rule that changed or went away is
// forgotten without a clear. old is empty afterwards.
func (as *alertSet) adopt(old *alertSet) {
	byID := map[string]int{}
	for i, a := range as.rules {
		byID[a.cfg.ID] = i
	}
	for _, st := range old.states {
		i, ok := byID[st.rule.cfg.ID]
		if !ok || !sameAlert(as.rules[i].cfg, st.rule.cfg) {
			continue
		}
		st.rule, st.key, st.refs = as.rules[i], alertKey{i, st.sensor, st.metric}, 0
		as.states[st.key] = st
	}
	old.states = map[alertKey]*alertState{}
}

// alertRule is a compiled AlertRule.
type alertRule struct {
	cfg      AlertRule
	high     bool // above rule (else below)
	limit    float64
	clearAt  float64
	hold     int64
	renotify int64
}

func compileAlert(c AlertRule) *alertRule {
	a := &alertRule{cfg: c, hold: int64(c.Hold), renotify: int64(c.Renotify)}
	if c.Above != nil {
		a.high = true
		a.limit = *c.Above
		a.clearAt = a.limit
		if c.ClearBelow != nil {
			a.clearAt = *c.ClearBelow
		}
	} else {
		a.limit = *c.Below
		a.clearAt = a.limit
		if c.ClearAbove != nil {
			a.clearAt = *c.ClearAbove
		}
	}
	return a
}

// alertState is one rule's state for one sensor and metric.
type alertState struct {
	rule   *alertRule
	sensor string
	metric string
	meta   map[string]string

	state.Alert
	id string

	key  alertKey
	refs int // routes that lead here
	state.Flags
}

func (a *alertRule) fires(v float64) bool {
	if a.high {
		return v > a.limit
	}
	return v < a.limit
}

func (a *alertRule) clears(v float64) bool {
	if a.high {
		return v < a.clearAt
	}
	return v > a.clearAt
}

// checkAlert runs the hysteresis state machine of st on r.
func (as *alertSet) check(em *emitter, st *alertState, r *ingest.Reading) error {
	rule := st.rule
	v := r.Value
	if st.Seen && r.Time < st.LastT {
		// Out of order: the state already reflects newer readings.
		return nil
	}
	st.Seen, st.LastT = true, r.Time
	as.ck.Touch(st)
	if !st.Active {
		if !rule.fires(v) {
			st.Pending = false
			return nil
		}
		if !st.Pending || r.Time < st.PendSince {
			st.Pending = true
			st.PendSince = r.Time
		}
		if r.Time-st.PendSince < rule.hold {
			return nil
		}
		st.Active = true
		st.Pending = false
		st.Since = st.PendSince
		st.Seq = 0
		st.LastNotify = r.Time
		st.id = alertfmt.ID(rule.cfg.ID, st.sensor, st.metric, st.Since)
		return as.send(em, st, r, ingest.AlertFire, rule.limit)
	}
	if rule.clears(v) {
		st.Active = false
		st.Pending = false
		st.Seq++
		return as.send(em, st, r, ingest.AlertClear, rule.clearAt)
	}
	if rule.renotify > 0 && r.Time-st.LastNotify >= rule.renotify {
		st.Seq++
		st.LastNotify = r.Time
		return as.send(em, st, r, ingest.AlertFire, rule.limit)
	}
	return nil
}

func (as *alertSet) send(em *emitter, st *alertState, r *ingest.Reading, state string, threshold float64) error {
	rule := st.rule
	a := &as.alert
	*a = ingest.Alert{
		ID:        st.id,
		Rule:      rule.cfg.ID,
		Sensor:    st.sensor,
		Metric:    st.metric,
		Unit:      r.Unit,
		State:     state,
		Severity:  rule.cfg.Severity,
		Value:     r.Value,
		Threshold: threshold,
		Since:     st.Since,
		Time:      r.Time,
		Seq:       st.Seq,
		Message:   rule.cfg.Message,
		Meta:      st.meta,
	}
	if a.Message == "" {
		a.Message = alertfmt.Message(a, rule.high)
	}
	as.sent.Add(1)
	return em.sink.Alert(em.ctx, a)
}

type alertKey struct {
	rule           int
	sensor, metric string
}

func sameAlert(a, b AlertRule) bool {
	eq := func(x, y *float64) bool { return x == nil && y == nil || x != nil && y != nil && *x == *y }
	return a.ID == b.ID && a.Sensor == b.Sensor && a.Metric == b.Metric && eq(a.Above, b.Above) && eq(a.Below, b.Below) &&
		eq(a.ClearBelow, b.ClearBelow) && eq(a.ClearAbove, b.ClearAbove) && a.Hold == b.Hold && a.Renotify == b.Renotify &&
		a.Severity == b.Severity && a.Message == b.Message
}
