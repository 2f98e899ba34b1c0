package uplink

import (
	"strings"
	"unicode/utf8"

	"github.com/sensorgate/sensorgate/ingest"
)

// topicTmpl is a compiled topic template.
type topicTmpl struct {
	lit   []string // lit[i] precedes ph[i]; len(lit) == len(ph)+1
	ph    []string
	fixed bool // no per-record placeholders ({kind} {sensor} {metric})
}

func compileTopic(t string) topicTmpl {
	var tt topicTmpl
	tt.fixed = true
	rest := t
	for {
		i := strings.IndexByte(rest, '{')
		j := -1
		if i >= 0 {
			j = strings.IndexByte(rest[i:], '}')
		}
		if i < 0 || j < 0 {
			tt.lit = append(tt.lit, rest)
			return tt
		}
		tt.lit = append(tt.lit, rest[:i])
		p := rest[i+1 : i+j]
		tt.ph = append(tt.ph, p)
		if p == "kind" || p == "sensor" || p == "metric" {
			tt.fixed = false
		}
		rest = rest[i+j+1:]
	}
}

// render expands the template for gateway/name and, when given, an item.
func (t topicTmpl) render(gateway, name string, r *Record) string {
	if len(t.ph) == 0 {
		return t.lit[0]
	}
	var sb strings.Builder
	for i, p := range t.ph {
		sb.WriteString(t.lit[i])
		var v string
		switch p {
		case "gateway":
			v = gateway
		case "name":
			v = name
		case "lane":
			if r != nil {
				v = r.Lane.String()
			}
		case "kind":
			if r != nil {
				v = r.Decoded.Kind.String()
			}
		case "sensor":
			if r != nil {
				v = r.label(false)
			}
		case "metric":
			if r != nil {
				v = r.label(true)
			}
		}
		sb.WriteString(topicLevel(v))
	}
	sb.WriteString(t.lit[len(t.lit)-1])
	return sb.String()
}

// label is the metric (or, if !metric, the sensor, or for a summary
// without one its group) of r; for a readings batch the common value, or
// "mixed".
func (r *Record) label(metric bool) string {
	pick := func(sensor, m string) string {
		if metric {
			return m
		}
		return sensor
	}
	switch r.Decoded.Kind {
	case ingest.KindSummary:
		s := r.Decoded.Summary
		if !metric && s.Sensor == "" {
			return s.Group
		}
		return pick(s.Sensor, s.Metric)
	case ingest.KindAlert:
		return pick(r.Decoded.Alert.Sensor, r.Decoded.Alert.Metric)
	case ingest.KindReadings:
		rs := r.Decoded.Readings.Readings
		if len(rs) == 0 {
			return ""
		}
		first := pick(rs[0].Sensor, rs[0].Metric)
		for i := range rs {
			if pick(rs[i].Sensor, rs[i].Metric) != first {
				return "mixed"
			}
		}
		return first
	}
	return ""
}

// maxLevel bounds one rendered topic level in bytes, so that a hostile
// sensor id cannot push a topic past MQTT's 65,535-byte limit.
const maxLevel = 256

// topicLevel makes v safe as (part of) one topic level. Brokers drop the
// connection of a client that publishes to a malformed topic (MQTT 3.1.1
// §1.5.3, §4.7), so everything they may refuse is mapped to '_': the
// wildcards '+' and '#', the level separator '/', NUL and every other C0
// or C1 control character and DEL, the Unicode non-characters (U+FDD0 to
// U+FDEF and U+xFFFE/U+xFFFF) and each byte of invalid UTF-8. An empty
// value becomes "_", and a value is cut to maxLevel bytes on a rune
// boundary. The payload keeps the original name (JSON escapes it).
func topicLevel(v string) string {
	if v == "" {
		return "_"
	}
	if len(v) <= maxLevel && plainLevel(v) {
		return v
	}
	var sb strings.Builder
	sb.Grow(min(len(v), maxLevel))
	for i := 0; i < len(v); {
		r, n := utf8.DecodeRuneInString(v[i:])
		if !levelRune(r, n) {
			r = '_'
		}
		if sb.Len()+utf8.RuneLen(r) > maxLevel {
			break
		}
		sb.WriteRune(r)
		i += n
	}
	return sb.String()
}

// plainLevel reports whether v is printable ASCII with no wildcard or
// separator: the common case, checked without decoding runes.
func plainLevel(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c >= 0x7f || c == '+' || c == '#' || c == '/' {
			return false
		}
	}
	return true
}

// levelRune reports whether r (decoded from n bytes) may stay in a level.
func levelRune(r rune, n int) bool {
	switch {
	case r == utf8.RuneError && n <= 1: // invalid UTF-8
		return false
	case r == '+' || r == '#' || r == '/':
		return false
	case r < 0x20 || r >= 0x7f && r <= 0x9f:
		return false
	case r >= 0xfdd0 && r <= 0xfdef, r&0xfffe == 0xfffe:
		return false
	}
	return true
}

// ValidTopic reports whether t is a topic name a broker accepts in a
// PUBLISH: valid UTF-8 of 1 to 65,535 bytes with no wildcard, no NUL, no
// control character and no Unicode non-character. The fuzz tests hold
// every rendered topic to it.
func ValidTopic(t string) bool {
	if len(t) == 0 || len(t) > 65535 || !utf8.ValidString(t) {
		return false
	}
	for _, r := range t {
		if r != '/' && !levelRune(r, utf8.RuneLen(r)) {
			return false
		}
	}
	return true
}
