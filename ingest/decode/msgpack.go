package decode

import (
	"github.com/tinylib/msgp/msgp"

	"github.com/sensorgate/sensorgate/ingest"
)

// MsgpackMapping configures the MessagePack decoder, which reads the
// ingest.ReadingBatch that one sensorgate forwards to another (the raw lane).
// It is the `msgpack:` block of a subscription.
type MsgpackMapping struct {
	// PrefixGateway prefixes every sensor id with the batch's gateway id and
	// a slash ("gw-7/gh-1"), for collectors fed by several gateways with
	// overlapping sensor ids.
	PrefixGateway bool `yaml:"prefix_gateway"`
}

// MsgpackDecoder decodes ingest.ReadingBatch payloads. It is safe for
// concurrent use.
type MsgpackDecoder struct {
	prefix bool
	in     *interner
}

// NewMsgpack compiles m.
func NewMsgpack(m MsgpackMapping) *MsgpackDecoder {
	return &MsgpackDecoder{prefix: m.PrefixGateway, in: newInterner(0)}
}

// Msgpack decodes one payload with mapping m; hot paths use [NewMsgpack].
func Msgpack(m *MsgpackMapping, topic string, payload []byte, arrival int64, out []ingest.Reading) ([]ingest.Reading, error) {
	return NewMsgpack(*m).Decode(topic, payload, arrival, out)
}

// Decode appends the readings of a MessagePack ingest.ReadingBatch (as
// made by its MarshalMsg, or as an outbox record made by
// ingest.AppendReadings, whose leading 'R' tag is skipped) to out.
//
// Sensor, metric, value, unit, event time, original time and quality are
// kept as the sending gateway set them; Arrival becomes this gateway's
// arrival time. A reading without a sensor or metric is skipped (reasons
// no_sensor, no_metrics); an encoding error drops the whole batch
// (malformed). Strings are interned: no allocation per reading in steady
// state.
func (d *MsgpackDecoder) Decode(_ string, payload []byte, arrival int64, out []ingest.Reading) ([]ingest.Reading, error) {
	base := len(out)
	b := payload
	if len(b) > 0 && b[0] == byte(ingest.KindReadings) {
		b = b[1:]
	}
	bad := func(msg string) ([]ingest.Reading, error) {
		return out[:base], newErr("msgpack", ReasonMalformed, msg, len(payload)-len(b))
	}
	n, b, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return bad("not a reading batch: " + err.Error())
	}
	var gw []byte
	var cs, cm, cu lastString // batches repeat metrics and units
	var first *Error
	skipped := 0
	sawReadings := false
	for ; n > 0; n-- {
		var key []byte
		if key, b, err = msgp.ReadMapKeyZC(b); err != nil {
			return bad(err.Error())
		}
		switch string(key) {
		case "g":
			if gw, b, err = msgp.ReadStringZC(b); err != nil {
				return bad("gateway: " + err.Error())
			}
		case "r":
			sawReadings = true
			var cnt uint32
			if cnt, b, err = msgp.ReadArrayHeaderBytes(b); err != nil {
				return bad("readings: " + err.Error())
			}
			if int(cnt) > len(b) { // every reading takes at least one byte
				return bad("readings: array longer than the payload")
			}
			for ; cnt > 0; cnt-- {
				var r ingest.Reading
				var s, m, u []byte
				if b, s, m, u, err = readReading(b, &r); err != nil {
					return bad("reading: " + err.Error())
				}
				var e *Error
				switch {
				case len(s) == 0:
					e = newErr("msgpack", ReasonNoSensor, "reading without sensor", -1)
				case len(m) == 0:
					e = newErr("msgpack", ReasonNoMetrics, "reading without metric", -1)
				}
				if e != nil {
					skipped++
					if first == nil {
						first = e
					}
					continue
				}
				r.Sensor, r.Metric, r.Arrival = cs.get(d.in, s), cm.get(d.in, m), arrival
				if len(u) > 0 {
					r.Unit = cu.get(d.in, u)
				}
				out = append(out, r)
			}
		default:
			if b, err = msgp.Skip(b); err != nil {
				return bad(err.Error())
			}
		}
	}
	if len(b) != 0 {
		return bad("trailing bytes")
	}
	if !sawReadings {
		return bad("no readings array")
	}
	if d.prefix && len(gw) > 0 {
		var buf [128]byte
		for i := base; i < len(out); i++ {
			p := append(append(append(buf[:0], gw...), '/'), out[i].Sensor...)
			out[i].Sensor = d.in.bytes(p)
		}
	}
	if first != nil {
		first.Skipped = skipped
		return out, first
	}
	if len(out) == base {
		return out, newErr("msgpack", ReasonNoMetrics, "empty batch", -1)
	}
	return out, nil
}

// readReading reads one msgp-encoded ingest.Reading, returning its string
// fields as slices of b (not yet interned).
func readReading(b []byte, r *ingest.Reading) (rest, sensor, metric, unit []byte, err error) {
	n, b, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return b, nil, nil, nil, err
	}
	for ; n > 0; n-- {
		var key []byte
		if key, b, err = msgp.ReadMapKeyZC(b); err != nil {
			return b, nil, nil, nil, err
		}
		switch string(key) {
		case "s":
			sensor, b, err = msgp.ReadStringZC(b)
		case "m":
			metric, b, err = msgp.ReadStringZC(b)
		case "u":
			unit, b, err = msgp.ReadStringZC(b)
		case "v":
			r.Value, b, err = msgp.ReadFloat64Bytes(b)
		case "t":
			r.Time, b, err = msgp.ReadInt64Bytes(b)
		case "a":
			_, b, err = msgp.ReadInt64Bytes(b) // replaced by our arrival
		case "o":
			r.OrigTime, b, err = msgp.ReadInt64Bytes(b)
		case "q":
			var q uint16
			q, b, err = msgp.ReadUint16Bytes(b)
			r.Quality = ingest.Quality(q)
		default:
			b, err = msgp.Skip(b)
		}
		if err != nil {
			return b, nil, nil, nil, err
		}
	}
	return b, sensor, metric, unit, nil
}

// lastString remembers the last interned string, to skip the interner's map
// for runs of equal values.
type lastString struct {
	b []byte
	s string
}

func (l *lastString) get(in *interner, b []byte) string {
	if l.b != nil && string(b) == string(l.b) {
		return l.s
	}
	l.b, l.s = b, in.bytes(b)
	return l.s
}
