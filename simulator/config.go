package simulator

import (
	"errors"
	"math"
	"sort"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
)

// Signal models.
const (
	ModelRandomWalk = "random_walk"
	ModelSine       = "sine"
	ModelStep       = "step"
	ModelSawtooth   = "sawtooth"
	ModelConstant   = "constant"
)

// Defaults filled in by [SensorConfig.Defaults] and [Signal.Defaults].
const (
	DefaultInterval    = time.Second
	DefaultSinePeriod  = 24 * time.Hour
	DefaultStepPeriod  = 10 * time.Minute
	DefaultSawPeriod   = 10 * time.Minute
	DefaultDropoutLen  = 3
	DefaultStuckLen    = 10
	DefaultOutOfOrderK = 5 // out_of_order_lag defaults to this many intervals
)

// Signal is one metric of a simulated sensor: a model plus noise, clamped to
// [Min, Max] when Max > Min.
//
//   - random_walk starts at Base and moves by a normal step of standard
//     deviation Step each sample (reflected into [Min, Max] when set).
//   - sine is Base + Amplitude·sin(2π·t/Period) (Period defaults to 24h: a
//     diurnal cycle).
//   - step is Base, then Base+Amplitude, alternating every Period.
//   - sawtooth rises linearly from Base to Base+Amplitude over each Period.
//   - constant is Base.
//
// t is the nominal time of the sample (index × interval), not the wall
// clock, so the values depend only on the seed and the sample index. Noise
// is the standard deviation of normal noise added to every sample.
type Signal struct {
	Model     string        `yaml:"model"`
	Base      float64       `yaml:"base"`
	Amplitude float64       `yaml:"amplitude"`
	Noise     float64       `yaml:"noise"`
	Step      float64       `yaml:"step"`
	Min       float64       `yaml:"min"`
	Max       float64       `yaml:"max"`
	Period    time.Duration `yaml:"period"`
	Unit      string        `yaml:"unit"`
}

// Defaults fills zero fields: Model "constant" when empty, and Period by
// model (24h for sine, 10m for step and sawtooth).
func (g *Signal) Defaults() {
	if g.Model == "" {
		g.Model = ModelConstant
	}
	if g.Period == 0 {
		switch g.Model {
		case ModelSine:
			g.Period = DefaultSinePeriod
		case ModelStep:
			g.Period = DefaultStepPeriod
		case ModelSawtooth:
			g.Period = DefaultSawPeriod
		}
	}
}

// Validate checks the signal; paths are relative to the signal.
func (g Signal) Validate() error {
	var errs []error
	switch g.Model {
	case ModelRandomWalk, ModelSine, ModelStep, ModelSawtooth, ModelConstant:
	default:
		errs = append(errs, ingest.FieldErrorf("model", "unknown model %q (want random_walk, sine, step, sawtooth or constant)", g.Model))
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"base", g.Base}, {"amplitude", g.Amplitude}, {"noise", g.Noise}, {"step", g.Step}, {"min", g.Min}, {"max", g.Max}} {
		if !ingest.Finite(f.v) {
			errs = append(errs, ingest.FieldErrorf(f.name, "must be a finite number"))
		}
	}
	if g.Noise < 0 {
		errs = append(errs, ingest.FieldErrorf("noise", "must be >= 0"))
	}
	if g.Step < 0 {
		errs = append(errs, ingest.FieldErrorf("step", "must be >= 0"))
	}
	if g.Max < g.Min {
		errs = append(errs, ingest.FieldErrorf("max", "must be >= min (%v)", g.Min))
	}
	switch g.Model {
	case ModelSine, ModelStep, ModelSawtooth:
		if g.Period <= 0 {
			errs = append(errs, ingest.FieldErrorf("period", "must be > 0 for model %s", g.Model))
		}
	default:
		if g.Period < 0 {
			errs = append(errs, ingest.FieldErrorf("period", "must be >= 0"))
		}
	}
	return errors.Join(errs...)
}

// Faults configures fault injection for one simulated sensor. Every
// probability is per sample (per reading for spikes, stuck values and
// malformed values) and lies in [0, 1]; zero disables the fault. Faults draw
// from their own seeded random stream, so turning them on does not change the
// clean values underneath.
type Faults struct {
	// SpikeProb is the probability that a reading gets ±SpikeSize added
	// (sign random). SpikeSize defaults to 10× the signal's amplitude, or
	// 100 when that is zero.
	SpikeProb float64 `yaml:"spike_prob"`
	SpikeSize float64 `yaml:"spike_size"`
	// DropoutProb is the probability that a dropout starts at a sample: the
	// sensor then sends nothing for DropoutLen samples (default 3).
	DropoutProb float64 `yaml:"dropout_prob"`
	DropoutLen  int     `yaml:"dropout_len"`
	// StuckProb is the probability that a metric gets stuck: it repeats its
	// last value for StuckLen samples (default 10).
	StuckProb float64 `yaml:"stuck_prob"`
	StuckLen  int     `yaml:"stuck_len"`
	// Drift is added to every metric, in units per hour of nominal time
	// (sample index × interval): a slowly miscalibrating sensor.
	Drift float64 `yaml:"drift"`
	// OutOfOrderProb is the probability that a sample's event time lies in
	// the past by up to OutOfOrderLag (default 5 intervals), so that it
	// arrives after readings with later event times.
	OutOfOrderProb float64       `yaml:"out_of_order_prob"`
	OutOfOrderLag  time.Duration `yaml:"out_of_order_lag"`
	// DuplicateProb is the probability that a sample is sent twice with the
	// same event time.
	DuplicateProb float64 `yaml:"duplicate_prob"`
	// MalformedProb is the probability that a reading is malformed: in
	// process its value is NaN or ±Inf; the load generator sends a payload
	// that does not decode.
	MalformedProb float64 `yaml:"malformed_prob"`
}

