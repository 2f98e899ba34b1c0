package rules

import (
	"errors"
	"fmt"
	"math"
	"path"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/rules/window"
)

// Config is the `rules:` section of the gateway configuration.
type Config struct {
	Alerts  []AlertRule    `yaml:"alerts"`
	Stages  []StageConfig  `yaml:"stages"`
	Windows []WindowConfig `yaml:"windows"`

	// MaxRoutes bounds the distinct (sensor, metric) pairs the engine
	// keeps state for (default 100000); readings that would need more are
	// dropped and counted (Stats.Overflow). 0 means the default, also
	// when Defaults was not called.
	MaxRoutes int `yaml:"max_routes"`
	// KeyTTL is how long (wall clock) the state of a sensor/metric that
	// gets no readings is kept once its windows are closed and its alerts
	// clear (default 10m; 0 means the default). Its deadband, rate and
	// dedup memory goes too.
	KeyTTL time.Duration `yaml:"key_ttl"`
}

// Defaults of Config.
const (
	DefaultMaxRoutes = 100_000
	DefaultKeyTTL    = 10 * time.Minute
)

// Limits of Config, checked by Validate. Every reading is matched against
// every alert, stage and window rule, and each route holds state for each
// window rule it matches (about 1 KB a route for the default windows), so
// the counts multiply: a million window rules took 29 s and 5 GB to load.
// A thousand of each is far beyond a real gateway and still loads in a
// blink; a million routes is about 1 GB, most of a small board.
const (
	MaxRules     = 1000
	MaxMaxRoutes = 1_000_000
)

// AlertRule is a threshold alert with hysteresis:
//
//	{id: hot, sensor: "gh-*", metric: temperature, above: 30, clear_below: 29, severity: critical}
//
// A high alarm (Above) fires when the value rises above Above and clears
// when it falls below ClearBelow (default: Above). A low alarm (Below) fires
// when the value falls below Below and clears when it rises above ClearAbove
// (default: Below). Exactly one of Above and Below is set.
type AlertRule struct {
	ID     string `yaml:"id"`
	Sensor string `yaml:"sensor"` // glob (path.Match), default "*"
	Metric string `yaml:"metric"` // glob (path.Match), default "*"

	Above      *float64 `yaml:"above"`
	ClearBelow *float64 `yaml:"clear_below"`
	Below      *float64 `yaml:"below"`
	ClearAbove *float64 `yaml:"clear_above"`

	// Hold is how long (event time) the condition must hold before the
	// alert fires; 0 fires on the first reading that meets it.
	Hold time.Duration `yaml:"hold"`
	// Renotify re-sends a firing alert (same ID, higher Seq) when it still
	// holds this long after the previous notification; 0 never re-sends.
	Renotify time.Duration `yaml:"renotify"`
	Severity string        `yaml:"severity"` // default "warning"
	// Message overrides the generated human-readable line.
	Message string `yaml:"message"`
}

// Stage types.
const (
	StageFilter    = "filter"
	StageRange     = "range"
	StageCalibrate = "calibrate"
	StageConvert   = "convert"
	StageDeadband  = "deadband"
	StageRate      = "rate"
	StageDerive    = "derive"
	StageRename    = "rename"
	StageTag       = "tag"
	StageDedup     = "dedup"
)

