package rules

// The door, the engine's first stage (see the package doc). It runs in the
// engine's goroutine: as a stage of its own it cost a goroutine hop per
// reading, 15 times the check.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"sync/atomic"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/clock"
	"github.com/sensorgate/sensorgate/internal/lograte"
)

// Reasons a reading is rejected at the door (DoorStats.Rejected).
const (
	ReasonNotFinite     = "not_finite"     // NaN or ±Inf
	ReasonOutOfRange    = "out_of_range"   // outside the sensor's configured physical range
	ReasonUnknownSensor = "unknown_sensor" // not in the allowlist
)

// reasons lists every rejection reason in a fixed order.
var reasons = [...]string{ReasonNotFinite, ReasonOutOfRange, ReasonUnknownSensor}

// Reasons returns every rejection reason, in a fixed order (for
// pre-creating counter labels).
func Reasons() []string { return append([]string(nil), reasons[:]...) }

// Indexes into reasons.
const (
	idxNotFinite = iota
	idxOutOfRange
	idxUnknownSensor
)

// Policies of Config.OutOfRange.
const (
	PolicyReject = "reject"
	PolicyFlag   = "flag"
)

// DefaultMaxFutureSkew is the default of Config.MaxFutureSkew.
const DefaultMaxFutureSkew = 5 * time.Minute

// Validation is the `validation:` section of the gateway configuration:
// what the door checks.
type Validation struct {
	// MaxFutureSkew: a payload timestamp further than this ahead of the
	// gateway's (synchronised) clock is not trusted: the reading gets the
	// arrival time, the payload's value in OrigTime and
	// ingest.QualityFutureTime. Default 5m.
	MaxFutureSkew time.Duration `yaml:"max_future_skew"`
	// MinTime: payload timestamps before it come from a device whose own
	// clock was never set (or a bug) and are treated like future ones, with
	// ingest.QualityStaleTime. Default 2025-01-01T00:00:00Z (clock.DefaultMinTime()).
	MinTime time.Time `yaml:"min_time"`
	// OutOfRange is reject (default: dropped and counted) or flag (kept with
	// ingest.QualityOutOfRange).
	OutOfRange string `yaml:"out_of_range"`
	// Allow lists the sensor ids accepted; empty accepts every sensor unless
	// KnownSensorsOnly is set.
	Allow []string `yaml:"allow"`
	// KnownSensorsOnly accepts only sensors present in the sensors section
	// of the configuration (Door.Sensors), plus Allow.
	KnownSensorsOnly bool `yaml:"known_sensors_only"`
}

// Defaults fills zero fields (max_future_skew 5m, min_time
// clock.DefaultMinTime(), out_of_range reject).
func (c *Validation) Defaults() {
	if c.MaxFutureSkew == 0 {
		c.MaxFutureSkew = DefaultMaxFutureSkew
	}
	if c.MinTime.IsZero() {
		c.MinTime = clock.DefaultMinTime()
	}
	if c.OutOfRange == "" {
		c.OutOfRange = PolicyReject
	}
}

// Validate checks c after Defaults; error paths are relative to the
// section ("max_future_skew").
func (c Validation) Validate() error {
	var errs []error
	if c.MaxFutureSkew < 0 {
		errs = append(errs, ingest.FieldErrorf("max_future_skew", "must be >= 0"))
	}
	switch c.OutOfRange {
	case PolicyReject, PolicyFlag, "":
	default:
		errs = append(errs, ingest.FieldErrorf("out_of_range", "must be reject or flag, not %q", c.OutOfRange))
	}
	for i, s := range c.Allow {
		if s == "" {
			errs = append(errs, ingest.FieldErrorf(fmt.Sprintf("allow[%d]", i), "empty sensor id"))
		}
	}
	return errors.Join(errs...)
}

// Range is a physical range; a nil bound is open.
type Range struct {
	Min *float64 `yaml:"min"`
	Max *float64 `yaml:"max"`
}

// Contains reports whether v lies within r (bounds included).
func (r Range) Contains(v float64) bool {
	return (r.Min == nil || v >= *r.Min) && (r.Max == nil || v <= *r.Max)
}

// Validate checks that min <= max.
func (r Range) Validate() error {
	if r.Min != nil && r.Max != nil && *r.Min > *r.Max {
		return ingest.FieldErrorf("min", "must be <= max")
	}
	if (r.Min != nil && math.IsNaN(*r.Min)) || (r.Max != nil && math.IsNaN(*r.Max)) {
		return ingest.FieldErrorf("", "bounds must be numbers")
	}
	return nil
}

// SensorSpec is what the door needs to know of a configured sensor.
type SensorSpec struct {
	// Ranges maps metric names to their physical range.
	Ranges map[string]Range
}

