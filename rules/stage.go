package rules

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/rules/internal/exprc"
	"github.com/sensorgate/sensorgate/rules/internal/state"
	"github.com/sensorgate/sensorgate/rules/units"
)

// stage is a compiled StageConfig.
type stage struct {
	cfg      StageConfig
	idx      int
	kind     stageKind
	prog     *exprc.Program
	lo, hi   float64
	scale    float64
	offset   float64
	poly     []float64
	perNs    float64
	maxAge   int64
	silence  int64
	dedupLen int
}

type stageKind uint8

const (
	kFilter stageKind = iota
	kRange
	kCalibrate
	kConvert
	kDeadband
	kRate
	kDerive
	kRename
	kTag
	kDedup
)

var stageKinds = map[string]stageKind{
	StageFilter: kFilter, StageRange: kRange, StageCalibrate: kCalibrate, StageConvert: kConvert,
	StageDeadband: kDeadband, StageRate: kRate, StageDerive: kDerive, StageRename: kRename,
	StageTag: kTag, StageDedup: kDedup,
}

// step is a stage applied to one route, with that route's state.
type step struct {
	st           *stage
	sensor       string // names when the reading reaches this stage
	metric       string
	out          string // rate/derive: output metric; rename: new metric
	outS         string // rename: new sensor
	meta         map[string]string
	state.Memory // deadband, rate, dedup
	convFrom     string
	convA        float64
	convB        float64
	convErr      bool
	convSet      bool
	derive       *deriveState
	slot         int
}

// deriveState is what a derive stage knows of one sensor: the latest value
// of each input.
type deriveState struct {
	state.Inputs
	key  deriveKey
	refs int
	state.Flags
}

type deriveKey struct {
	stage  int
	sensor string
}

// stageFields lists, per type, the optional fields that apply (besides
// type, sensor and metric).
var stageFields = map[string][]string{
	StageFilter:    {"expr"},
	StageRange:     {"min", "max", "action"},
	StageCalibrate: {"scale", "offset", "poly", "unit"},
	StageConvert:   {"from", "to"},
	StageDeadband:  {"delta", "max_silence"},
	StageRate:      {"output", "unit", "per"},
	StageDerive:    {"inputs", "expr", "output", "unit", "max_age"},
	StageRename:    {"to_sensor", "to_metric"},
	StageTag:       {"tags"},
	StageDedup:     {"size"},
}

func setFields(s *StageConfig) []string {
	var f []string
	add := func(name string, set bool) {
		if set {
			f = append(f, name)
		}
	}
	add("expr", s.Expr != "")
	add("min", s.Min != nil)
	add("max", s.Max != nil)
	add("action", s.Action != "")
	add("scale", s.Scale != nil)
	add("offset", s.Offset != 0)
	add("poly", len(s.Poly) > 0)
	add("from", s.From != "")
	add("to", s.To != "")
	add("delta", s.Delta != 0)
	add("max_silence", s.MaxSilence != 0)
	add("output", s.Output != "")
	add("unit", s.Unit != "")
	add("per", s.Per != 0)
	add("inputs", len(s.Inputs) > 0)
	add("max_age", s.MaxAge != 0)
	add("to_sensor", s.ToSensor != "")
	add("to_metric", s.ToMetric != "")
	add("tags", len(s.Tags) > 0)
	add("size", s.Size != 0)
	return f
}

