package decode

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/sensorgate/sensorgate/ingest"
)

// Time formats of [JSONMapping.TimeFormat].
const (
	TimeAuto    = "auto"    // numbers by magnitude (s, ms, µs or ns), strings as RFC 3339; the default
	TimeUnixS   = "unix_s"  // seconds since the epoch, fractions allowed
	TimeUnixMS  = "unix_ms" // milliseconds since the epoch
	TimeUnixUS  = "unix_us" // microseconds since the epoch
	TimeUnixNS  = "unix_ns" // nanoseconds since the epoch
	TimeRFC3339 = "rfc3339" // "2024-05-01T12:00:00.5Z", "2024-05-01T14:00:00+02:00"
)

// MetricField says where one metric's value is in a JSON object.
type MetricField struct {
	// Field is the path of the value ("temp", nested: "env.temp"); empty
	// means the metric name itself.
	Field string `yaml:"field"`
	// Unit is copied into every reading of this metric ("°C").
	Unit string `yaml:"unit"`
}

// JSONMapping says how to turn a JSON object into readings. It is the
// `json:` block of an MQTT subscription.
//
// Paths use dots to step into nested objects ("meta.id", "env.temp"); a key
// that itself contains a dot cannot be addressed.
type JSONMapping struct {
	// SensorField is the path of the sensor id (a string or a number).
	SensorField string `yaml:"sensor_field"`
	// SensorTopicSegment takes the sensor id from this 0-based level of the
	// topic instead ("sensors/gh-1/telemetry" with 1 gives "gh-1"). When
	// both are set, the field wins and the topic is the fallback.
	SensorTopicSegment *int `yaml:"sensor_topic_segment"`
	// Metrics maps metric names to fields. Empty means: every top-level
	// field whose value is a number, except the sensor and time fields, is a
	// metric named after its key, without a unit.
	Metrics map[string]MetricField `yaml:"metrics"`
	// TimeField is the path of the event time. Empty, or absent from an
	// object, means the reading is stamped with its arrival time and flagged
	// ingest.QualityNoEventTime.
	TimeField string `yaml:"time_field"`
	// TimeFormat is one of auto (default), unix_s, unix_ms, unix_us,
	// unix_ns, rfc3339. auto reads numbers below 1e11 as seconds, below 1e14
	// as milliseconds, below 1e17 as microseconds and larger ones as
	// nanoseconds, and strings as RFC 3339. Numeric formats also accept a
	// number inside a string ("1714564800").
	TimeFormat string `yaml:"time_format"`
}

// Defaults fills TimeFormat when empty.
func (m *JSONMapping) Defaults() {
	if m.TimeFormat == "" {
		m.TimeFormat = TimeAuto
	}
}

// Validate checks the mapping. Paths in the errors are relative to the
// mapping ("metrics.temp.field").
func (m *JSONMapping) Validate() error {
	var errs []error
	if m.SensorField == "" && m.SensorTopicSegment == nil {
		errs = append(errs, ingest.FieldErrorf("sensor_field", "one of sensor_field or sensor_topic_segment is required"))
	}
	if m.SensorField != "" && !validPath(m.SensorField) {
		errs = append(errs, ingest.FieldErrorf("sensor_field", "invalid path %q", m.SensorField))
	}
	if m.SensorTopicSegment != nil && *m.SensorTopicSegment < 0 {
		errs = append(errs, ingest.FieldErrorf("sensor_topic_segment", "must be >= 0"))
	}
	if m.TimeField != "" && !validPath(m.TimeField) {
		errs = append(errs, ingest.FieldErrorf("time_field", "invalid path %q", m.TimeField))
	}
	if m.TimeField != "" && m.TimeField == m.SensorField {
		errs = append(errs, ingest.FieldErrorf("time_field", "same field as sensor_field"))
	}
	switch m.TimeFormat {
	case "", TimeAuto, TimeUnixS, TimeUnixMS, TimeUnixUS, TimeUnixNS, TimeRFC3339:
	default:
		errs = append(errs, ingest.FieldErrorf("time_format", "unknown format %q (want auto, unix_s, unix_ms, unix_us, unix_ns or rfc3339)", m.TimeFormat))
	}
	used := map[string]string{}
	for _, name := range slices.Sorted(mapsKeys(m.Metrics)) {
		f := m.Metrics[name]
		if name == "" {
			errs = append(errs, ingest.FieldErrorf("metrics", "empty metric name"))
			continue
		}
		path := f.Field
		if path == "" {
			path = name
		}
		switch {
		case !validPath(path):
			errs = append(errs, ingest.FieldErrorf("metrics."+name+".field", "invalid path %q", path))
		case path == m.SensorField || path == m.TimeField:
			errs = append(errs, ingest.FieldErrorf("metrics."+name+".field", "%q is the sensor or time field", path))
		case used[path] != "":
			errs = append(errs, ingest.FieldErrorf("metrics."+name+".field", "%q already used by metric %q", path, used[path]))
		default:
			used[path] = name
		}
	}
	// A path that is a prefix of another ("env" and "env.temp") cannot be
	// both a value and an object.
	all := []string{m.SensorField, m.TimeField}
	for p := range used {
		all = append(all, p)
	}
	for _, a := range all {
		for _, b := range all {
			if a != "" && b != "" && strings.HasPrefix(b, a+".") {
				errs = append(errs, ingest.FieldErrorf("metrics", "path %q is inside %q", b, a))
			}
		}
	}
	return errors.Join(errs...)
}