// Door is what the engine's door is built from: the `validation:` section,
// the sensors section and the gateway clock. A nil Options.Door keeps only
// the checks the windows need (finite values, event times within about the
// year 2116 either side of 1970), with no allowlist, ranges or time flags.
type Door struct {
	// Validation is the `validation:` section; New applies its defaults.
	Validation Validation
	// Sensors is the sensors section (id -> spec): the ranges and, with
	// KnownSensorsOnly, the allowlist.
	Sensors map[string]SensorSpec
	// Clock is the gateway clock; nil makes one with Validation.MinTime.
	// Share it with the sources (as their Now) so that arrival stamps can
	// be corrected after a jump. Run refreshes it.
	Clock *clock.Clock
	// Tick drives the clock refresh in Run; nil means a 1 s ticker.
	Tick <-chan time.Time
}

// DoorStats is a snapshot of the door's counters.
type DoorStats struct {
	Checked  uint64
	Passed   uint64
	Rejected map[string]uint64 // by reason
	// Flagged counts readings passed on with a quality flag set here.
	FutureTime, StaleTime, ClockUnsynced, OutOfRange uint64
	// Corrected counts arrival stamps moved after a clock jump.
	Corrected uint64
	Synced    bool // the clock is synchronised now
	Jumps     uint64
}

// sensorRules is what the door knows of one sensor.
type sensorRules struct {
	allowed bool
	ranges  []metricRange
}

type metricRange struct {
	metric string
	r      Range
}

// door owns the door's configuration, clock and counters. Its check is
// split in two so that the route cache carries the per-sensor lookups: the
// allowlist is asked once per new route (allows), the sensor's range for
// the metric is resolved once per route (rangeFor), and only check runs
// per reading.
type door struct {
	full      bool // built from an Options.Door: time checks, flags
	log       *slog.Logger
	clock     *clock.Clock
	tick      <-chan time.Time
	sensors   map[string]*sensorRules
	allowList bool // only sensors with allowed set pass
	flagRange bool
	skew      int64
	minTime   int64

	checked, passed                           atomic.Uint64
	rejected                                  [len(reasons)]atomic.Uint64
	future, stale, unsynced, flagged, correct atomic.Uint64
	logLimit                                  lograte.Limiter
}

func newDoor(d *Door, log *slog.Logger) (*door, error) {
	if d == nil {
		return &door{log: log, sensors: map[string]*sensorRules{}}, nil
	}
	cfg := d.Validation
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("rules: door: config: %w", err)
	}
	v := &door{full: true, log: log, clock: d.Clock, tick: d.Tick,
		sensors: map[string]*sensorRules{}, flagRange: cfg.OutOfRange == PolicyFlag,
		skew: int64(cfg.MaxFutureSkew), minTime: cfg.MinTime.UnixNano()}
	if v.clock == nil {
		v.clock = clock.New(clock.Options{MinTime: cfg.MinTime})
	}
	var errs []error
	ids := make([]string, 0, len(d.Sensors))
	for id := range d.Sensors {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	rules := func(id string) *sensorRules {
		sr := v.sensors[id]
		if sr == nil {
			sr = &sensorRules{}
			v.sensors[id] = sr
		}
		return sr
	}
	for _, id := range ids {
		metrics := make([]string, 0, len(d.Sensors[id].Ranges))
		for m := range d.Sensors[id].Ranges {
			metrics = append(metrics, m)
		}
		sort.Strings(metrics)
		for _, m := range metrics {
			r := d.Sensors[id].Ranges[m]
			if err := r.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("rules: door: sensor %q metric %q: %w", id, m, err))
				continue
			}
			sr := rules(id)
			sr.ranges = append(sr.ranges, metricRange{m, r})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(cfg.Allow) > 0 || cfg.KnownSensorsOnly {
		v.allowList = true
		for _, id := range cfg.Allow {
			rules(id).allowed = true
		}
		if cfg.KnownSensorsOnly {
			for _, id := range ids {
				rules(id).allowed = true
			}
		}
	}
	return v, nil
}

// allows reports whether the allowlist lets sensor in; a refusal is
// counted and logged by refuse.
func (v *door) allows(sensor string) bool {
	if !v.allowList {
		return true
	}
	sr := v.sensors[sensor]
	return sr != nil && sr.allowed
}

// refuse counts a reading of a sensor the allowlist does not know.
func (v *door) refuse(r *ingest.Reading) {
	v.checked.Add(1)
	v.reject(r, idxUnknownSensor)
}

// rangeFor returns the physical range of sensor's metric, nil if none.
// The pointer stays valid for the door's life.
func (v *door) rangeFor(sensor, metric string) *Range {
	sr := v.sensors[sensor]
	if sr == nil {
		return nil
	}
	for i := range sr.ranges {
		if sr.ranges[i].metric == metric {
			return &sr.ranges[i].r
		}
	}
	return nil
}

