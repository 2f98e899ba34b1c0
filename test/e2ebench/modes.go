package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// mode is one entry of --qos: how the simulator publishes, how the gateway
// subscribes and how the point's mosquitto is set up. It is comparable, so
// points are grouped by it directly.
type mode struct {
	QoS int `json:"qos"`
	// Durable is a QoS 1 subscription left at the gateway's default
	// (durable); a non-durable QoS 1 point writes durable: false.
	Durable bool `json:"durable,omitempty"`
	// InFlight, when > 0, is mosquitto's max_inflight_messages on the
	// point's broker and the gateway source's inflight; 0 leaves
	// mosquitto at its default (20) and the gateway's key unset.
	InFlight int `json:"inflight,omitempty"`
}

// String is the mode as the tables show it: "0", "1", "1 durable",
// "1 durable @1000".
func (m mode) String() string {
	s := strconv.Itoa(m.QoS)
	if m.Durable {
		s += " durable"
	}
	if m.InFlight > 0 {
		s += " @" + strconv.Itoa(m.InFlight)
	}
	return s
}

// token is the mode as --qos spells it: "0", "1", "1d", "1d@1000".
func (m mode) token() string {
	s := strconv.Itoa(m.QoS)
	if m.Durable {
		s += "d"
	}
	if m.InFlight > 0 {
		s += "@" + strconv.Itoa(m.InFlight)
	}
	return s
}

// brokerKey is what the broker-alone ceiling depends on: the bare
// subscriber acknowledges at once, so durability does not enter it.
func (m mode) brokerKey() mode { return mode{QoS: m.QoS, InFlight: m.InFlight} }

// maxInFlight bounds @N: the gateway's inflight key takes 1 to 65535 (the
// MQTT packet id space).
const maxInFlight = 65535

func parseModes(s string) ([]mode, error) {
	var out []mode
	seen := map[mode]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		var m mode
		tok, inflight, hasAt := strings.Cut(f, "@")
		if hasAt {
			n, err := strconv.Atoi(inflight)
			if err != nil || n < 1 || n > maxInFlight {
				return nil, fmt.Errorf("--qos: %q: want @N with N in 1..%d (mosquitto's max_inflight_messages)", f, maxInFlight)
			}
			m.InFlight = n
		}
		switch tok {
		case "0":
		case "1":
			m.QoS = 1
		case "1d":
			m.QoS, m.Durable = 1, true
		default:
			return nil, fmt.Errorf("--qos: %q: want 0, 1 or 1d, optionally with @N", f)
		}
		if seen[m] {
			continue
		}
		seen[m] = true
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, errors.New("--qos: empty")
	}
	return out, nil
}