func mapsKeys(m map[string]MetricField) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func validPath(p string) bool {
	if p == "" {
		return false
	}
	for _, s := range strings.Split(p, ".") {
		if s == "" {
			return false
		}
	}
	return true
}

// JSON appends the readings in payload (one object or an array of objects)
// to out. It compiles m on every call: hot paths build a [JSONDecoder] once
// with [NewJSON] instead.
func JSON(m *JSONMapping, topic string, payload []byte, arrival int64, out []ingest.Reading) ([]ingest.Reading, error) {
	d, err := NewJSON(*m)
	if err != nil {
		return out, err
	}
	return d.Decode(topic, payload, arrival, out)
}

type targetKind uint8

const (
	tSensor targetKind = iota + 1
	tTime
	tMetric
)

type target struct {
	kind targetKind
	idx  int
}

type pathTarget struct {
	path string
	t    target
}

const linearMax = 8

func (d *JSONDecoder) target(p []byte) (target, bool) {
	if d.tlist != nil {
		for i := range d.tlist {
			if string(p) == d.tlist[i].path {
				return d.tlist[i].t, true
			}
		}
		return target{}, false
	}
	t, ok := d.targets[string(p)]
	return t, ok
}

func (d *JSONDecoder) isPrefix(p []byte) bool {
	if d.tlist != nil {
		for _, q := range d.plist {
			if string(p) == q {
				return true
			}
		}
		return false
	}
	return d.prefixes[string(p)]
}

type metricSpec struct{ name, unit string }

type timeFormat uint8

const (
	tfAuto timeFormat = iota
	tfS
	tfMS
	tfUS
	tfNS
	tfRFC3339
)

// JSONDecoder is a compiled [JSONMapping]. It is safe for concurrent use.
type JSONDecoder struct {
	seg      int // topic level of the sensor id, -1 for none
	targets  map[string]target
	prefixes map[string]bool
	// Small mappings are searched linearly: faster than hashing the key.
	tlist   []pathTarget
	plist   []string
	metrics []metricSpec
	all     bool
	tf      timeFormat
	in      *interner
}

// NewJSON validates m and compiles it.
func NewJSON(m JSONMapping) (*JSONDecoder, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	d := &JSONDecoder{
		seg:      -1,
		targets:  map[string]target{},
		prefixes: map[string]bool{},
		in:       newInterner(0),
	}
	if m.SensorTopicSegment != nil {
		d.seg = *m.SensorTopicSegment
	}
	switch m.TimeFormat {
	case TimeUnixS:
		d.tf = tfS
	case TimeUnixMS:
		d.tf = tfMS
	case TimeUnixUS:
		d.tf = tfUS
	case TimeUnixNS:
		d.tf = tfNS
	case TimeRFC3339:
		d.tf = tfRFC3339
	}
	add := func(path string, t target) {
		d.targets[path] = t
		for i := range len(path) {
			if path[i] == '.' {
				d.prefixes[path[:i]] = true
			}
		}
	}
	if m.SensorField != "" {
		add(m.SensorField, target{kind: tSensor})
	}
	if m.TimeField != "" {
		add(m.TimeField, target{kind: tTime})
	}
	d.all = len(m.Metrics) == 0
	for _, name := range slices.Sorted(mapsKeys(m.Metrics)) {
		f := m.Metrics[name]
		path := f.Field
		if path == "" {
			path = name
		}
		add(path, target{kind: tMetric, idx: len(d.metrics)})
		d.metrics = append(d.metrics, metricSpec{name: name, unit: f.Unit})
	}
	if len(d.targets) <= linearMax && len(d.prefixes) <= linearMax {
		d.tlist = []pathTarget{}
		for p, t := range d.targets {
			d.tlist = append(d.tlist, pathTarget{p, t})
		}
		for p := range d.prefixes {
			d.plist = append(d.plist, p)
		}
	}
	return d, nil
}