// check decides on r, of an allowed sensor whose range for r's metric is
// rng (nil: none), and may change it: quality flags, an untrusted event
// time replaced with the arrival time (the payload's kept in OrigTime), an
// arrival stamp taken before a clock jump corrected. false drops it.
//
// The order of the checks: (allowlist, done by allows), finiteness, range,
// then time.
func (v *door) check(rng *Range, r *ingest.Reading) bool {
	v.checked.Add(1)
	if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) {
		v.reject(r, idxNotFinite)
		return false
	}
	if rng != nil && !rng.Contains(r.Value) {
		if !v.flagRange {
			v.reject(r, idxOutOfRange)
			return false
		}
		r.Quality |= ingest.QualityOutOfRange
		v.flagged.Add(1)
	}
	if v.full {
		v.checkTime(r)
	}
	v.passed.Add(1)
	// Not a door policy but what window arithmetic needs, so not a reason:
	// counted in Stats.Rejected only.
	return r.Time <= maxSaneTime && r.Time >= -maxSaneTime
}

// maxSaneTime bounds the event times the windows accept (about the year
// 2116 either side of 1970), so that window arithmetic cannot overflow.
const maxSaneTime = 1 << 62

func (v *door) checkTime(r *ingest.Reading) {
	// An arrival stamped before a jump of the unsynchronised clock: move it
	// (and an event time that was only the arrival time) onto the new clock.
	if a, moved := v.clock.Correct(r.Arrival); moved {
		if r.Quality.Has(ingest.QualityNoEventTime) && r.Time == r.Arrival {
			r.Time = a
		}
		r.Arrival = a
		r.Quality |= ingest.QualityClockUnsynced // it was taken while unsynced
		v.correct.Add(1)
	} else if !v.clock.Synced() {
		r.Quality |= ingest.QualityClockUnsynced
		v.unsynced.Add(1)
	}
	if r.Quality.Has(ingest.QualityNoEventTime) {
		return // Time is the arrival time: nothing from the payload to judge
	}
	switch {
	case r.Time < v.minTime:
		r.OrigTime, r.Time = r.Time, r.Arrival
		r.Quality |= ingest.QualityStaleTime
		v.stale.Add(1)
	case (v.clock.Synced() || r.Arrival >= v.minTime) && r.Time > r.Arrival+v.skew:
		// A gateway clock still in 1970 cannot call a device's time
		// "future". But one that is merely not reported synchronised (no
		// NTP daemon, or fake-hwclock's stale time) is close enough: a
		// timestamp decades ahead trusted as event time would push the
		// key's watermark there and make every later reading late. Such a
		// reading is kept, flagged, with its payload time in OrigTime.
		r.OrigTime, r.Time = r.Time, r.Arrival
		r.Quality |= ingest.QualityFutureTime
		v.future.Add(1)
	}
}

func (v *door) reject(r *ingest.Reading, i int) {
	v.rejected[i].Add(1)
	if v.logLimit.Allow() {
		v.log.Warn("rules: door: reading rejected", "reason", reasons[i], "sensor", r.Sensor, "metric", r.Metric,
			"value", r.Value, "suppressed", v.logLimit.TakeSuppressed())
	}
}

func (v *door) stats() DoorStats {
	s := DoorStats{
		Checked: v.checked.Load(), Passed: v.passed.Load(), Rejected: make(map[string]uint64, len(reasons)),
		FutureTime: v.future.Load(), StaleTime: v.stale.Load(), ClockUnsynced: v.unsynced.Load(),
		OutOfRange: v.flagged.Load(), Corrected: v.correct.Load(),
	}
	if v.clock != nil {
		s.Synced, s.Jumps = v.clock.Synced(), v.clock.JumpCount()
	}
	for i, r := range reasons {
		s.Rejected[r] = v.rejected[i].Load()
	}
	return s
}

// watch keeps the clock current (a Refresh every tick) and logs its jumps
// and changes of synchronisation, until ctx is done. Run starts it when the
// door has a clock.
func (v *door) watch(ctx context.Context) {
	tick := v.tick
	if tick == nil {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tick = t.C
	}
	wasSynced := v.clock.Synced()
	if !wasSynced {
		v.log.Warn("rules: door: the gateway clock is not synchronised; readings are flagged clock_unsynced until it is",
			"now", v.clock.Now().UTC())
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		if j, jumped := v.clock.Refresh(); jumped {
			v.log.Warn("rules: door: clock jumped", "by", time.Duration(j.Offset), "was_unsynced", j.Unsynced)
		}
		if s := v.clock.Synced(); s != wasSynced {
			wasSynced = s
			v.log.Info("rules: door: clock synchronisation changed", "synced", s, "now", v.clock.Now().UTC())
		}
	}
}