// StageConfig is one per-reading stage. Stages run in the order declared,
// each on the readings whose sensor and metric match its globs (after the
// renames of earlier stages). Which fields apply depends on Type:
//
//	filter:    expr (boolean; the reading is kept when true)
//	range:     min, max, action (reject | clamp | flag; default reject)
//	calibrate: scale, offset (value*scale + offset) or poly ([c0, c1, c2...]: c0 + c1*v + c2*v^2 ...)
//	convert:   from (default: the reading's unit), to
//	deadband:  delta (pass when |v - last passed| > delta), max_silence (or when this long passed)
//	rate:      output (default "{metric}_rate"), unit, per (default 1s): emits a new reading
//	           with (v - v_prev) / (t - t_prev) * per; the original goes on
//	derive:    inputs (metrics of one sensor), expr (number), output, unit, max_age (default 1m):
//	           when an input arrives and the latest values of all inputs lie within max_age,
//	           emits a new reading output = expr; the original goes on
//	rename:    to_sensor, to_metric
//
// Names in output, to_sensor and to_metric may use the placeholders
// {sensor} and {metric}. New readings (rate, derive) carry
// ingest.QualityDerived and continue with the stages after the one that
// made them.
//
//	tag:       tags (static metadata for summaries and alerts, and window group_by)
//	dedup:     size (how many recent (time, value) pairs to remember; default 1)
type StageConfig struct {
	Type   string `yaml:"type"`
	Sensor string `yaml:"sensor"` // glob, default "*"
	Metric string `yaml:"metric"` // glob, default "*"

	Expr string `yaml:"expr"`

	Min    *float64 `yaml:"min"`
	Max    *float64 `yaml:"max"`
	Action string   `yaml:"action"`

	Scale  *float64  `yaml:"scale"`
	Offset float64   `yaml:"offset"`
	Poly   []float64 `yaml:"poly"`

	From string `yaml:"from"`
	To   string `yaml:"to"`

	Delta      float64       `yaml:"delta"`
	MaxSilence time.Duration `yaml:"max_silence"`

	Output string        `yaml:"output"`
	Unit   string        `yaml:"unit"`
	Per    time.Duration `yaml:"per"`
	Inputs []string      `yaml:"inputs"`
	MaxAge time.Duration `yaml:"max_age"`

	ToSensor string `yaml:"to_sensor"`
	ToMetric string `yaml:"to_metric"`

	Tags map[string]string `yaml:"tags"`

	Size int `yaml:"size"`
}

// Window types, time domains and late policies (package window owns
// them, and the aggregate names; repeated here for configs built in Go).
const (
	Tumbling = window.Tumbling
	Hopping  = window.Hopping
	Session  = window.Session

	EventTime      = window.EventTime
	ProcessingTime = window.ProcessingTime

	LateDrop   = window.LateDrop
	LateRevise = window.LateRevise
)

// WindowConfig declares keyed windows: see window.Config.
type WindowConfig = window.Config

// Defaults fills the zero fields of the config and of every rule, stage and
// window with their defaults (max_routes 100000, key_ttl 10m, globs "*", severity "warning", window type tumbling in event time
// with the drop late policy, the window name from its size or gap, ...).
func (c *Config) Defaults() {
	if c.MaxRoutes == 0 {
		c.MaxRoutes = DefaultMaxRoutes
	}
	if c.KeyTTL == 0 {
		c.KeyTTL = DefaultKeyTTL
	}
	for i := range c.Alerts {
		a := &c.Alerts[i]
		if a.Sensor == "" {
			a.Sensor = "*"
		}
		if a.Metric == "" {
			a.Metric = "*"
		}
		if a.Severity == "" {
			a.Severity = "warning"
		}
		if a.Above != nil && a.ClearBelow == nil {
			v := *a.Above
			a.ClearBelow = &v
		}
		if a.Below != nil && a.ClearAbove == nil {
			v := *a.Below
			a.ClearAbove = &v
		}
	}
	for i := range c.Stages {
		s := &c.Stages[i]
		if s.Sensor == "" {
			s.Sensor = "*"
		}
		if s.Metric == "" {
			s.Metric = "*"
		}
		switch s.Type {
		case StageRange:
			if s.Action == "" {
				s.Action = "reject"
			}
		case StageRate:
			if s.Per == 0 {
				s.Per = time.Second
			}
			if s.Output == "" {
				s.Output = "{metric}_rate"
			}
		case StageDerive:
			if s.MaxAge == 0 {
				s.MaxAge = time.Minute
			}
		case StageDedup:
			if s.Size == 0 {
				s.Size = 1
			}
		}
	}
	for i := range c.Windows {
		w := &c.Windows[i]
		if w.Sensor == "" {
			w.Sensor = "*"
		}
		if w.Metric == "" {
			w.Metric = "*"
		}
		if w.Type == "" {
			w.Type = Tumbling
		}
		if w.Time == "" {
			w.Time = EventTime
		}
		if w.Late == "" {
			w.Late = LateDrop
		}
		if w.Type == Hopping && w.Slide == 0 {
			w.Slide = w.Size
		}
		if w.Name == "" {
			switch {
			case w.Type == Session && w.Gap > 0:
				w.Name = "session-" + w.Gap.String()
			case w.Size > 0:
				w.Name = w.Size.String()
			}
		}
		if w.Late == LateRevise && w.Retention == 0 {
			w.Retention = 10 * w.Size
		}
		if w.Has(window.AggQuantiles) {
			if len(w.Quantiles) == 0 {
				w.Quantiles = window.DefaultQuantiles()
			}
			if w.SketchAccuracy == 0 {
				w.SketchAccuracy = 0.01
			}
		}
	}
}

