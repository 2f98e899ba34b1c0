package ingest

import (
	"context"
	"time"
)

//go:generate go tool msgp -tests=true

// Quality is a set of flags describing how far a reading can be trusted.
// The zero value means nothing is known to be wrong with it.
type Quality uint16

const (
	// QualityClockUnsynced: the gateway's clock had never been synchronised
	// when the reading arrived, so its arrival time (and an event time taken
	// from it) may be decades off.
	QualityClockUnsynced Quality = 1 << iota
	// QualityFutureTime: the payload's timestamp lay further in the future
	// than the configured skew allows; Time holds the arrival time and
	// OrigTime the payload's value.
	QualityFutureTime
	// QualityStaleTime: the payload's timestamp lay before the gateway's clock
	// was ever synchronised (or before a sane epoch); treated like
	// QualityFutureTime.
	QualityStaleTime
	// QualityOutOfRange: the value lay outside the sensor's configured
	// physical range. Readings with this flag are normally rejected at the
	// door; the flag exists for policies that keep them.
	QualityOutOfRange
	// QualityNoEventTime: the payload carried no timestamp; Time is the
	// arrival time.
	QualityNoEventTime
	// QualityCalibrated: a calibration or unit conversion stage changed Value.
	QualityCalibrated
	// QualityDerived: the reading was computed from other readings.
	QualityDerived
	// QualityLate: the reading arrived after its window had been emitted.
	QualityLate
)

// Has reports whether all flags in f are set in q.
func (q Quality) Has(f Quality) bool { return q&f == f }

// Reading is one measured value. It is deliberately flat: strings and
// numbers only, with times as Unix nanoseconds.
type Reading struct {
	Sensor string  `msg:"s"`
	Metric string  `msg:"m"`
	Value  float64 `msg:"v"`
	Unit   string  `msg:"u,omitempty"`
	// Time is the event time in Unix nanoseconds: when the value was
	// measured, taken from the payload when it has one, else the arrival time.
	Time int64 `msg:"t"`
	// Arrival is when the gateway received the reading, Unix nanoseconds.
	Arrival int64 `msg:"a"`
	// OrigTime keeps a payload timestamp that was not trusted (see
	// QualityFutureTime); zero otherwise.
	OrigTime int64   `msg:"o,omitempty"`
	Quality  Quality `msg:"q,omitempty"`
	// Receipt is set on the last reading of a durable input (see Receipt);
	// it is not encoded and does not leave the process.
	Receipt *Receipt `msg:"-"`
	// More is set on every reading of a durable input but its last: the
	// engine does not checkpoint between them, so an input redelivered
	// after a crash is either wholly in the last checkpoint or not at all.
	More bool `msg:"-"`
}

// EventTime returns Time as a time.Time.
func (r *Reading) EventTime() time.Time { return time.Unix(0, r.Time) }

// ReadingBatch is a batch of readings as one sensorgate forwards them to
// another (the raw lane, and the msgpack ingest decoder).
type ReadingBatch struct {
	Gateway  string    `msg:"g,omitempty"`
	Readings []Reading `msg:"r"`
}

// Source turns the outside world into readings.
//
// Run sends readings on out until ctx is cancelled, then returns nil, or
// returns an error when the source cannot go on at all. Transient failures (a
// broker that went away, a chip that stopped answering) are retried inside
// Run and counted, never returned. Run must not close out. Every send must
// also watch ctx.Done() so that a full channel never blocks shutdown.
type Source interface {
	Run(ctx context.Context, out chan<- Reading) error
}

// SourceFunc adapts a function to a Source.
type SourceFunc func(ctx context.Context, out chan<- Reading) error

// Run calls f.
func (f SourceFunc) Run(ctx context.Context, out chan<- Reading) error { return f(ctx, out) }