func validateStage(s *StageConfig, p string) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	allowed, known := stageFields[s.Type]
	if !known {
		types := make([]string, 0, len(stageFields))
		for t := range stageFields {
			types = append(types, t)
		}
		slices.Sort(types)
		return ingest.FieldErrorf(p+".type", "unknown stage type %q (one of %s)", s.Type, strings.Join(types, ", "))
	}
	add(checkGlob(s.Sensor, p+".sensor"))
	add(checkGlob(s.Metric, p+".metric"))
	for _, f := range setFields(s) {
		if !slices.Contains(allowed, f) {
			add(ingest.FieldErrorf(p+"."+f, "does not apply to a %s stage", s.Type))
		}
	}
	switch s.Type {
	case StageFilter:
		if s.Expr == "" {
			add(ingest.FieldErrorf(p+".expr", "must not be empty"))
		} else if _, err := exprc.Compile(s.Expr, nil, true); err != nil {
			add(ingest.FieldErrorf(p+".expr", "%w", err))
		}
	case StageRange:
		if s.Min == nil && s.Max == nil {
			add(ingest.FieldErrorf(p, "one of min and max must be set"))
		}
		if s.Min != nil && s.Max != nil && !(*s.Min <= *s.Max) {
			add(ingest.FieldErrorf(p+".max", "must be >= min"))
		}
		if s.Min != nil && math.IsNaN(*s.Min) || s.Max != nil && math.IsNaN(*s.Max) {
			add(ingest.FieldErrorf(p, "min and max must be numbers"))
		}
		switch s.Action {
		case "reject", "clamp", "flag":
		default:
			add(ingest.FieldErrorf(p+".action", "must be reject, clamp or flag (got %q)", s.Action))
		}
	case StageCalibrate:
		switch {
		case len(s.Poly) > 0 && (s.Scale != nil || s.Offset != 0):
			add(ingest.FieldErrorf(p+".poly", "use either poly or scale/offset"))
		case len(s.Poly) == 0 && s.Scale == nil && s.Offset == 0:
			add(ingest.FieldErrorf(p, "one of scale, offset and poly must be set"))
		}
		for i, c := range s.Poly {
			if !finite(c) {
				add(ingest.FieldErrorf(fmt.Sprintf("%s.poly[%d]", p, i), "must be a finite number"))
			}
		}
		if s.Scale != nil && !finite(*s.Scale) || !finite(s.Offset) {
			add(ingest.FieldErrorf(p, "scale and offset must be finite numbers"))
		}
	case StageConvert:
		toOK := units.Known(s.To)
		if !toOK {
			add(ingest.FieldErrorf(p+".to", "unknown unit %q (known: %s)", s.To, strings.Join(units.List(), "; ")))
		}
		if s.From != "" {
			if !units.Known(s.From) {
				add(ingest.FieldErrorf(p+".from", "unknown unit %q", s.From))
			} else if _, _, err := units.Conversion(s.From, s.To); err != nil && toOK {
				add(ingest.FieldErrorf(p+".from", "%w", err))
			}
		}
	case StageDeadband:
		if s.Delta < 0 || !finite(s.Delta) {
			add(ingest.FieldErrorf(p+".delta", "must be a number >= 0"))
		}
		if s.MaxSilence < 0 {
			add(ingest.FieldErrorf(p+".max_silence", "must be >= 0"))
		}
	case StageRate:
		if s.Per <= 0 {
			add(ingest.FieldErrorf(p+".per", "must be > 0"))
		}
		if s.Output == "" {
			add(ingest.FieldErrorf(p+".output", "must not be empty"))
		}
	case StageDerive:
		if len(s.Inputs) == 0 {
			add(ingest.FieldErrorf(p+".inputs", "must list the input metrics"))
		}
		for i, in := range s.Inputs {
			if in == "" || slices.Index(s.Inputs, in) != i {
				add(ingest.FieldErrorf(fmt.Sprintf("%s.inputs[%d]", p, i), "empty or duplicate input %q", in))
			}
		}
		if s.Output == "" {
			add(ingest.FieldErrorf(p+".output", "must not be empty"))
		}
		if s.MaxAge <= 0 {
			add(ingest.FieldErrorf(p+".max_age", "must be > 0"))
		}
		if s.Expr == "" {
			add(ingest.FieldErrorf(p+".expr", "must not be empty"))
		} else if _, err := exprc.Compile(s.Expr, s.Inputs, false); err != nil {
			add(ingest.FieldErrorf(p+".expr", "%w", err))
		}
	case StageRename:
		if s.ToSensor == "" && s.ToMetric == "" {
			add(ingest.FieldErrorf(p, "one of to_sensor and to_metric must be set"))
		}
	case StageTag:
		if len(s.Tags) == 0 {
			add(ingest.FieldErrorf(p+".tags", "must not be empty"))
		}
	case StageDedup:
		if s.Size < 1 || s.Size > 64 {
			add(ingest.FieldErrorf(p+".size", "must be in 1..64"))
		}
	}
	return errors.Join(errs...)
}

func compileStage(i int, c *StageConfig) (*stage, error) {
	st := &stage{cfg: *c, idx: i, scale: 1, kind: stageKinds[c.Type]}
	var err error
	switch c.Type {
	case StageFilter:
		st.prog, err = exprc.Compile(c.Expr, nil, true)
	case StageDerive:
		st.prog, err = exprc.Compile(c.Expr, c.Inputs, false)
		st.maxAge = int64(c.MaxAge)
	case StageRange:
		st.lo, st.hi = math.Inf(-1), math.Inf(1)
		if c.Min != nil {
			st.lo = *c.Min
		}
		if c.Max != nil {
			st.hi = *c.Max
		}
	case StageCalibrate:
		if c.Scale != nil {
			st.scale = *c.Scale
		}
		st.offset = c.Offset
		st.poly = slices.Clone(c.Poly)
	case StageRate:
		st.perNs = float64(c.Per)
	case StageDeadband:
		st.silence = int64(c.MaxSilence)
	case StageDedup:
		st.dedupLen = c.Size
	}
	if err != nil {
		return nil, fmt.Errorf("stages[%d]: %w", i, err)
	}
	return st, nil
}