func checkGlob(p, path string) error {
	if p == "" {
		return ingest.FieldErrorf(path, "must not be empty")
	}
	if _, err := pathMatch(p, ""); err != nil {
		return ingest.FieldErrorf(path, "bad pattern %q: %w", p, err)
	}
	return nil
}

func pathMatch(pattern, name string) (bool, error) { return path.Match(pattern, name) }

func gcd[T ~int64](a, b T) T {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// Validate reports every problem of the (defaulted) config as
// ingest.FieldError values with paths such as "windows[1].size", joined.
func (c Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if c.MaxRoutes < 0 || c.MaxRoutes > MaxMaxRoutes {
		add(ingest.FieldErrorf("max_routes", "must be between 1 and %d, got %d", MaxMaxRoutes, c.MaxRoutes))
	}
	tooMany := false
	for _, k := range []struct {
		key string
		n   int
	}{{"alerts", len(c.Alerts)}, {"stages", len(c.Stages)}, {"windows", len(c.Windows)}} {
		if k.n > MaxRules {
			add(ingest.FieldErrorf(k.key, "at most %d rules, got %d", MaxRules, k.n))
			tooMany = true
		}
	}
	if tooMany {
		// Checking each of a million rules costs what loading them does,
		// and the one error says what to fix.
		return errors.Join(errs...)
	}
	if c.KeyTTL < 0 {
		add(ingest.FieldErrorf("key_ttl", "must be > 0"))
	}
	ids := map[string]int{}
	for i, a := range c.Alerts {
		p := fmt.Sprintf("alerts[%d]", i)
		if a.ID == "" {
			add(ingest.FieldErrorf(p+".id", "must not be empty"))
		} else if j, dup := ids[a.ID]; dup {
			add(ingest.FieldErrorf(p+".id", "duplicate id %q (also alerts[%d])", a.ID, j))
		} else {
			ids[a.ID] = i
		}
		add(checkGlob(a.Sensor, p+".sensor"))
		add(checkGlob(a.Metric, p+".metric"))
		switch {
		case a.Above == nil && a.Below == nil:
			add(ingest.FieldErrorf(p, "one of above and below must be set"))
		case a.Above != nil && a.Below != nil:
			add(ingest.FieldErrorf(p+".below", "only one of above and below may be set (use two rules)"))
		case a.Above != nil:
			if a.ClearAbove != nil {
				add(ingest.FieldErrorf(p+".clear_above", "only applies to a below rule"))
			}
			if !finite(*a.Above) {
				add(ingest.FieldErrorf(p+".above", "must be a finite number"))
			}
			if a.ClearBelow != nil && !(*a.ClearBelow <= *a.Above) {
				add(ingest.FieldErrorf(p+".clear_below", "must be <= above (%g)", *a.Above))
			}
		case a.Below != nil:
			if a.ClearBelow != nil {
				add(ingest.FieldErrorf(p+".clear_below", "only applies to an above rule"))
			}
			if !finite(*a.Below) {
				add(ingest.FieldErrorf(p+".below", "must be a finite number"))
			}
			if a.ClearAbove != nil && !(*a.ClearAbove >= *a.Below) {
				add(ingest.FieldErrorf(p+".clear_above", "must be >= below (%g)", *a.Below))
			}
		}
		if a.Hold < 0 {
			add(ingest.FieldErrorf(p+".hold", "must be >= 0"))
		}
		if a.Renotify < 0 {
			add(ingest.FieldErrorf(p+".renotify", "must be >= 0"))
		}
	}
	for i := range c.Stages {
		add(validateStage(&c.Stages[i], fmt.Sprintf("stages[%d]", i)))
	}
	names := map[string]int{}
	for i, w := range c.Windows {
		p := fmt.Sprintf("windows[%d]", i)
		if w.Name == "" {
			add(ingest.FieldErrorf(p+".name", "must not be empty"))
		} else if j, dup := names[w.Name]; dup {
			add(ingest.FieldErrorf(p+".name", "duplicate name %q (also windows[%d])", w.Name, j))
		} else {
			names[w.Name] = i
		}
		add(checkGlob(w.Sensor, p+".sensor"))
		add(checkGlob(w.Metric, p+".metric"))
		add(ingest.PrefixErrors(p, w.Validate()))
	}
	return errors.Join(errs...)
}