// Defaults fills DropoutLen, StuckLen and OutOfOrderLag (from interval)
// when they are zero.
func (f *Faults) Defaults(interval time.Duration) {
	if f.DropoutLen == 0 {
		f.DropoutLen = DefaultDropoutLen
	}
	if f.StuckLen == 0 {
		f.StuckLen = DefaultStuckLen
	}
	if f.OutOfOrderLag == 0 && interval > 0 {
		f.OutOfOrderLag = DefaultOutOfOrderK * interval
	}
}

// Validate checks the faults; paths are relative to the faults block.
func (f Faults) Validate() error {
	var errs []error
	for _, p := range []struct {
		name string
		v    float64
	}{{"spike_prob", f.SpikeProb}, {"dropout_prob", f.DropoutProb}, {"stuck_prob", f.StuckProb},
		{"out_of_order_prob", f.OutOfOrderProb}, {"duplicate_prob", f.DuplicateProb}, {"malformed_prob", f.MalformedProb}} {
		if !(p.v >= 0 && p.v <= 1) {
			errs = append(errs, ingest.FieldErrorf(p.name, "must be between 0 and 1"))
		}
	}
	if !ingest.Finite(f.SpikeSize) || f.SpikeSize < 0 {
		errs = append(errs, ingest.FieldErrorf("spike_size", "must be a finite number >= 0"))
	}
	if !ingest.Finite(f.Drift) {
		errs = append(errs, ingest.FieldErrorf("drift", "must be a finite number"))
	}
	if f.DropoutLen < 0 {
		errs = append(errs, ingest.FieldErrorf("dropout_len", "must be >= 0"))
	}
	if f.StuckLen < 0 {
		errs = append(errs, ingest.FieldErrorf("stuck_len", "must be >= 0"))
	}
	if f.OutOfOrderLag < 0 {
		errs = append(errs, ingest.FieldErrorf("out_of_order_lag", "must be >= 0"))
	}
	return errors.Join(errs...)
}

func (f Faults) any() bool {
	return f.SpikeProb > 0 || f.DropoutProb > 0 || f.StuckProb > 0 || f.Drift != 0 ||
		f.OutOfOrderProb > 0 || f.DuplicateProb > 0 || f.MalformedProb > 0
}

// SensorConfig is the `sim:` block of a sensor entry in the `sensors:` list.
type SensorConfig struct {
	// Interval between samples (default 1s).
	Interval time.Duration `yaml:"interval"`
	// Jitter: each sample is taken at its nominal time ± a uniform random
	// offset of at most Jitter (must be < Interval; default 0). Jitter does
	// not accumulate.
	Jitter time.Duration `yaml:"jitter"`
	// Metrics by name: every sample sends one reading per metric.
	Metrics map[string]Signal `yaml:"metrics"`
	Faults  Faults            `yaml:"faults"`
	// Durable (default false) makes each sample's readings carry an
	// ingest.Receipt, so they are committed within the checkpoint's short
	// delay rather than the state interval (a simulated chip, tested
	// like a real one).
	Durable bool `yaml:"durable"`
}

// Defaults fills zero fields in place: Interval 1s, each signal's defaults
// and the fault defaults.
func (c *SensorConfig) Defaults() {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	for name, g := range c.Metrics {
		g.Defaults()
		c.Metrics[name] = g
	}
	c.Faults.Defaults(c.Interval)
}

// Validate checks the config; paths are relative to the `sim` block
// ("interval", "metrics.temperature.period", "faults.spike_prob").
func (c SensorConfig) Validate() error {
	var errs []error
	if c.Interval <= 0 {
		errs = append(errs, ingest.FieldErrorf("interval", "must be > 0"))
	}
	if c.Jitter < 0 {
		errs = append(errs, ingest.FieldErrorf("jitter", "must be >= 0"))
	} else if c.Interval > 0 && c.Jitter >= c.Interval {
		errs = append(errs, ingest.FieldErrorf("jitter", "must be < interval (%s)", c.Interval))
	}
	if len(c.Metrics) == 0 {
		errs = append(errs, ingest.FieldErrorf("metrics", "must name at least one metric"))
	}
	names := make([]string, 0, len(c.Metrics))
	for name := range c.Metrics {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if name == "" {
			errs = append(errs, ingest.FieldErrorf("metrics", "metric name must not be empty"))
			continue
		}
		if err := c.Metrics[name].Validate(); err != nil {
			errs = append(errs, ingest.PrefixErrors("metrics."+name, err))
		}
	}
	if err := c.Faults.Validate(); err != nil {
		errs = append(errs, ingest.PrefixErrors("faults", err))
	}
	return errors.Join(errs...)
}

// spikeSize is the spike magnitude for a signal.
func (f Faults) spikeSize(g Signal) float64 {
	if f.SpikeSize > 0 {
		return f.SpikeSize
	}
	if a := math.Abs(g.Amplitude); a > 0 {
		return 10 * a
	}
	return 100
}
