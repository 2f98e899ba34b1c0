package uplink

import (
	"strings"

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

// topicLevel makes v safe as (part of) one topic level: wildcards, level
// separators and NUL become '_', and an empty value becomes "_".
func topicLevel(v string) string {
	if v == "" {
		return "_"
	}
	if !strings.ContainsAny(v, "+#/\x00") {
		return v
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '+', '#', '/', 0:
			return '_'
		}
		return r
	}, v)
}
