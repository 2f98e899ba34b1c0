package window

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
)

// Window types, time domains and late policies.
const (
	Tumbling = "tumbling"
	Hopping  = "hopping"
	Session  = "session"

	EventTime      = "event"
	ProcessingTime = "processing"

	LateDrop   = "drop"
	LateRevise = "revise"
)

// Aggregate names for Config.Aggregates.
const (
	AggCount     = "count"
	AggSum       = "sum"
	AggMin       = "min"
	AggMax       = "max"
	AggMean      = "mean"
	AggStddev    = "stddev"
	AggFirst     = "first"
	AggLast      = "last"
	AggTWA       = "twa"
	AggDelta     = "delta"
	AggRate      = "rate"
	AggQuantiles = "quantiles"
)

// AllAggs returns every aggregate name, in a fixed order.
func AllAggs() []string {
	return []string{AggCount, AggSum, AggMin, AggMax, AggMean, AggStddev, AggFirst, AggLast, AggTWA, AggDelta, AggRate, AggQuantiles}
}

// Config declares keyed windows (a `rules.windows[]` entry):
//
//	{name: 10s, sensor: "*", metric: "*", type: tumbling, size: 10s, lateness: 2s}
type Config struct {
	Name   string `yaml:"name"`   // default: the size ("10s"); unique
	Sensor string `yaml:"sensor"` // glob, default "*"
	Metric string `yaml:"metric"` // glob, default "*"
	// GroupBy keys the window by a tag (from the sensor's metadata and tag stages)
	// instead of the sensor: all sensors with the same tag value are
	// aggregated together, Summary.Group is "tag=value". Sensors without
	// the tag are not windowed by this rule.
	GroupBy string `yaml:"group_by"`
	Type    string `yaml:"type"` // tumbling (default) | hopping | session
	// Size is the window length (tumbling, hopping); Slide the hop
	// (hopping, 0 < slide <= size); Gap closes a session after this much
	// silence (session).
	Size  time.Duration `yaml:"size"`
	Slide time.Duration `yaml:"slide"`
	Gap   time.Duration `yaml:"gap"`
	// Lateness is how far behind the key's newest event time a reading may
	// be and still count.
	Lateness time.Duration `yaml:"lateness"`
	// Time is the time domain: event (default; the reading's Time) or
	// processing (the gateway clock when the reading is processed).
	Time string `yaml:"time"`
	// Late is the policy for readings of a window already emitted: drop
	// (default; counted) or revise (fold them in and emit the summary again
	// with a higher revision, while the window is within Retention).
	Late      string        `yaml:"late"`
	Retention time.Duration `yaml:"retention"` // revise: default 10 x size (session: not supported)
	// Aggregates to compute besides the basic ones (count, sum, min, max,
	// mean, stddev, first, last are always computed): twa, delta, rate
	// (these keep the window's samples), quantiles (a DDSketch).
	Aggregates []string `yaml:"aggregates"`
	// Quantiles are reported when the quantiles aggregate is on; default
	// 0.5, 0.9, 0.95, 0.99.
	Quantiles []float64 `yaml:"quantiles"`
	// SketchAccuracy is the DDSketch relative accuracy; default 0.01.
	SketchAccuracy float64 `yaml:"sketch_accuracy"`
}

// MinSize is the smallest window size, hopping slide and session gap.
// Each window is a bucket per key and a summary per close: a 1 ns window
// turns every reading into its own summary (and an outbox record), and
// below a tenth of a second the checkpoint and commit cadence (1 s by
// default) cannot keep up with the closes anyway.
const MinSize = 100 * time.Millisecond

// DefaultQuantiles returns the quantiles reported when a window asks for
// quantiles without listing them: 0.5, 0.9, 0.95, 0.99.
func DefaultQuantiles() []float64 { return []float64{0.5, 0.9, 0.95, 0.99} }

// Has reports whether the aggregate agg is asked for.
func (c *Config) Has(agg string) bool { return slices.Contains(c.Aggregates, agg) }

