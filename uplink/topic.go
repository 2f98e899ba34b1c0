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
func (t topicTmpl) render(gateway, name string, it *item) string {
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
			if it != nil {
				v = it.rec.Lane.String()
			}
		case "kind":
			if it != nil {
				v = it.dec.Kind.String()
			}
		case "sensor":
			if it != nil {
				v = itemSensor(it)
			}
		case "metric":
			if it != nil {
				v = itemMetric(it)
			}
		}
		sb.WriteString(topicLevel(v))
	}
	sb.WriteString(t.lit[len(t.lit)-1])
	return sb.String()
}

// itemSensor is the sensor (or group) of an item; for a readings batch
// the common sensor, or "mixed".
func itemSensor(it *item) string {
	switch it.dec.Kind {
	case ingest.KindSummary:
		if it.dec.Summary.Sensor != "" {
			return it.dec.Summary.Sensor
		}
		return it.dec.Summary.Group
	case ingest.KindAlert:
		return it.dec.Alert.Sensor
	case ingest.KindReadings:
		rs := it.dec.Readings.Readings
		if len(rs) == 0 {
			return ""
		}
		for i := range rs {
			if rs[i].Sensor != rs[0].Sensor {
				return "mixed"
			}
		}
		return rs[0].Sensor
	}
	return ""
}

func itemMetric(it *item) string {
	switch it.dec.Kind {
	case ingest.KindSummary:
		return it.dec.Summary.Metric
	case ingest.KindAlert:
		return it.dec.Alert.Metric
	case ingest.KindReadings:
		rs := it.dec.Readings.Readings
		if len(rs) == 0 {
			return ""
		}
		for i := range rs {
			if rs[i].Metric != rs[0].Metric {
				return "mixed"
			}
		}
		return rs[0].Metric
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