// expand fills {sensor} and {metric} in a name template.
func expand(tmpl, sensor, metric string) string {
	if !strings.Contains(tmpl, "{") {
		return tmpl
	}
	return strings.NewReplacer("{sensor}", sensor, "{metric}", metric).Replace(tmpl)
}

// stageChain is the compiled stages and the state they keep across
// readings: each route's step state lives in its steps; what spans routes
// (derive inputs per sensor, the expression environment, the expression
// log limiter) and the stage counters live here. A derived reading goes on
// through the engine's routes (eng), which is the one thing the chain does
// not own.
type stageChain struct {
	stages     []*stage
	derives    map[deriveKey]*deriveState
	env        exprc.Env
	exprLogged map[int]bool             // expression failure logs: one per stage per tick
	routeCk    state.List[*route]       // checkpoints: routes whose deadband, rate or dedup state changed
	deriveCk   state.List[*deriveState] // and derive inputs
	log        *slog.Logger
	eng        *Engine

	filtered   atomic.Uint64
	derived    atomic.Uint64
	exprErrors atomic.Uint64
}

// newStageChain compiles the stages of cfg.
func newStageChain(cfg []StageConfig, eng *Engine, log *slog.Logger) (*stageChain, error) {
	c := &stageChain{derives: map[deriveKey]*deriveState{}, log: log, eng: eng}
	for i := range cfg {
		st, err := compileStage(i, &cfg[i])
		if err != nil {
			return nil, err
		}
		c.stages = append(c.stages, st)
	}
	return c, nil
}

// tick starts a new period of the expression log limiter.
func (c *stageChain) tick() { clear(c.exprLogged) }

// release drops a swept route's share of the derive state.
func (c *stageChain) release(steps []step) {
	for _, s := range steps {
		if s.derive != nil {
			if s.derive.refs--; s.derive.refs == 0 {
				delete(c.derives, s.derive.key)
				c.deriveCk.Drop(s.derive)
			}
		}
	}
}

// newStep prepares stage st for the route of sensor/metric; ok=false when
// the stage has nothing to do on it.
func (c *stageChain) newStep(st *stage, sensor, metric string, meta map[string]string) (step, bool) {
	s := step{st: st, sensor: sensor, metric: metric, meta: meta}
	sc := &st.cfg
	switch sc.Type {
	case StageTag:
		return s, false // applied to the route's metadata
	case StageRate:
		s.out = expand(sc.Output, sensor, metric)
	case StageDerive:
		s.slot = slices.Index(sc.Inputs, metric)
		if s.slot < 0 {
			return s, false
		}
		s.out = expand(sc.Output, sensor, metric)
		dk := deriveKey{st.idx, sensor}
		ds := c.derives[dk]
		if ds == nil {
			n := len(sc.Inputs)
			ds = &deriveState{Inputs: state.NewInputs(n), key: dk}
			c.derives[dk] = ds
		}
		ds.refs++
		s.derive = ds
	case StageRename:
		s.outS, s.out = sensor, metric
		if sc.ToSensor != "" {
			s.outS = expand(sc.ToSensor, sensor, metric)
		}
		if sc.ToMetric != "" {
			s.out = expand(sc.ToMetric, sensor, metric)
		}
	case StageDedup:
		s.Ring = make([]state.Seen, 0, st.dedupLen)
	}
	return s, true
}

