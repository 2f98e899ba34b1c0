// Package alertfmt makes the ids and default messages of the engine's alerts.
package alertfmt

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"strconv"

	"github.com/sensorgate/sensorgate/ingest"
)

// Message is the default message of an alert (high: an above rule).
func Message(a *ingest.Alert, high bool) string {
	dir := "above"
	if high == (a.State == ingest.AlertClear) {
		dir = "below"
	}
	what := "fired"
	if a.State == ingest.AlertClear {
		what = "cleared"
	}
	unit := ""
	if a.Unit != "" {
		unit = " " + a.Unit
	}
	return fmt.Sprintf("%s %s on %s: %s %s%s (%s %s)", a.Rule, what, a.Sensor, a.Metric,
		strconv.FormatFloat(a.Value, 'g', 6, 64), unit, dir, strconv.FormatFloat(a.Threshold, 'g', 6, 64))
}

// ID is stable for one firing of rule on sensor/metric.
func ID(rule, sensor, metric string, since int64) string {
	h := fnv.New64a()
	for _, s := range [...]string{"alert", rule, sensor, metric} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(since))
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], h.Sum64())
	return hex.EncodeToString(b[:])
}