// objState collects what one JSON object said besides its metric values.
type objState struct {
	sensor    string
	hasSensor bool
	timeTok   []byte // raw number, or string contents
	timeStr   bool
	timeEsc   bool
	hasTime   bool
	err       *Error // first semantic problem (bad_value, bad_time, no_sensor)
}

// Decode appends the readings in payload (one object or an array of
// objects) to out and returns the extended slice.
//
// A syntax error discards the whole payload (out is returned unchanged) with
// reason malformed. A semantic problem in one object (no sensor id, no
// metric, a bad time or value) skips that object only: the readings of the
// other objects are appended and the error reports the first problem and
// how many objects were skipped.
func (d *JSONDecoder) Decode(topic string, payload []byte, arrival int64, out []ingest.Reading) ([]ingest.Reading, error) {
	base := len(out)
	topicSensor := ""
	if d.seg >= 0 {
		if s, ok := topicSegment(topic, d.seg); ok && s != "" {
			topicSensor = d.in.str(s)
		}
	}
	b := payload
	i := skipWS(b, 0)
	if i >= len(b) {
		return out, newErr("json", ReasonMalformed, "empty payload", -1)
	}
	var first *Error
	skipped := 0
	one := func(i int) (int, *Error) {
		var st objState
		start := len(out)
		var perr *Error
		i, out, perr = d.object(b, i, nil, 0, &st, out)
		if perr != nil {
			if perr == errSyntax {
				perr = newErr("json", ReasonMalformed, "syntax error", i)
			}
			return i, perr
		}
		if st.err == nil {
			st.err = d.finish(&st, topicSensor, arrival, out[start:])
		}
		if st.err != nil {
			out = out[:start]
			skipped++
			if first == nil {
				first = st.err
			}
		}
		return i, nil
	}
	switch b[i] {
	case '{':
		var err *Error
		if i, err = one(i); err != nil {
			return out[:base], err
		}
	case '[':
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			i++
			break
		}
		for {
			if i >= len(b) || b[i] != '{' {
				return out[:base], newErr("json", ReasonMalformed, "array element is not an object", i)
			}
			var err *Error
			if i, err = one(i); err != nil {
				return out[:base], err
			}
			i = skipWS(b, i)
			if i < len(b) && b[i] == ']' {
				i++
				break
			}
			if i >= len(b) || b[i] != ',' {
				return out[:base], newErr("json", ReasonMalformed, "syntax error", i)
			}
			i = skipWS(b, i+1)
		}
	default:
		return out, newErr("json", ReasonMalformed, "payload is not an object or array", i)
	}
	if i = skipWS(b, i); i != len(b) {
		return out[:base], newErr("json", ReasonMalformed, "trailing data", i)
	}
	if first != nil {
		first.Skipped = skipped
		return out, first
	}
	return out, nil
}

// finish stamps the readings of one object with its sensor and time.
func (d *JSONDecoder) finish(st *objState, topicSensor string, arrival int64, rs []ingest.Reading) *Error {
	sensor := st.sensor
	if !st.hasSensor {
		sensor = topicSensor
	}
	if sensor == "" {
		return newErr("json", ReasonNoSensor, "no sensor id in payload or topic", -1)
	}
	if len(rs) == 0 {
		return newErr("json", ReasonNoMetrics, "no metric values for sensor "+strconv.Quote(sensor), -1)
	}
	t, q := arrival, ingest.QualityNoEventTime
	if st.hasTime {
		var ok bool
		if t, ok = d.eventTime(st); !ok {
			return newErr("json", ReasonBadTime, "cannot read time "+strconv.Quote(string(st.timeTok)), -1)
		}
		q = 0
	}
	for i := range rs {
		r := &rs[i]
		r.Sensor, r.Time, r.Arrival, r.Quality = sensor, t, arrival, q
	}
	return nil
}

