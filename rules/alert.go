package rules

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync/atomic"

	"github.com/sensorgate/sensorgate/ingest"
)

// alertSet owns the alert rules and the state of every (rule, sensor,
// metric) they watch, shared by the routes that lead there.
type alertSet struct {
	rules  []*alertRule
	states map[alertKey]*alertState
	alert  ingest.Alert // reused for every emission
	sent   atomic.Uint64
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
		st.refs++
		out = append(out, st)
	}
	return out
}

// release drops a reference taken by attach; the state goes with the last.
func (as *alertSet) release(st *alertState) {
	if st.refs--; st.refs == 0 {
		delete(as.states, st.key)
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

	pending    bool
	pendSince  int64
	active     bool
	since      int64
	seq        uint32
	lastNotify int64
	id         string
	seen       bool
	lastT      int64 // newest event time evaluated

	key  alertKey
	refs int // routes that lead here
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
	if st.seen && r.Time < st.lastT {
		// Out of order: the state already reflects newer readings.
		return nil
	}
	st.seen, st.lastT = true, r.Time
	if !st.active {
		if !rule.fires(v) {
			st.pending = false
			return nil
		}
		if !st.pending || r.Time < st.pendSince {
			st.pending = true
			st.pendSince = r.Time
		}
		if r.Time-st.pendSince < rule.hold {
			return nil
		}
		st.active = true
		st.pending = false
		st.since = st.pendSince
		st.seq = 0
		st.lastNotify = r.Time
		st.id = alertID(rule.cfg.ID, st.sensor, st.metric, st.since)
		return as.send(em, st, r, ingest.AlertFire, rule.limit)
	}
	if rule.clears(v) {
		st.active = false
		st.pending = false
		st.seq++
		return as.send(em, st, r, ingest.AlertClear, rule.clearAt)
	}
	if rule.renotify > 0 && r.Time-st.lastNotify >= rule.renotify {
		st.seq++
		st.lastNotify = r.Time
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
		Since:     st.since,
		Time:      r.Time,
		Seq:       st.seq,
		Message:   rule.cfg.Message,
		Meta:      st.meta,
	}
	if a.Message == "" {
		a.Message = alertMessage(a, rule.high)
	}
	as.sent.Add(1)
	return em.sink.Alert(em.ctx, a)
}

func alertMessage(a *ingest.Alert, high bool) string {
	dir := "above"
	if high == (a.State == ingest.AlertClear) {
		dir = "below"
	}
	what := "fired"
	if a.State == ingest.AlertClear {
		what = "cleared"
	}
	unit := ""
	if a.Unit != "" {
		unit = " " + a.Unit
	}
	return fmt.Sprintf("%s %s on %s: %s %s%s (%s %s)", a.Rule, what, a.Sensor, a.Metric,
		strconv.FormatFloat(a.Value, 'g', 6, 64), unit, dir, strconv.FormatFloat(a.Threshold, 'g', 6, 64))
}

// alertID is stable for one firing of rule on sensor/metric.
func alertID(rule, sensor, metric string, since int64) string {
	h := fnv.New64a()
	for _, s := range [...]string{"alert", rule, sensor, metric} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(since))
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], h.Sum64())
	return hex.EncodeToString(b[:])
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
