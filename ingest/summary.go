package ingest

//go:generate go tool msgp -tests=true

import (
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
	"math"
)

// Quantile is one estimated quantile of a window's values.
type Quantile struct {
	Q     float64 `msg:"q" json:"q"`
	Value float64 `msg:"v" json:"v"`
}

// Summary is what a window emits for one key: the aggregates of the readings
// whose event time fell in [Start, End).
//
// Summaries are mergeable: Count, Sum, Min, Max, M2 (with Mean), First/Last
// (with their times), the sketch and the late/rejected counts combine
// exactly, so adjacent windows can be rolled up into a coarser one.
type Summary struct {
	// ID is stable: the same key and window always give the same ID, so
	// upstream can de-duplicate re-deliveries. A corrected summary keeps
	// the ID and carries a higher Revision.
	ID       string `msg:"id" json:"id"`
	Revision uint32 `msg:"rev,omitempty" json:"rev,omitempty"`
	// Window names the rule's window that produced this summary.
	Window string `msg:"w,omitempty" json:"window,omitempty"`
	Sensor string `msg:"s" json:"sensor"`
	Metric string `msg:"m" json:"metric"`
	Unit   string `msg:"u,omitempty" json:"unit,omitempty"`
	// Group is set when the window is keyed by a tag instead of a sensor,
	// for example "zone=north"; Sensor is then empty.
	Group string `msg:"grp,omitempty" json:"group,omitempty"`
	// Start and End bound the window, Unix nanoseconds, End exclusive.
	Start int64 `msg:"st" json:"start"`
	End   int64 `msg:"en" json:"end"`

	Count  uint64  `msg:"n" json:"count"`
	Sum    float64 `msg:"sum" json:"sum"`
	Min    float64 `msg:"min" json:"min"`
	Max    float64 `msg:"max" json:"max"`
	Mean   float64 `msg:"mean" json:"mean"`
	M2     float64 `msg:"m2,omitempty" json:"-"`
	Stddev float64 `msg:"sd,omitempty" json:"stddev,omitempty"`

	First     float64 `msg:"f,omitempty" json:"first,omitempty"`
	Last      float64 `msg:"l,omitempty" json:"last,omitempty"`
	FirstTime int64   `msg:"ft,omitempty" json:"first_time,omitempty"`
	LastTime  int64   `msg:"lt,omitempty" json:"last_time,omitempty"`

	// TWA is the time-weighted average over the window.
	TWA float64 `msg:"twa,omitempty" json:"twa,omitempty"`
	// Delta and Rate are set for counter metrics (reset-aware).
	Delta float64 `msg:"d,omitempty" json:"delta,omitempty"`
	Rate  float64 `msg:"r,omitempty" json:"rate,omitempty"`

	Quantiles []Quantile `msg:"qs,omitempty" json:"quantiles,omitempty"`
	// Sketch is the serialised quantile sketch, kept so that summaries can
	// be merged; not sent upstream as JSON.
	Sketch []byte `msg:"sk,omitempty" json:"-"`

	// Late counts readings that arrived after the window was emitted and
	// were dropped (or, for a revision, folded in); Rejected those refused
	// by validation stages.
	Late     uint64 `msg:"late,omitempty" json:"late,omitempty"`
	Rejected uint64 `msg:"rej,omitempty" json:"rejected,omitempty"`
	// Quality is the union of the quality flags of the readings counted.
	Quality Quality `msg:"q,omitempty" json:"quality,omitempty"`

	// Meta is the sensor's static metadata from the config (location,
	// tags), attached here rather than carried by every reading.
	Meta map[string]string `msg:"meta,omitempty" json:"meta,omitempty"`
}

// SummaryID returns the stable id of the window [start, end) of a key. It is
// a 64-bit FNV-1a hash in hex: stable across restarts, architectures and
// versions, because upstream de-duplicates on it.
func SummaryID(window, sensor, group, metric string, start, end int64) string {
	h := fnv.New64a()
	var sep = []byte{0}
	for _, s := range [...]string{window, sensor, group, metric} {
		h.Write([]byte(s))
		h.Write(sep)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(start))
	binary.BigEndian.PutUint64(b[8:], uint64(end))
	h.Write(b[:])
	var out [8]byte
	binary.BigEndian.PutUint64(out[:], h.Sum64())
	return hex.EncodeToString(out[:])
}

// Alert is emitted by a threshold rule when its condition starts to hold
// (State "fire") and when it stops (State "clear"), and again every re-notify
// interval while it holds.
type Alert struct {
	// ID is stable for one firing: the clear and re-notifications of a
	// firing carry the same ID with a different State/Seq.
	ID       string  `msg:"id" json:"id"`
	Rule     string  `msg:"rule" json:"rule"`
	Sensor   string  `msg:"s" json:"sensor"`
	Metric   string  `msg:"m" json:"metric"`
	Unit     string  `msg:"u,omitempty" json:"unit,omitempty"`
	State    string  `msg:"st" json:"state"`
	Severity string  `msg:"sev,omitempty" json:"severity,omitempty"`
	Value    float64 `msg:"v" json:"value"`
	// Threshold is the limit that was crossed.
	Threshold float64 `msg:"th" json:"threshold"`
	// Since is when the condition started to hold (event time, Unix ns);
	// Time is the event time of the reading that caused this alert.
	Since int64  `msg:"since" json:"since"`
	Time  int64  `msg:"t" json:"time"`
	Seq   uint32 `msg:"seq,omitempty" json:"seq,omitempty"`
	// Message is a human-readable line for dashboards and phones.
	Message string            `msg:"msg,omitempty" json:"message,omitempty"`
	Meta    map[string]string `msg:"meta,omitempty" json:"meta,omitempty"`
}

// Alert states.
const (
	AlertFire  = "fire"
	AlertClear = "clear"
)

// finite reports whether v is neither NaN nor ±Inf.
func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// Finite reports whether v is neither NaN nor ±Inf.
func Finite(v float64) bool { return finite(v) }
