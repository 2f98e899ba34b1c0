package decode

import (
	"errors"
	"strings"

	"github.com/sensorgate/sensorgate/ingest"
)

// NumberMapping configures the bare-number decoder: the payload is one
// number ("21.5"), the sensor and metric come from the topic through a
// template. It is the `number:` block of a subscription.
type NumberMapping struct {
	// TopicTemplate matches the topic level by level: {sensor} and {metric}
	// capture a level, + matches any one level, a trailing # any rest, and
	// other levels must be equal. Example: "site/{sensor}/{metric}".
	TopicTemplate string `yaml:"topic_template"`
	// Sensor is the sensor id when the template has no {sensor}.
	Sensor string `yaml:"sensor"`
	// Metric is the metric when the template has no {metric} (default
	// "value").
	Metric string `yaml:"metric"`
	// Unit is copied into every reading.
	Unit string `yaml:"unit"`
}

type tmplKind uint8

const (
	tmLiteral tmplKind = iota
	tmSensor
	tmMetric
	tmAny
	tmRest
)

type tmplLevel struct {
	kind tmplKind
	lit  string
}

// NumberDecoder is a compiled NumberMapping. It is safe for concurrent use.
type NumberDecoder struct {
	levels         []tmplLevel
	sensor, metric string
	unit           string
	in             *interner
}

// Defaults fills Metric.
func (m *NumberMapping) Defaults() {
	if m.Metric == "" {
		m.Metric = "value"
	}
}

// Validate checks the template.
func (m *NumberMapping) Validate() error {
	_, err := m.compile()
	return err
}

func (m *NumberMapping) compile() ([]tmplLevel, error) {
	if m.TopicTemplate == "" {
		return nil, ingest.FieldErrorf("topic_template", "required (e.g. site/{sensor}/{metric})")
	}
	var levels []tmplLevel
	var hasSensor, hasMetric bool
	parts := strings.Split(m.TopicTemplate, "/")
	for i, p := range parts {
		switch {
		case p == "{sensor}":
			if hasSensor {
				return nil, ingest.FieldErrorf("topic_template", "{sensor} twice")
			}
			hasSensor = true
			levels = append(levels, tmplLevel{kind: tmSensor})
		case p == "{metric}":
			if hasMetric {
				return nil, ingest.FieldErrorf("topic_template", "{metric} twice")
			}
			hasMetric = true
			levels = append(levels, tmplLevel{kind: tmMetric})
		case p == "+":
			levels = append(levels, tmplLevel{kind: tmAny})
		case p == "#":
			if i != len(parts)-1 {
				return nil, ingest.FieldErrorf("topic_template", "# must be the last level")
			}
			levels = append(levels, tmplLevel{kind: tmRest})
		case strings.ContainsAny(p, "{}+#"):
			return nil, ingest.FieldErrorf("topic_template", "level %q: placeholders and wildcards must fill a whole level", p)
		default:
			levels = append(levels, tmplLevel{kind: tmLiteral, lit: p})
		}
	}
	var errs []error
	if !hasSensor && m.Sensor == "" {
		errs = append(errs, ingest.FieldErrorf("sensor", "required when topic_template has no {sensor}"))
	}
	return levels, errors.Join(errs...)
}

// NewNumber validates m (after Defaults on a copy) and compiles it.
func NewNumber(m NumberMapping) (*NumberDecoder, error) {
	m.Defaults()
	levels, err := m.compile()
	if err != nil {
		return nil, err
	}
	return &NumberDecoder{levels: levels, sensor: m.Sensor, metric: m.Metric, unit: m.Unit, in: newInterner(0)}, nil
}

// Number decodes one payload with mapping m; hot paths use [NewNumber].
func Number(m *NumberMapping, topic string, payload []byte, arrival int64, out []ingest.Reading) ([]ingest.Reading, error) {
	d, err := NewNumber(*m)
	if err != nil {
		return out, err
	}
	return d.Decode(topic, payload, arrival, out)
}

// Decode appends the one reading of payload to out. The payload is a JSON
// number with optional surrounding white space (NaN, Infinity and
// -Infinity are passed on for door validation), or true/false (1/0). The
// event time is the arrival time (ingest.QualityNoEventTime).
func (d *NumberDecoder) Decode(topic string, payload []byte, arrival int64, out []ingest.Reading) ([]ingest.Reading, error) {
	sensor, metric, ok := d.match(topic)
	if !ok {
		return out, newErr("number", ReasonNoSensor, "topic "+topic+" does not match the template", -1)
	}
	b := payload
	i := skipWS(b, 0)
	j := len(b)
	for j > i && (b[j-1] == ' ' || b[j-1] == '\t' || b[j-1] == '\n' || b[j-1] == '\r') {
		j--
	}
	tok := b[i:j]
	var v float64
	switch {
	case string(tok) == "true":
		v = 1
	case string(tok) == "false":
		v = 0
	default:
		end, _, ok := scanNumber(tok, 0)
		if !ok || end != len(tok) {
			return out, newErr("number", ReasonMalformed, "payload is not a number", i)
		}
		if v, ok = parseFloat(tok); !ok {
			return out, newErr("number", ReasonMalformed, "payload is not a number", i)
		}
	}
	return append(out, ingest.Reading{Sensor: sensor, Metric: metric, Value: v, Unit: d.unit,
		Time: arrival, Arrival: arrival, Quality: ingest.QualityNoEventTime}), nil
}

// match applies the template to topic.
func (d *NumberDecoder) match(topic string) (sensor, metric string, ok bool) {
	sensor, metric = d.sensor, d.metric
	rest := topic
	exhausted := false
	for _, l := range d.levels {
		if l.kind == tmRest {
			return sensor, metric, true
		}
		if exhausted {
			return "", "", false
		}
		level, next, more := strings.Cut(rest, "/")
		exhausted, rest = !more, next
		switch l.kind {
		case tmLiteral:
			if level != l.lit {
				return "", "", false
			}
		case tmSensor:
			if level == "" {
				return "", "", false
			}
			sensor = d.in.str(level)
		case tmMetric:
			if level == "" {
				return "", "", false
			}
			metric = d.in.str(level)
		}
	}
	return sensor, metric, exhausted
}
