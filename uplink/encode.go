package uplink

import (
	"math"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
)

// Record is one outbox record with its decoded content, as the core hands
// it to a transport.
type Record struct {
	buffer.Record
	// Decoded is Payload as ingest.DecodeRecord read it.
	Decoded ingest.Record
}

// encoder turns items into message payloads. It is used by one goroutine
// at a time and reuses nothing across calls except what the caller passes
// in b.
type encoder struct {
	format  string
	gateway string
	// array: every payload is an array (or SenML pack) even for one item.
	array bool
}

// contentType is the HTTP Content-Type of the payloads.
func (e *encoder) contentType() string {
	switch e.format {
	case FormatMsgpack:
		return "application/msgpack"
	case FormatSenML:
		return "application/senml+json"
	}
	return "application/json"
}

// appendPayload appends the payload for items to b.
func (e *encoder) appendPayload(b []byte, items []Record) []byte {
	switch e.format {
	case FormatMsgpack:
		if e.array || len(items) != 1 {
			b = msgp.AppendArrayHeader(b, uint32(len(items)))
		}
		for i := range items {
			b = e.appendMsgpack(b, &items[i])
		}
		return b
	case FormatSenML:
		s := senml{b: append(b, '['), first: true}
		for i := range items {
			e.appendSenML(&s, &items[i])
		}
		return append(s.b, ']')
	}
	if e.array || len(items) != 1 {
		b = append(b, '[')
		for i := range items {
			if i > 0 {
				b = append(b, ',')
			}
			b = e.appendEnvelope(b, &items[i])
		}
		return append(b, ']')
	}
	return e.appendEnvelope(b, &items[0])
}

// size estimates the encoded size of r, for batch byte limits.
func (r *Record) size() int {
	return 2*len(r.Payload) + 160
}

// ---- JSON ----