// object decodes the object at b[i]=='{' whose path is path. It returns
// the index after the object, out with the metric readings found appended
// (Sensor and Time not yet set), and a non-nil error only for syntax errors.
func (d *JSONDecoder) object(b []byte, i int, path []byte, depth int, st *objState, out []ingest.Reading) (int, []ingest.Reading, *Error) {
	if depth >= maxDepth {
		return i, out, newErr("json", ReasonTooLarge, "nested too deep", i)
	}
	var pbuf [96]byte
	var kbuf [48]byte
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, out, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, out, errSyntax
		}
		ks, ke, esc, ok := scanString(b, i)
		if !ok {
			return ke, out, errSyntax
		}
		key := b[ks:ke]
		if esc {
			if key, ok = unescape(kbuf[:0], key); !ok {
				return ks, out, errSyntax
			}
		}
		p := append(pbuf[:0], path...)
		if len(p) > 0 {
			p = append(p, '.')
		}
		p = append(p, key...)
		i = skipWS(b, ke+1)
		if i >= len(b) || b[i] != ':' {
			return i, out, errSyntax
		}
		i = skipWS(b, i+1)
		if i >= len(b) {
			return i, out, errSyntax
		}
		if t, ok := d.target(p); ok {
			i, out, ok = d.value(b, i, depth, t, st, out)
			if !ok {
				return i, out, errSyntax
			}
		} else if b[i] == '{' && d.isPrefix(p) {
			var err *Error
			if i, out, err = d.object(b, i, p, depth+1, st, out); err != nil {
				return i, out, err
			}
		} else if d.all && depth == 0 && (b[i] == '-' || b[i] >= '0' && b[i] <= '9' || b[i] == 'N' || b[i] == 'I') {
			end, _, ok := scanNumber(b, i)
			if !ok {
				return i, out, errSyntax
			}
			v, ok := parseFloat(b[i:end])
			if !ok {
				return i, out, errSyntax
			}
			out = append(out, ingest.Reading{Metric: d.in.bytes(key), Value: v})
			i = end
		} else {
			if i, ok = skipValue(b, i, depth+1); !ok {
				return i, out, errSyntax
			}
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return i, out, errSyntax
		}
		if b[i] == '}' {
			return i + 1, out, nil
		}
		if b[i] != ',' {
			return i, out, errSyntax
		}
		i = skipWS(b, i+1)
	}
}

// errSyntax marks a syntax error inside object; Decode replaces it with an
// error carrying the offset.
var errSyntax = &Error{Format: "json", Reason: ReasonMalformed, Msg: "syntax error", Offset: -1}

// value handles the value at b[i] of a mapped field.
func (d *JSONDecoder) value(b []byte, i, depth int, t target, st *objState, out []ingest.Reading) (int, []ingest.Reading, bool) {
	c := b[i]
	switch t.kind {
	case tSensor:
		switch {
		case c == '"':
			s, e, esc, ok := scanString(b, i)
			if !ok {
				return e, out, false
			}
			id := b[s:e]
			if esc {
				var ubuf [64]byte
				if id, ok = unescape(ubuf[:0], id); !ok {
					return s, out, false
				}
			}
			if len(id) > 0 {
				st.sensor, st.hasSensor = d.in.bytes(id), true
			}
			return e + 1, out, true
		case c == '-' || c >= '0' && c <= '9':
			end, _, ok := scanNumber(b, i)
			if ok {
				st.sensor, st.hasSensor = d.in.bytes(b[i:end]), true
			}
			return end, out, ok
		}
		end, ok := skipValue(b, i, depth+1)
		if ok && c != 'n' && st.err == nil {
			st.err = newErr("json", ReasonNoSensor, "sensor field is not a string or number", i)
		}
		return end, out, ok
	case tTime:
		switch {
		case c == '"':
			s, e, esc, ok := scanString(b, i)
			if !ok {
				return e, out, false
			}
			st.timeTok, st.timeStr, st.timeEsc, st.hasTime = b[s:e], true, esc, true
			return e + 1, out, true
		case c == '-' || c >= '0' && c <= '9':
			end, _, ok := scanNumber(b, i)
			st.timeTok, st.timeStr, st.hasTime = b[i:end], false, true
			return end, out, ok
		}
		end, ok := skipValue(b, i, depth+1)
		if ok && c != 'n' && st.err == nil {
			st.err = newErr("json", ReasonBadTime, "time field is not a string or number", i)
		}
		return end, out, ok
	}
	// Metric.
	m := d.metrics[t.idx]
	var v float64
	switch {
	case c == '-' || c >= '0' && c <= '9' || c == 'N' || c == 'I':
		end, _, ok := scanNumber(b, i)
		if !ok {
			return i, out, false
		}
		if v, ok = parseFloat(b[i:end]); !ok {
			return i, out, false
		}
		i = end
	case c == '"':
		s, e, _, ok := scanString(b, i)
		if !ok {
			return e, out, false
		}
		if v, ok = parseFloat(b[s:e]); !ok {
			if st.err == nil {
				st.err = newErr("json", ReasonBadValue, "metric "+strconv.Quote(m.name)+" is not a number", i)
			}
			return e + 1, out, true
		}
		i = e + 1
	case c == 't' && hasToken(b, i, "true"):
		v, i = 1, i+4
	case c == 'f' && hasToken(b, i, "false"):
		v, i = 0, i+5
	case c == 'n' && hasToken(b, i, "null"):
		return i + 4, out, true // absent
	default:
		end, ok := skipValue(b, i, depth+1)
		if ok && st.err == nil {
			st.err = newErr("json", ReasonBadValue, "metric "+strconv.Quote(m.name)+" is not a number", i)
		}
		return end, out, ok
	}
	out = append(out, ingest.Reading{Metric: m.name, Value: v, Unit: m.unit})
	return i, out, true
}

