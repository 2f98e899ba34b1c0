package validate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/clock"
)

// Reasons a reading is rejected at the door.
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

// Config is the door-validation section.
type Config struct {
	// MaxFutureSkew: a payload timestamp further than this ahead of the
	// gateway's (synchronised) clock is not trusted: the reading gets the
	// arrival time, the payload's value in OrigTime and
	// ingest.QualityFutureTime. Default 5m.
	MaxFutureSkew time.Duration `yaml:"max_future_skew"`
	// MinTime: payload timestamps before it come from a device whose own
	// clock was never set (or a bug) and are treated like future ones, with
	// ingest.QualityStaleTime. Default 2025-01-01T00:00:00Z (DefaultMinTime()).
	MinTime time.Time `yaml:"min_time"`
	// OutOfRange is reject (default: dropped and counted) or flag (kept with
	// ingest.QualityOutOfRange).
	OutOfRange string `yaml:"out_of_range"`
	// Allow lists the sensor ids accepted; empty accepts every sensor unless
	// KnownSensorsOnly is set.
	Allow []string `yaml:"allow"`
	// KnownSensorsOnly accepts only sensors present in the sensors section
	// of the configuration (the map given to New), plus Allow.
	KnownSensorsOnly bool `yaml:"known_sensors_only"`
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
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

// Validate checks c after Defaults.
func (c Config) Validate() error {
	var errs []error
	if c.MaxFutureSkew < 0 {
		errs = append(errs, ingest.Errorf("max_future_skew", "must be >= 0"))
	}
	switch c.OutOfRange {
	case PolicyReject, PolicyFlag, "":
	default:
		errs = append(errs, ingest.Errorf("out_of_range", "must be reject or flag, not %q", c.OutOfRange))
	}
	for i, s := range c.Allow {
		if s == "" {
			errs = append(errs, ingest.Errorf(fmt.Sprintf("allow[%d]", i), "empty sensor id"))
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
		return ingest.Errorf("min", "must be <= max")
	}
	if (r.Min != nil && math.IsNaN(*r.Min)) || (r.Max != nil && math.IsNaN(*r.Max)) {
		return ingest.Errorf("", "bounds must be numbers")
	}
	return nil
}

// SensorSpec is what validation needs to know of a configured sensor.
type SensorSpec struct {
	// Ranges maps metric names to their physical range.
	Ranges map[string]Range
}

// Options are the run-time inputs of a Validator.
type Options struct {
	// Logger gets rate-limited rejection messages; nil discards.
	Logger *slog.Logger
	// Clock is the gateway clock; nil makes one with default options.
	// Share it with the sources (as their Now) so that arrival stamps can be
	// corrected after a jump.
	Clock *clock.Clock
	// Tick drives Clock.Refresh in Run; nil means a 1 s ticker.
	Tick <-chan time.Time
}

// Stats is a snapshot of a Validator's counters.
type Stats struct {
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

// sensorRules is what Check needs of one sensor: looked up once per
// reading, with the few metric ranges scanned linearly.
type sensorRules struct {
	allowed bool
	ranges  []metricRange
}

type metricRange struct {
	metric string
	r      Range
}

// Validator is the door-validation stage between the sources and the rules.
type Validator struct {
	cfg       Config
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
	logLimit                                  rateLimit
}

// New builds a Validator. sensors is the sensors section (id -> spec); it
// gives the ranges and, with KnownSensorsOnly, the allowlist.
func New(cfg Config, sensors map[string]SensorSpec, opts Options) (*Validator, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validate: config: %w", err)
	}
	v := &Validator{cfg: cfg, log: opts.Logger, clock: opts.Clock, tick: opts.Tick,
		sensors: map[string]*sensorRules{}, flagRange: cfg.OutOfRange == PolicyFlag,
		skew: int64(cfg.MaxFutureSkew), minTime: cfg.MinTime.UnixNano()}
	if v.log == nil {
		v.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if v.clock == nil {
		v.clock = clock.New(clock.Options{MinTime: cfg.MinTime})
	}
	var errs []error
	ids := make([]string, 0, len(sensors))
	for id := range sensors {
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
		metrics := make([]string, 0, len(sensors[id].Ranges))
		for m := range sensors[id].Ranges {
			metrics = append(metrics, m)
		}
		sort.Strings(metrics)
		for _, m := range metrics {
			r := sensors[id].Ranges[m]
			if err := r.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("validate: sensor %q metric %q: %w", id, m, err))
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

// Clock returns the clock the Validator uses.
func (v *Validator) Clock() *clock.Clock { return v.clock }

// Check validates r in place. It returns ok=false and the reason when r must
// be dropped; otherwise it may have set quality flags, replaced an
// untrusted event time with the arrival time (keeping the payload's in
// OrigTime), or corrected an arrival stamp taken before a clock jump.
//
// The order of the checks: allowlist, finiteness, range, then time.
func (v *Validator) Check(r *ingest.Reading) (ok bool, reason string) {
	v.checked.Add(1)
	sr := v.sensors[r.Sensor]
	if v.allowList && (sr == nil || !sr.allowed) {
		return v.reject(r, idxUnknownSensor)
	}
	if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) {
		return v.reject(r, idxNotFinite)
	}
	if sr != nil {
		for i := range sr.ranges {
			if sr.ranges[i].metric != r.Metric {
				continue
			}
			if !sr.ranges[i].r.Contains(r.Value) {
				if !v.flagRange {
					return v.reject(r, idxOutOfRange)
				}
				r.Quality |= ingest.QualityOutOfRange
				v.flagged.Add(1)
			}
			break
		}
	}
	v.checkTime(r)
	v.passed.Add(1)
	return true, ""
}

func (v *Validator) checkTime(r *ingest.Reading) {
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

func (v *Validator) reject(r *ingest.Reading, i int) (bool, string) {
	v.rejected[i].Add(1)
	reason := reasons[i]
	if v.logLimit.allow() {
		v.log.Warn("validate: reading rejected", "reason", reason, "sensor", r.Sensor, "metric", r.Metric,
			"value", r.Value, "suppressed", v.logLimit.takeSuppressed())
	}
	return false, reason
}

// Stats returns a snapshot of the counters.
func (v *Validator) Stats() Stats {
	s := Stats{
		Checked: v.checked.Load(), Passed: v.passed.Load(), Rejected: make(map[string]uint64, len(reasons)),
		FutureTime: v.future.Load(), StaleTime: v.stale.Load(), ClockUnsynced: v.unsynced.Load(),
		OutOfRange: v.flagged.Load(), Corrected: v.correct.Load(),
		Synced: v.clock.Synced(), Jumps: v.clock.JumpCount(),
	}
	for i, r := range reasons {
		s.Rejected[r] = v.rejected[i].Load()
	}
	return s
}

// Run checks every reading from in and passes the good ones to out, until
// in is closed or ctx is cancelled; it then closes out and returns nil. It
// refreshes the clock on every tick and logs clock jumps and the first sync.
func (v *Validator) Run(ctx context.Context, in <-chan ingest.Reading, out chan<- ingest.Reading) error {
	defer close(out)
	w := v.newWatcher()
	defer w.stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.tick:
			w.refresh()
		case r, ok := <-in:
			if !ok {
				return nil
			}
			if ok, _ := v.Check(&r); !ok {
				continue
			}
			select {
			case out <- r:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// Watch keeps the clock current (a Refresh every tick) and logs its jumps
// and changes of synchronisation, until ctx is done; it returns nil then.
// It is the clock half of Run, for callers that call Check inline (in the
// goroutine that consumes the readings) instead of running a stage: a
// goroutine hop per reading costs far more than the check.
func (v *Validator) Watch(ctx context.Context) error {
	w := v.newWatcher()
	defer w.stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.tick:
			w.refresh()
		}
	}
}

type watcher struct {
	v         *Validator
	tick      <-chan time.Time
	stop      func()
	wasSynced bool
}

func (v *Validator) newWatcher() *watcher {
	w := &watcher{v: v, tick: v.tick, stop: func() {}, wasSynced: v.clock.Synced()}
	if w.tick == nil {
		t := time.NewTicker(time.Second)
		w.tick, w.stop = t.C, t.Stop
	}
	if !w.wasSynced {
		v.log.Warn("validate: the gateway clock is not synchronised; readings are flagged clock_unsynced until it is",
			"now", v.clock.Now().UTC())
	}
	return w
}

func (w *watcher) refresh() {
	v := w.v
	if j, jumped := v.clock.Refresh(); jumped {
		v.log.Warn("validate: clock jumped", "by", time.Duration(j.Offset), "was_unsynced", j.Unsynced)
	}
	if s := v.clock.Synced(); s != w.wasSynced {
		w.wasSynced = s
		v.log.Info("validate: clock synchronisation changed", "synced", s, "now", v.clock.Now().UTC())
	}
}

// rateLimit lets one log line through per 10 s (monotonic) and counts the
// rest.
type rateLimit struct {
	mu         sync.Mutex
	next       time.Time
	suppressed uint64
}

func (r *rateLimit) allow() bool {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Before(r.next) {
		r.suppressed++
		return false
	}
	r.next = now.Add(10 * time.Second)
	return true
}

func (r *rateLimit) takeSuppressed() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.suppressed
	r.suppressed = 0
	return n
}
