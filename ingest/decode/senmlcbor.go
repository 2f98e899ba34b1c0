package decode

import (
	"encoding/binary"
	"math"

	"github.com/sensorgate/sensorgate/ingest"
)

// SenML CBOR labels (RFC 8428 section 6, table 4).
const (
	cborBver = -1
	cborBn   = -2
	cborBt   = -3
	cborBu   = -4
	cborBv   = -5
	cborBs   = -6
	cborN    = 0
	cborU    = 1
	cborV    = 2
	cborVs   = 3
	cborVb   = 4
	cborS    = 5
	cborT    = 6
	cborUt   = 7
	cborVd   = 8
)

// cborItem is one decoded CBOR head.
type cborItem struct {
	major byte
	arg   uint64 // value, length or count
	indef bool
	info  byte
}

// cborHead reads the head of the item at b[i].
func cborHead(b []byte, i int) (it cborItem, next int, ok bool) {
	if i >= len(b) {
		return it, i, false
	}
	it.major, it.info = b[i]>>5, b[i]&0x1f
	i++
	switch {
	case it.info < 24:
		it.arg = uint64(it.info)
	case it.info == 24:
		if i+1 > len(b) {
			return it, i, false
		}
		it.arg, i = uint64(b[i]), i+1
	case it.info == 25:
		if i+2 > len(b) {
			return it, i, false
		}
		it.arg, i = uint64(binary.BigEndian.Uint16(b[i:])), i+2
	case it.info == 26:
		if i+4 > len(b) {
			return it, i, false
		}
		it.arg, i = uint64(binary.BigEndian.Uint32(b[i:])), i+4
	case it.info == 27:
		if i+8 > len(b) {
			return it, i, false
		}
		it.arg, i = binary.BigEndian.Uint64(b[i:]), i+8
	case it.info == 31 && it.major >= 2 && it.major <= 5:
		it.indef = true
	case it.info == 31 && it.major == 7:
		// break: only valid inside an indefinite container, callers check
	default:
		return it, i, false
	}
	return it, i, true
}

func isBreak(b []byte, i int) bool { return i < len(b) && b[i] == 0xff }

// cborSkip skips one item.
func cborSkip(b []byte, i, depth int) (int, bool) {
	if depth > maxDepth {
		return i, false
	}
	it, i, ok := cborHead(b, i)
	if !ok {
		return i, false
	}
	switch it.major {
	case 0, 1:
		return i, true
	case 2, 3:
		if it.indef {
			for !isBreak(b, i) {
				c, n, ok := cborHead(b, i)
				if !ok || c.major != it.major || c.indef || c.arg > uint64(len(b)-n) {
					return i, false
				}
				i = n + int(c.arg)
			}
			return i + 1, true
		}
		if it.arg > uint64(len(b)-i) {
			return i, false
		}
		return i + int(it.arg), true
	case 4, 5:
		per := 1
		if it.major == 5 {
			per = 2
		}
		if it.indef {
			for !isBreak(b, i) {
				for range per {
					if i, ok = cborSkip(b, i, depth+1); !ok {
						return i, false
					}
				}
			}
			return i + 1, true
		}
		if it.arg > uint64(len(b)-i) {
			return i, false
		}
		for n := it.arg * uint64(per); n > 0; n-- {
			if i, ok = cborSkip(b, i, depth+1); !ok {
				return i, false
			}
		}
		return i, true
	case 6:
		return cborSkip(b, i, depth+1)
	default: // 7
		if it.info == 31 {
			return i, false // stray break
		}
		return i, true
	}
}

// cborNumber converts an int or float item to float64.
func cborNumber(it cborItem) (float64, bool) {
	switch it.major {
	case 0:
		return float64(it.arg), true
	case 1:
		return -1 - float64(it.arg), true
	case 7:
		switch it.info {
		case 25:
			return halfToFloat(uint16(it.arg)), true
		case 26:
			return float64(math.Float32frombits(uint32(it.arg))), true
		case 27:
			return math.Float64frombits(it.arg), true
		}
	}
	return 0, false
}

func halfToFloat(h uint16) float64 {
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	var v float64
	switch exp {
	case 0:
		v = math.Ldexp(mant, -24)
	case 31:
		if mant == 0 {
			v = math.Inf(1)
		} else {
			v = math.NaN()
		}
	default:
		v = math.Ldexp(mant+1024, exp-25)
	}
	if h&0x8000 != 0 {
		v = -v
	}
	return v
}