// eventTime converts the time token of st to Unix nanoseconds.
func (d *JSONDecoder) eventTime(st *objState) (int64, bool) {
	tok := st.timeTok
	if st.timeStr {
		if st.timeEsc {
			return 0, false
		}
		if d.tf == tfAuto || d.tf == tfRFC3339 {
			if ns, ok := parseRFC3339(tok); ok {
				return ns, true
			}
			if d.tf == tfRFC3339 {
				return 0, false
			}
		}
		if end, _, ok := scanNumber(tok, 0); !ok || end != len(tok) {
			return 0, false
		}
	} else if d.tf == tfRFC3339 {
		return 0, false
	}
	return numericTime(tok, d.tf)
}

// numericTime converts a JSON number token to Unix nanoseconds in format
// tf (auto picks the unit by magnitude). Plain decimals are converted
// exactly (1714564800.25 s is 1714564800250000000 ns); exponents go through
// float64.
func numericTime(tok []byte, tf timeFormat) (int64, bool) {
	intPart, frac := tok, []byte(nil)
	plain := true
	for i, c := range tok {
		switch c {
		case '.':
			intPart, frac = tok[:i], tok[i+1:]
		case 'e', 'E', 'N', 'I':
			plain = false
		}
	}
	if plain {
		n, err := strconv.ParseInt(string(intPart), 10, 64)
		if err == nil {
			mul := unitOf(tf, float64(n))
			if n > math.MaxInt64/mul || n < math.MinInt64/mul {
				return 0, false
			}
			ns := n * mul
			var f int64
			scale := mul
			for _, c := range frac {
				scale /= 10
				if scale == 0 {
					break
				}
				f += int64(c-'0') * scale
			}
			if len(intPart) > 0 && intPart[0] == '-' {
				f = -f
			}
			if (f > 0 && ns > math.MaxInt64-f) || (f < 0 && ns < math.MinInt64-f) {
				return 0, false
			}
			return ns + f, true
		}
	}
	f, ok := parseFloat(tok)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	ns := f * float64(unitOf(tf, f))
	if ns >= math.MaxInt64 || ns <= math.MinInt64 {
		return 0, false
	}
	return int64(ns), true
}

func unitOf(tf timeFormat, v float64) int64 {
	switch tf {
	case tfS:
		return 1e9
	case tfMS:
		return 1e6
	case tfUS:
		return 1e3
	case tfNS:
		return 1
	}
	return autoUnit(math.Abs(v))
}

func autoUnit(a float64) int64 {
	switch {
	case a < 1e11:
		return 1e9
	case a < 1e14:
		return 1e6
	case a < 1e17:
		return 1e3
	}
	return 1
}

// topicSegment returns the n-th (0-based) level of topic.
func topicSegment(topic string, n int) (string, bool) {
	for range n {
		i := strings.IndexByte(topic, '/')
		if i < 0 {
			return "", false
		}
		topic = topic[i+1:]
	}
	if i := strings.IndexByte(topic, '/'); i >= 0 {
		topic = topic[:i]
	}
	return topic, true
}
