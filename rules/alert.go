package rules

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"strconv"

	"github.com/sensorgate/sensorgate/ingest"
)

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
func (e *Engine) checkAlert(em *emitter, st *alertState, r *ingest.Reading) error {
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
		return e.sendAlert(em, st, r, ingest.AlertFire, rule.limit)
	}
	if rule.clears(v) {
		st.active = false
		st.pending = false
		st.seq++
		return e.sendAlert(em, st, r, ingest.AlertClear, rule.clearAt)
	}
	if rule.renotify > 0 && r.Time-st.lastNotify >= rule.renotify {
		st.seq++
		st.lastNotify = r.Time
		return e.sendAlert(em, st, r, ingest.AlertFire, rule.limit)
	}
	return nil
}

func (e *Engine) sendAlert(em *emitter, st *alertState, r *ingest.Reading, state string, threshold float64) error {
	rule := st.rule
	a := &e.alert
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
	e.alerts.Add(1)
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