// DecodeCBOR appends the readings of a SenML CBOR pack (RFC 8428 section 6:
// an array of maps with the integer labels of table 4) to out, with the
// same resolution and mapping as [SenMLDecoder.Decode]. Indefinite-length
// text strings in names and units are rejected (malformed).
func (d *SenMLDecoder) DecodeCBOR(topic string, payload []byte, arrival int64, out []ingest.Reading) ([]ingest.Reading, error) {
	base := len(out)
	b := payload
	arr, i, ok := cborHead(b, 0)
	if !ok || arr.major != 4 {
		return out, newErr("senml_cbor", ReasonMalformed, "a SenML pack is a CBOR array", 0)
	}
	if !arr.indef && arr.arg > uint64(len(b)) {
		return out, newErr("senml_cbor", ReasonMalformed, "array longer than the payload", 0)
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
	for n := arr.arg; arr.indef || n > 0; n-- {
		if arr.indef && isBreak(b, i) {
			i++
			break
		}
		var rec senmlRec
		if i, ok = d.cborRecord(b, i, &bs, &rec); !ok {
			return out[:base], newErr("senml_cbor", ReasonMalformed, "bad record", i)
		}
		if rec.mustUnderstandUnknown {
			return out[:base], newErr("senml_cbor", ReasonMalformed, "unknown must-understand label", i)
		}
		var e *Error
		if out, e = d.emit(&bs, &rec, topicSensor, arrival, out, &cache); e != nil {
			e.Format = "senml_cbor"
			skipped++
			if first == nil {
				first = e
			}
		}
	}
	if i != len(b) {
		return out[:base], newErr("senml_cbor", ReasonMalformed, "trailing data", i)
	}
	if first != nil {
		first.Skipped = skipped
		return out, first
	}
	if len(out) == base {
		return out, newErr("senml_cbor", ReasonNoMetrics, "no numeric records", -1)
	}
	return out, nil
}

// cborRecord parses one record map.
func (d *SenMLDecoder) cborRecord(b []byte, i int, bs *senmlBase, r *senmlRec) (int, bool) {
	m, i, ok := cborHead(b, i)
	if !ok || m.major != 5 {
		return i, false
	}
	if !m.indef && m.arg > uint64(len(b)) {
		return i, false
	}
	for n := m.arg; m.indef || n > 0; n-- {
		if m.indef && isBreak(b, i) {
			return i + 1, true
		}
		k, next, ok := cborHead(b, i)
		if !ok {
			return i, false
		}
		label := int64(0)
		switch k.major {
		case 0:
			if k.arg > 1<<31 {
				label = 1 << 31
			} else {
				label = int64(k.arg)
			}
		case 1:
			if k.arg > 1<<31 {
				label = -1 << 31
			} else {
				label = -1 - int64(k.arg)
			}
		case 3:
			// A text label: an extension; one ending in '_' must be
			// understood (section 4.4).
			if k.indef || k.arg > uint64(len(b)-next) {
				return i, false
			}
			if k.arg > 0 && b[next+int(k.arg)-1] == '_' {
				r.mustUnderstandUnknown = true
			}
			if i, ok = cborSkip(b, i, 1); !ok {
				return i, false
			}
			if i, ok = cborSkip(b, i, 1); !ok {
				return i, false
			}
			continue
		default:
			return i, false
		}
		i = next
		v, vnext, ok := cborHead(b, i)
		if !ok {
			return i, false
		}
		text := func() ([]byte, bool) {
			if v.major != 3 || v.indef || v.arg > uint64(len(b)-vnext) {
				return nil, false
			}
			return b[vnext : vnext+int(v.arg)], true
		}
		num, isNum := cborNumber(v)
		bad := false
		switch label {
		case cborBn:
			bs.bn, ok = text()
			bs.bnEscaped, bad = false, !ok
		case cborBt:
			bs.bt, bs.hasBt, bad = num, true, !isNum
		case cborBu:
			bs.bu, ok = text()
			bad = !ok
		case cborBv:
			bs.bv, bs.hasBv, bad = num, true, !isNum
		case cborBs:
			bs.bs, bs.hasBs, bad = num, true, !isNum
		case cborBver, cborUt:
			bad = !isNum
		case cborN:
			r.n, ok = text()
			r.hasN, bad = true, !ok
		case cborU:
			r.u, ok = text()
			r.hasU, bad = true, !ok
		case cborV:
			r.v, r.hasV, bad = num, true, !isNum
		case cborS:
			r.s, r.hasS, bad = num, true, !isNum
		case cborT:
			r.t, r.hasT, bad = num, true, !isNum
		case cborVs:
			r.vs, ok = text()
			r.hasVS, bad = true, !ok
		case cborVb:
			r.hasVB = true
			switch {
			case v.major == 7 && v.info == 20:
				r.vb = false
			case v.major == 7 && v.info == 21:
				r.vb = true
			default:
				bad = true
			}
		case cborVd:
			r.hasVD, bad = true, v.major != 2
		}
		if bad {
			r.malformedValueForLabel = true
		}
		if i, ok = cborSkip(b, i, 1); !ok {
			return i, false
		}
	}
	return i, true
}