// Same reports whether windows of a and b can continue one another across a
// config reload: the same name and kind of window (type, size, slide, gap,
// time, late policy, retention, group_by, aggregates, quantiles, sketch
// accuracy); the sensor and metric globs and the lateness may differ.
func Same(a, b Config) bool {
	return a.Name == b.Name && a.Type == b.Type && a.Size == b.Size && a.Slide == b.Slide && a.Gap == b.Gap &&
		a.Time == b.Time && a.Late == b.Late && a.Retention == b.Retention && a.GroupBy == b.GroupBy &&
		slices.Equal(a.Aggregates, b.Aggregates) && slices.Equal(a.Quantiles, b.Quantiles) && a.SketchAccuracy == b.SketchAccuracy
}

// Validate reports the problems of one defaulted window rule as
// ingest.FieldError values with paths relative to the rule ("size"). The
// name and the globs are the rules' to check: names are unique among them.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	switch c.Type {
	case Tumbling, Hopping:
		if c.Size < MinSize {
			add(ingest.FieldErrorf("size", "must be at least %s, got %s", MinSize, c.Size))
		}
		if c.Gap != 0 {
			add(ingest.FieldErrorf("gap", "only applies to session windows"))
		}
		if c.Type == Hopping {
			if c.Slide < MinSize {
				add(ingest.FieldErrorf("slide", "must be at least %s, got %s", MinSize, c.Slide))
			} else if c.Size > 0 && c.Slide > c.Size {
				add(ingest.FieldErrorf("slide", "must be <= size (%s)", c.Size))
			} else if c.Size > 0 && c.Size/time.Duration(gcd(int64(c.Size), int64(c.Slide))) > 1000 {
				add(ingest.FieldErrorf("slide", "size/gcd(size, slide) must be <= 1000 (use a slide that divides the size)"))
			}
		} else if c.Slide != 0 {
			add(ingest.FieldErrorf("slide", "only applies to hopping windows"))
		}
	case Session:
		if c.Gap < MinSize {
			add(ingest.FieldErrorf("gap", "must be at least %s, got %s", MinSize, c.Gap))
		}
		if c.Size != 0 || c.Slide != 0 {
			add(ingest.FieldErrorf("size", "does not apply to session windows"))
		}
		if c.Late == LateRevise {
			add(ingest.FieldErrorf("late", "revise is not supported for session windows"))
		}
	default:
		add(ingest.FieldErrorf("type", "must be one of tumbling, hopping, session (got %q)", c.Type))
	}
	if c.Lateness < 0 {
		add(ingest.FieldErrorf("lateness", "must be >= 0"))
	}
	if c.Time != EventTime && c.Time != ProcessingTime {
		add(ingest.FieldErrorf("time", "must be event or processing (got %q)", c.Time))
	}
	switch c.Late {
	case LateDrop:
		if c.Retention != 0 {
			add(ingest.FieldErrorf("retention", "only applies with late: revise"))
		}
	case LateRevise:
		if c.Retention <= 0 && c.Type != Session {
			add(ingest.FieldErrorf("retention", "must be > 0"))
		}
	default:
		add(ingest.FieldErrorf("late", "must be drop or revise (got %q)", c.Late))
	}
	if strings.TrimSpace(c.GroupBy) != c.GroupBy || strings.ContainsAny(c.GroupBy, "=") {
		add(ingest.FieldErrorf("group_by", "bad tag name %q", c.GroupBy))
	}
	for j, a := range c.Aggregates {
		if !slices.Contains(AllAggs(), a) {
			add(ingest.FieldErrorf(fmt.Sprintf("aggregates[%d]", j), "unknown aggregate %q (one of %s)", a, strings.Join(AllAggs(), ", ")))
		}
	}
	if c.Has(AggQuantiles) {
		for j, q := range c.Quantiles {
			if !(q >= 0 && q <= 1) {
				add(ingest.FieldErrorf(fmt.Sprintf("quantiles[%d]", j), "must be in [0, 1]"))
			}
		}
		if !(c.SketchAccuracy > 0 && c.SketchAccuracy < 1) {
			add(ingest.FieldErrorf("sketch_accuracy", "must be in (0, 1)"))
		}
	} else {
		if len(c.Quantiles) != 0 {
			add(ingest.FieldErrorf("quantiles", "needs the quantiles aggregate"))
		}
		if c.SketchAccuracy != 0 {
			add(ingest.FieldErrorf("sketch_accuracy", "needs the quantiles aggregate"))
		}
	}
	return errors.Join(errs...)
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
