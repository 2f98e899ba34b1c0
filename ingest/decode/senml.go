package decode

import (
	"errors"
	"math"

	"github.com/sensorgate/sensorgate/ingest"
)

// Policies for SenML string and boolean values.
const (
	SenMLKeep  = "keep"  // vb: true/false become 1/0; vs: a number in the string is parsed
	SenMLSkip  = "skip"  // the record is left out silently
	senmlRelTh = 1 << 28 // RFC 8428 section 4.5.3: times below 2^28 are relative to now
)

// SenMLMapping configures the SenML JSON decoder (RFC 8428). It is the
// `senml:` block of a subscription.
//
// The resolved name of a record (base name + name) gives the sensor and the
// metric: the sensor is the base name without a trailing ':', '/', '.', '-'
// or '_' separator, the metric is the record's own name. A record without a
// base name uses its whole name as the sensor and DefaultMetric as the
// metric, unless SensorTopicSegment is set: then the topic level is the
// sensor and the whole resolved name the metric.
type SenMLMapping struct {
	// SensorTopicSegment takes the sensor id from this 0-based topic level.
	SensorTopicSegment *int `yaml:"sensor_topic_segment"`
	// DefaultMetric names the metric of a record whose name adds nothing to
	// the base name. Empty (the default) uses the record's unit, as in RFC
	// 8428's example 5.1.3 where "%RH", "lon" and "lat" share one name, or
	// "value" when there is no unit.
	DefaultMetric string `yaml:"default_metric"`
	// BoolValues says what to do with vb records: keep (1/0, the default) or
	// skip.
	BoolValues string `yaml:"bool_values"`
	// StringValues says what to do with vs records: skip (default) or keep
	// (parse a number from the string; otherwise bad_value).
	StringValues string `yaml:"string_values"`
}

// Defaults fills zero fields.
func (m *SenMLMapping) Defaults() {
	if m.BoolValues == "" {
		m.BoolValues = SenMLKeep
	}
	if m.StringValues == "" {
		m.StringValues = SenMLSkip
	}
}

// Validate checks the mapping.
func (m *SenMLMapping) Validate() error {
	var errs []error
	if m.SensorTopicSegment != nil && *m.SensorTopicSegment < 0 {
		errs = append(errs, ingest.FieldErrorf("sensor_topic_segment", "must be >= 0"))
	}
	for _, p := range []struct{ key, v string }{{"bool_values", m.BoolValues}, {"string_values", m.StringValues}} {
		if p.v != "" && p.v != SenMLKeep && p.v != SenMLSkip {
			errs = append(errs, ingest.FieldErrorf(p.key, "must be keep or skip, not %q", p.v))
		}
	}
	return errors.Join(errs...)
}

// SenMLDecoder is a compiled SenMLMapping. It is safe for concurrent use.
type SenMLDecoder struct {
	seg        int
	defMetric  string
	keepBool   bool
	keepString bool
	in         *interner
}

// NewSenML validates m (after Defaults on a copy) and compiles it.
func NewSenML(m SenMLMapping) (*SenMLDecoder, error) {
	m.Defaults()
	if err := m.Validate(); err != nil {
		return nil, err
	}
	d := &SenMLDecoder{seg: -1, defMetric: m.DefaultMetric, keepBool: m.BoolValues == SenMLKeep,
		keepString: m.StringValues == SenMLKeep, in: newInterner(0)}
	if m.SensorTopicSegment != nil {
		d.seg = *m.SensorTopicSegment
	}
	return d, nil
}

// SenML decodes a SenML JSON pack with mapping m, compiling it on every
// call; hot paths use [NewSenML].
func SenML(m *SenMLMapping, topic string, payload []byte, arrival int64, out []ingest.Reading) ([]ingest.Reading, error) {
	d, err := NewSenML(*m)
	if err != nil {
		return out, err
	}
	return d.Decode(topic, payload, arrival, out)
}

// senmlBase is the base state carried from record to record.
type senmlBase struct {
	bn        []byte // raw (unescaped) base name
	bt, bv    float64
	bs        float64
	bu        []byte
	hasBv     bool
	hasBs     bool
	hasBt     bool
	bnEscaped bool
}

type senmlRec struct {
	n, u                   []byte
	nEsc, uEsc             bool
	v, s, t                float64
	hasV, hasS, hasT       bool
	hasVB, hasVS, hasVD    bool
	vb                     bool
	vs                     []byte
	vsEsc                  bool
	hasN                   bool
	hasU                   bool
	baseOnly               bool
	mustUnderstandUnknown  bool
	malformedValueForLabel bool
}