// runStep applies one stage to r. keep=false: the reading goes no further.
func (c *stageChain) runStep(em *emitter, rt *route, s *step, r *ingest.Reading) (keep bool, err error) {
	st := s.st
	switch st.kind {
	case kFilter:
		c.env.R = *r
		c.env.Meta = s.meta
		ok, err := st.prog.Bool(&c.env)
		if err != nil {
			c.exprErrors.Add(1)
			c.exprError(st, err)
			ok = false
		}
		if !ok {
			c.filtered.Add(1)
		}
		return ok, nil
	case kRange:
		if r.Value >= st.lo && r.Value <= st.hi {
			return true, nil
		}
		switch st.cfg.Action {
		case "clamp":
			r.Value = min(max(r.Value, st.lo), st.hi)
			r.Quality |= ingest.QualityOutOfRange
		case "flag":
			r.Quality |= ingest.QualityOutOfRange
		default:
			c.eng.reject(rt)
			return false, nil
		}
		return true, nil
	case kCalibrate:
		if st.poly != nil {
			v, x := 0.0, r.Value
			for i := len(st.poly) - 1; i >= 0; i-- {
				v = v*x + st.poly[i]
			}
			r.Value = v
		} else {
			r.Value = r.Value*st.scale + st.offset
		}
		if !finite(r.Value) {
			c.eng.reject(rt)
			return false, nil
		}
		if st.cfg.Unit != "" {
			r.Unit = st.cfg.Unit
		}
		r.Quality |= ingest.QualityCalibrated
		return true, nil
	case kConvert:
		from := r.Unit
		if from == "" {
			from = st.cfg.From
		}
		if !s.convSet || from != s.convFrom {
			s.convFrom = strings.Clone(from)
			s.convSet = true
			a, b, err := units.Conversion(from, st.cfg.To)
			s.convA, s.convB, s.convErr = a, b, err != nil
			if err != nil {
				c.log.Warn("rules: cannot convert", "stage", st.idx, "sensor", r.Sensor, "metric", r.Metric, "err", err)
			}
		}
		if s.convErr {
			c.eng.reject(rt)
			return false, nil
		}
		if s.convA != 1 || s.convB != 0 {
			r.Value = r.Value*s.convA + s.convB
			r.Quality |= ingest.QualityCalibrated
		}
		r.Unit = st.cfg.To
		return true, nil
	case kDeadband:
		if s.HasLast && math.Abs(r.Value-s.LastV) <= st.cfg.Delta &&
			(st.silence == 0 || r.Time-s.LastT < st.silence) {
			c.filtered.Add(1)
			return false, nil
		}
		s.HasLast, s.LastV, s.LastT = true, r.Value, r.Time
		c.routeCk.Touch(rt)
		return true, nil
	case kDedup:
		for _, p := range s.Ring {
			if p.T == r.Time && p.V == r.Value {
				c.filtered.Add(1)
				return false, nil
			}
		}
		if len(s.Ring) < cap(s.Ring) {
			s.Ring = append(s.Ring, state.Seen{T: r.Time, V: r.Value})
		} else {
			s.Ring[s.RingPos] = state.Seen{T: r.Time, V: r.Value}
			s.RingPos = (s.RingPos + 1) % len(s.Ring)
		}
		c.routeCk.Touch(rt)
		return true, nil
	case kRename:
		r.Sensor, r.Metric = s.outS, s.out
		return true, nil
	case kRate:
		c.routeCk.Touch(rt)
		if s.HasLast && r.Time > s.LastT {
			rate := (r.Value - s.LastV) / float64(r.Time-s.LastT) * st.perNs
			s.LastV, s.LastT = r.Value, r.Time
			if err := c.emitDerived(em, st, r, s.out, st.cfg.Unit, rate, r.Quality); err != nil {
				return false, err
			}
			return true, nil
		}
		if !s.HasLast || r.Time > s.LastT {
			s.HasLast, s.LastV, s.LastT = true, r.Value, r.Time
		}
		return true, nil
	case kDerive:
		ds := s.derive
		ds.Vals[s.slot], ds.Times[s.slot], ds.Quality[s.slot], ds.Have[s.slot] = r.Value, r.Time, r.Quality, true
		c.deriveCk.Touch(ds)
		lo, hi := r.Time, r.Time
		var q ingest.Quality
		for i, h := range ds.Have {
			if !h {
				return true, nil
			}
			lo, hi = min(lo, ds.Times[i]), max(hi, ds.Times[i])
			q |= ds.Quality[i]
		}
		if hi-lo > st.maxAge {
			return true, nil
		}
		c.env.R = *r
		c.env.Meta = s.meta
		c.env.Vars = ds.Vals
		v, err := st.prog.Num(&c.env)
		c.env.Vars = nil
		if err != nil {
			c.exprErrors.Add(1)
			c.exprError(st, err)
			return true, nil
		}
		if err := c.emitDerived(em, st, r, s.out, st.cfg.Unit, v, q); err != nil {
			return false, err
		}
		return true, nil
	}
	return true, nil
}

// emitDerived sends a reading made by stage st through the stages after it.
func (c *stageChain) emitDerived(em *emitter, st *stage, r *ingest.Reading, metric, unit string, v float64, q ingest.Quality) error {
	d := ingest.Reading{Sensor: r.Sensor, Metric: metric, Value: v, Unit: unit, Time: r.Time, Arrival: r.Arrival, Quality: q | ingest.QualityDerived}
	rt := c.eng.routeFor(d.Sensor, d.Metric, st.idx+1)
	if rt == nil {
		return nil // counted by routeFor
	}
	if !finite(v) {
		c.eng.reject(rt)
		return nil
	}
	c.derived.Add(1)
	return c.eng.runRoute(em, rt, &d)
}

// exprError logs an expression failure, at most once per stage per tick.
func (c *stageChain) exprError(st *stage, err error) {
	if c.exprLogged == nil {
		c.exprLogged = map[int]bool{}
	}
	if c.exprLogged[st.idx] {
		return
	}
	c.exprLogged[st.idx] = true
	c.log.Warn("rules: expression failed", "stage", st.idx, "expr", st.cfg.Expr, "err", err)
}