func (e *encoder) appendEnvelope(b []byte, it *Record) []byte {
	b = append(b, `{"record_id":`...)
	b = appendJSONString(b, it.ID)
	b = append(b, `,"gateway":`...)
	b = appendJSONString(b, e.gateway)
	b = append(b, `,"lane":`...)
	b = appendJSONString(b, it.Lane.String())
	b = append(b, `,"stored":`...)
	b = strconv.AppendInt(b, it.Stored, 10)
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, it.Decoded.Kind.String())
	switch it.Decoded.Kind {
	case ingest.KindSummary:
		b = append(b, `,"summary":`...)
		b = appendSummaryJSON(b, it.Decoded.Summary)
	case ingest.KindAlert:
		b = append(b, `,"alert":`...)
		b = appendAlertJSON(b, it.Decoded.Alert)
	case ingest.KindReadings:
		if g := it.Decoded.Readings.Gateway; g != "" {
			b = append(b, `,"origin":`...)
			b = appendJSONString(b, g)
		}
		b = append(b, `,"readings":[`...)
		for i := range it.Decoded.Readings.Readings {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendReadingJSON(b, &it.Decoded.Readings.Readings[i])
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// jsonObj appends "key":value pairs with the right commas.
type jsonObj struct {
	b     []byte
	first bool
}

func (o *jsonObj) key(k string) {
	if o.first {
		o.first = false
	} else {
		o.b = append(o.b, ',')
	}
	o.b = append(o.b, '"')
	o.b = append(o.b, k...)
	o.b = append(o.b, '"', ':')
}

func (o *jsonObj) str(k, v string)         { o.key(k); o.b = appendJSONString(o.b, v) }
func (o *jsonObj) f64(k string, v float64) { o.key(k); o.b = appendJSONFloat(o.b, v) }
func (o *jsonObj) i64(k string, v int64)   { o.key(k); o.b = strconv.AppendInt(o.b, v, 10) }
func (o *jsonObj) u64(k string, v uint64)  { o.key(k); o.b = strconv.AppendUint(o.b, v, 10) }

func (o *jsonObj) strOE(k, v string) {
	if v != "" {
		o.str(k, v)
	}
}
func (o *jsonObj) f64OE(k string, v float64) {
	if v != 0 {
		o.f64(k, v)
	}
}
func (o *jsonObj) i64OE(k string, v int64) {
	if v != 0 {
		o.i64(k, v)
	}
}
func (o *jsonObj) u64OE(k string, v uint64) {
	if v != 0 {
		o.u64(k, v)
	}
}

func (o *jsonObj) meta(m map[string]string) {
	if len(m) == 0 {
		return
	}
	o.key("meta")
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	o.b = append(o.b, '{')
	for i, k := range keys {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.b = appendJSONString(o.b, k)
		o.b = append(o.b, ':')
		o.b = appendJSONString(o.b, m[k])
	}
	o.b = append(o.b, '}')
}

// appendSummaryJSON writes s with the field names and omitempty rules of
// its json struct tags (non-finite numbers become null).
func appendSummaryJSON(b []byte, s *ingest.Summary) []byte {
	o := jsonObj{b: append(b, '{'), first: true}
	o.str("id", s.ID)
	o.u64OE("rev", uint64(s.Revision))
	o.strOE("window", s.Window)
	o.str("sensor", s.Sensor)
	o.str("metric", s.Metric)
	o.strOE("unit", s.Unit)
	o.strOE("group", s.Group)
	o.i64("start", s.Start)
	o.i64("end", s.End)
	o.u64("count", s.Count)
	o.f64("sum", s.Sum)
	o.f64("min", s.Min)
	o.f64("max", s.Max)
	o.f64("mean", s.Mean)
	o.f64OE("stddev", s.Stddev)
	o.f64OE("first", s.First)
	o.f64OE("last", s.Last)
	o.i64OE("first_time", s.FirstTime)
	o.i64OE("last_time", s.LastTime)
	o.f64OE("twa", s.TWA)
	o.f64OE("delta", s.Delta)
	o.f64OE("rate", s.Rate)
	if len(s.Quantiles) > 0 {
		o.key("quantiles")
		o.b = append(o.b, '[')
		for i, q := range s.Quantiles {
			if i > 0 {
				o.b = append(o.b, ',')
			}
			o.b = append(o.b, `{"q":`...)
			o.b = appendJSONFloat(o.b, q.Q)
			o.b = append(o.b, `,"v":`...)
			o.b = appendJSONFloat(o.b, q.Value)
			o.b = append(o.b, '}')
		}
		o.b = append(o.b, ']')
	}
	o.u64OE("late", s.Late)
	o.u64OE("rejected", s.Rejected)
	o.u64OE("quality", uint64(s.Quality))
	o.meta(s.Meta)
	return append(o.b, '}')
}

// appendAlertJSON writes a with the field names of its json struct tags.
func appendAlertJSON(b []byte, a *ingest.Alert) []byte {
	o := jsonObj{b: append(b, '{'), first: true}
	o.str("id", a.ID)
	o.str("rule", a.Rule)
	o.str("sensor", a.Sensor)
	o.str("metric", a.Metric)
	o.strOE("unit", a.Unit)
	o.str("state", a.State)
	o.strOE("severity", a.Severity)
	o.f64("value", a.Value)
	o.f64("threshold", a.Threshold)
	o.i64("since", a.Since)
	o.i64("time", a.Time)
	o.u64OE("seq", uint64(a.Seq))
	o.strOE("message", a.Message)
	o.meta(a.Meta)
	return append(o.b, '}')
}

// appendReadingJSON writes r as
// {"sensor","metric","value","unit"?,"time","arrival","orig_time"?,"quality"?}.
func appendReadingJSON(b []byte, r *ingest.Reading) []byte {
	o := jsonObj{b: append(b, '{'), first: true}
	o.str("sensor", r.Sensor)
	o.str("metric", r.Metric)
	o.f64("value", r.Value)
	o.strOE("unit", r.Unit)
	o.i64("time", r.Time)
	o.i64("arrival", r.Arrival)
	o.i64OE("orig_time", r.OrigTime)
	o.u64OE("quality", uint64(r.Quality))
	return append(o.b, '}')
}

func appendJSONFloat(b []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes
// U+FFFD as with encoding/json.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// ---- MessagePack ----

// appendMsgpack writes the envelope as a MessagePack map with the same keys
// as the JSON envelope; the body (summary/alert/readings) is the record's
// own MessagePack encoding, copied as is (short keys of the msg tags).
func (e *encoder) appendMsgpack(b []byte, it *Record) []byte {
	n := uint32(6)
	origin := it.Decoded.Kind == ingest.KindReadings && it.Decoded.Readings.Gateway != ""
	if origin {
		n++
	}
	b = msgp.AppendMapHeader(b, n)
	b = msgp.AppendString(b, "record_id")
	b = msgp.AppendString(b, it.ID)
	b = msgp.AppendString(b, "gateway")
	b = msgp.AppendString(b, e.gateway)
	b = msgp.AppendString(b, "lane")
	b = msgp.AppendString(b, it.Lane.String())
	b = msgp.AppendString(b, "stored")
	b = msgp.AppendInt64(b, it.Stored)
	b = msgp.AppendString(b, "kind")
	b = msgp.AppendString(b, it.Decoded.Kind.String())
	if origin {
		b = msgp.AppendString(b, "origin")
		b = msgp.AppendString(b, it.Decoded.Readings.Gateway)
	}
	b = msgp.AppendString(b, it.Decoded.Kind.String())
	// The payload was validated by DecodeRecord: byte 0 is the kind, the
	// rest exactly one MessagePack object.
	return append(b, it.Payload[1:]...)
}

// ---- SenML (RFC 8428, JSON) ----

// senml writes SenML records into a pack shared by several items.
type senml struct {
	b     []byte
	first bool
}

func (s *senml) open() *jsonObj {
	if s.first {
		s.first = false
	} else {
		s.b = append(s.b, ',')
	}
	return &jsonObj{b: append(s.b, '{'), first: true}
}

func (s *senml) close(o *jsonObj) { s.b = append(o.b, '}') }

// appendSenML appends the SenML records of one item (without the
// surrounding brackets). See doc.go for the mapping.
func (e *encoder) appendSenML(s *senml, it *Record) {
	switch it.Decoded.Kind {
	case ingest.KindSummary:
		sm := it.Decoded.Summary
		subject := sm.Sensor
		if subject == "" {
			subject = sm.Group
		}
		o := s.open()
		e.senmlBase(o, it, subject, sm.End)
		if sm.Unit != "" {
			o.str("bu", sm.Unit)
		}
		o.str("n", senmlName(sm.Metric)+":count")
		o.u64("v", sm.Count)
		o.str("u", "count")
		s.close(o)
		for _, f := range [...]struct {
			n      string
			v      float64
			always bool
		}{{"mean", sm.Mean, true}, {"min", sm.Min, true}, {"max", sm.Max, true}, {"sum", sm.Sum, true},
			{"stddev", sm.Stddev, false}, {"first", sm.First, false}, {"last", sm.Last, false}, {"twa", sm.TWA, false},
			{"delta", sm.Delta, false}, {"rate", sm.Rate, false}} {
			if !f.always && f.v == 0 || !ingest.Finite(f.v) {
				continue
			}
			o := s.open()
			o.str("n", senmlName(sm.Metric)+":"+f.n)
			o.f64("v", f.v)
			s.close(o)
		}
		for _, q := range sm.Quantiles {
			if !ingest.Finite(q.Value) {
				continue
			}
			o := s.open()
			o.str("n", senmlName(sm.Metric)+":p"+strconv.FormatFloat(q.Q*100, 'f', -1, 64))
			o.f64("v", q.Value)
			s.close(o)
		}
	case ingest.KindAlert:
		a := it.Decoded.Alert
		o := s.open()
		e.senmlBase(o, it, a.Sensor, a.Time)
		o.str("n", senmlName(a.Metric))
		o.strOE("u", a.Unit)
		o.f64("v", a.Value)
		s.close(o)
		o = s.open()
		o.str("n", senmlName(a.Metric)+":alert:"+senmlName(a.Rule))
		o.str("vs", a.State)
		s.close(o)
		o = s.open()
		o.str("n", senmlName(a.Metric)+":threshold")
		o.strOE("u", a.Unit)
		o.f64("v", a.Threshold)
		s.close(o)
	case ingest.KindReadings:
		last, idDone := "\x00", false
		for i := range it.Decoded.Readings.Readings {
			r := &it.Decoded.Readings.Readings[i]
			if !ingest.Finite(r.Value) {
				continue
			}
			o := s.open()
			if !idDone {
				o.str("record_id", it.ID)
				idDone = true
			}
			if r.Sensor != last {
				o.str("bn", senmlName(e.gateway)+":"+senmlName(r.Sensor)+":")
				last = r.Sensor
			}
			o.str("n", senmlName(r.Metric))
			o.strOE("u", r.Unit)
			o.f64("v", r.Value)
			o.key("t")
			o.b = appendSeconds(o.b, r.Time)
			s.close(o)
		}
	}
}

// senmlBase writes the base fields of the first record of an item.
func (e *encoder) senmlBase(o *jsonObj, it *Record, subject string, t int64) {
	o.str("record_id", it.ID)
	o.str("bn", senmlName(e.gateway)+":"+senmlName(subject)+":")
	o.key("bt")
	o.b = appendSeconds(o.b, t)
}

// appendSeconds writes Unix nanoseconds as decimal seconds, exactly.
func appendSeconds(b []byte, ns int64) []byte {
	if ns < 0 {
		return strconv.AppendFloat(b, float64(ns)/1e9, 'f', -1, 64)
	}
	b = strconv.AppendInt(b, ns/1e9, 10)
	frac := ns % 1e9
	if frac == 0 {
		return b
	}
	var d [10]byte
	d[0] = '.'
	for i := 9; i >= 1; i-- {
		d[i] = byte('0' + frac%10)
		frac /= 10
	}
	n := 10
	for d[n-1] == '0' {
		n--
	}
	return append(b, d[:n]...)
}

// senmlName maps s to the SenML name alphabet (RFC 8428 section 4.5.1:
// A-Z a-z 0-9 - : . / _), replacing anything else with '_'.
func senmlName(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if !senmlChar(s[i]) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	b := []byte(s)
	for i := range b {
		if !senmlChar(b[i]) {
			b[i] = '_'
		}
	}
	return string(b)
}

func senmlChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == ':' || c == '.' || c == '/' || c == '_'
}