// Decode appends the readings of a SenML JSON pack (an array of records,
// RFC 8428 section 5) to out.
//
// Resolution follows RFC 8428 section 4.6: base name + name, base time +
// time (times below 2^28 are relative to arrival, in seconds), unit or base
// unit, base value + value, base sum + sum. A record with a sum and no value
// gives a reading of the sum. vd (data) records are always skipped; vb and
// vs follow the mapping. A record with an unknown label ending in '_' (must
// understand, section 4.4) makes the whole pack malformed.
func (d *SenMLDecoder) Decode(topic string, payload []byte, arrival int64, out []ingest.Reading) ([]ingest.Reading, error) {
	base := len(out)
	b := payload
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '[' {
		return out, newErr("senml", ReasonMalformed, "a SenML pack is a JSON array", i)
	}
	topicSensor := ""
	if d.seg >= 0 {
		if s, ok := topicSegment(topic, d.seg); ok && s != "" {
			topicSensor = d.in.str(s)
		}
	}
	var bs senmlBase
	var cache senmlCache
	var first *Error
	skipped := 0
	fail := func(e *Error) {
		skipped++
		if first == nil {
			first = e
		}
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		i++
	} else {
		for {
			if i >= len(b) || b[i] != '{' {
				return out[:base], newErr("senml", ReasonMalformed, "record is not an object", i)
			}
			var rec senmlRec
			var ok bool
			if i, ok = d.record(b, i, &bs, &rec); !ok {
				return out[:base], newErr("senml", ReasonMalformed, "syntax error", i)
			}
			if rec.mustUnderstandUnknown {
				return out[:base], newErr("senml", ReasonMalformed, "unknown must-understand label", i)
			}
			var e *Error
			out, e = d.emit(&bs, &rec, topicSensor, arrival, out, &cache)
			if e != nil {
				fail(e)
			}
			i = skipWS(b, i)
			if i < len(b) && b[i] == ']' {
				i++
				break
			}
			if i >= len(b) || b[i] != ',' {
				return out[:base], newErr("senml", ReasonMalformed, "syntax error", i)
			}
			i = skipWS(b, i+1)
		}
	}
	if i = skipWS(b, i); i != len(b) {
		return out[:base], newErr("senml", ReasonMalformed, "trailing data", i)
	}
	if first != nil {
		first.Skipped = skipped
		return out, first
	}
	if len(out) == base {
		return out, newErr("senml", ReasonNoMetrics, "no numeric records", -1)
	}
	return out, nil
}

// record parses one record object, updating the base state.
func (d *SenMLDecoder) record(b []byte, i int, bs *senmlBase, r *senmlRec) (int, bool) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, false
		}
		ks, ke, _, ok := scanString(b, i)
		if !ok {
			return ke, false
		}
		key := b[ks:ke]
		i = skipWS(b, ke+1)
		if i >= len(b) || b[i] != ':' {
			return i, false
		}
		i = skipWS(b, i+1)
		if i >= len(b) {
			return i, false
		}
		c := b[i]
		isStr := c == '"'
		isNum := c == '-' || c >= '0' && c <= '9'
		var str []byte
		var esc bool
		var num float64
		end := i
		switch {
		case isStr:
			s, e, es, ok := scanString(b, i)
			if !ok {
				return e, false
			}
			str, esc, end = b[s:e], es, e+1
		case isNum:
			e, _, ok := scanNumber(b, i)
			if !ok {
				return e, false
			}
			if num, ok = parseFloat(b[i:e]); !ok {
				return i, false
			}
			end = e
		default:
			e, ok := skipValue(b, i, 1)
			if !ok {
				return e, false
			}
			end = e
		}
		bad := false
		switch string(key) {
		case "bn":
			bs.bn, bs.bnEscaped, bad = str, esc, !isStr
		case "bt":
			bs.bt, bs.hasBt, bad = num, true, !isNum
		case "bu":
			bs.bu, bad = str, !isStr
			if esc {
				bad = true
			}
		case "bv":
			bs.bv, bs.hasBv, bad = num, true, !isNum
		case "bs":
			bs.bs, bs.hasBs, bad = num, true, !isNum
		case "bver":
			bad = !isNum
		case "n":
			r.n, r.nEsc, r.hasN, bad = str, esc, true, !isStr
		case "u":
			r.u, r.uEsc, r.hasU, bad = str, esc, true, !isStr
		case "v":
			r.v, r.hasV, bad = num, true, !isNum
		case "s":
			r.s, r.hasS, bad = num, true, !isNum
		case "t":
			r.t, r.hasT, bad = num, true, !isNum
		case "ut":
			bad = !isNum
		case "vs":
			r.vs, r.vsEsc, r.hasVS, bad = str, esc, true, !isStr
		case "vd":
			r.hasVD, bad = true, !isStr
		case "vb":
			switch {
			case hasToken(b, i, "true"):
				r.vb, r.hasVB = true, true
			case hasToken(b, i, "false"):
				r.vb, r.hasVB = false, true
			default:
				bad = true
			}
		default:
			if len(key) > 0 && key[len(key)-1] == '_' {
				r.mustUnderstandUnknown = true
			}
		}
		if bad {
			r.malformedValueForLabel = true
		}
		i = skipWS(b, end)
		if i >= len(b) {
			return i, false
		}
		if b[i] == '}' {
			return i + 1, true
		}
		if b[i] != ',' {
			return i, false
		}
		i = skipWS(b, i+1)
	}
}

// trimSep removes one trailing separator from a base name.
func trimSep(b []byte) []byte {
	if n := len(b); n > 1 {
		switch b[n-1] {
		case ':', '/', '.', '-', '_':
			return b[:n-1]
		}
	}
	return b
}

// emit resolves one record and appends its reading.
func (d *SenMLDecoder) emit(bs *senmlBase, r *senmlRec, topicSensor string, arrival int64, out []ingest.Reading, c *senmlCache) ([]ingest.Reading, *Error) {
	if r.malformedValueForLabel {
		return out, newErr("senml", ReasonBadValue, "a label has a value of the wrong type", -1)
	}
	var value float64
	switch {
	case r.hasV:
		value = r.v
		if bs.hasBv {
			value += bs.bv
		}
	case r.hasVB:
		if !d.keepBool {
			return out, nil
		}
		if r.vb {
			value = 1
		}
	case r.hasVS:
		if !d.keepString {
			return out, nil
		}
		f, ok := parseFloat(r.vs)
		if r.vsEsc || !ok {
			return out, newErr("senml", ReasonBadValue, "string value is not a number", -1)
		}
		value = f
	case r.hasVD:
		return out, nil
	case r.hasS:
		value = r.s
		if bs.hasBs {
			value += bs.bs
		}
	default:
		if !r.hasN && !r.hasT && !r.hasU {
			return out, nil // a record carrying only base fields
		}
		if bs.hasBv { // RFC 8428 4.6: a base value alone is the value
			value = bs.bv
			break
		}
		return out, newErr("senml", ReasonNoMetrics, "record without a value", -1)
	}

	// Names.
	var nameBuf [128]byte
	var sensor, metric string
	unitB := r.u
	if !r.hasU {
		unitB = bs.bu
	}
	if r.nEsc || bs.bnEscaped {
		var bnBuf [128]byte
		bnU, ok1 := unescape(bnBuf[:0], bs.bn)
		nU, ok2 := unescape(nameBuf[:0], r.n)
		if !ok1 || !ok2 {
			return out, newErr("senml", ReasonMalformed, "bad escape in name", -1)
		}
		sensor, metric = d.names(bnU, nU, unitB, topicSensor, nil, nil)
	} else {
		sensor, metric = d.names(bs.bn, r.n, unitB, topicSensor, nameBuf[:0], c)
	}
	if sensor == "" {
		return out, newErr("senml", ReasonNoSensor, "record without a name", -1)
	}

	// Time (seconds, float; below 2^28 relative to now).
	t := r.t
	if bs.hasBt {
		t += bs.bt
	}
	q := ingest.Quality(0)
	var ts int64
	switch {
	case !r.hasT && !bs.hasBt:
		ts, q = arrival, ingest.QualityNoEventTime
	case math.IsNaN(t) || math.IsInf(t, 0) || math.Abs(t) > 9.2e9:
		return out, newErr("senml", ReasonBadTime, "time out of range", -1)
	case math.Abs(t) < senmlRelTh:
		ts = arrival + int64(math.Round(t*1e9))
	default:
		ts = secondsToNs(t)
	}
	unit := ""
	switch {
	case r.hasU:
		if r.uEsc {
			return out, newErr("senml", ReasonBadValue, "escaped unit", -1)
		}
		unit = c.unit.get(d.in, r.u)
	case len(bs.bu) > 0:
		unit = c.unit.get(d.in, bs.bu)
	}
	return append(out, ingest.Reading{Sensor: sensor, Metric: metric, Value: value, Unit: unit, Time: ts, Arrival: arrival, Quality: q}), nil
}

// senmlCache skips the interner for the values that repeat from record to
// record of one pack (the sensor from the base name, units).
type senmlCache struct{ sensor, unit lastString }

// names splits a resolved name into sensor and metric (see SenMLMapping).
func (d *SenMLDecoder) names(bn, n, unit []byte, topicSensor string, buf []byte, c *senmlCache) (sensor, metric string) {
	if topicSensor != "" {
		full := append(append(buf, bn...), n...)
		if len(full) == 0 {
			return topicSensor, d.metricOf(unit)
		}
		return topicSensor, d.in.bytes(full)
	}
	if len(bn) > 0 {
		s := trimSep(bn)
		if c != nil {
			sensor = c.sensor.get(d.in, s)
		} else {
			sensor = d.in.bytes(s)
		}
		if len(n) == 0 {
			return sensor, d.metricOf(unit)
		}
		return sensor, d.in.bytes(n)
	}
	if len(n) == 0 {
		return "", ""
	}
	return d.in.bytes(n), d.metricOf(unit)
}

// metricOf names the metric of a record whose name adds nothing to the
// sensor: DefaultMetric, else its unit, else "value".
func (d *SenMLDecoder) metricOf(unit []byte) string {
	switch {
	case d.defMetric != "":
		return d.defMetric
	case len(unit) > 0:
		return d.in.bytes(unit)
	}
	return "value"
}

// secondsToNs converts float seconds since the epoch to ns, rounding the
// fraction to the microsecond that float64 can carry at today's magnitudes.
func secondsToNs(t float64) int64 {
	sec := math.Floor(t)
	frac := t - sec
	return int64(sec)*1e9 + int64(math.Round(frac*1e6))*1e3
}
