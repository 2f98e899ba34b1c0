package state

import (
	"encoding/binary"

	"github.com/sensorgate/sensorgate/ingest"
)

// Memory is what a deadband, rate or dedup stage remembers of one route.
type Memory struct {
	HasLast bool
	LastV   float64
	LastT   int64
	Ring    []Seen // dedup: the last readings, capacity the stage's size
	RingPos int
}

// Seen is one (event time, value) pair a dedup stage remembers.
type Seen struct {
	T int64
	V float64
}

// AppendMemory appends m (ring: a dedup stage's).
func AppendMemory(b []byte, m *Memory, ring bool) []byte {
	if ring {
		b = binary.AppendUvarint(b, uint64(m.RingPos))
		b = binary.AppendUvarint(b, uint64(len(m.Ring)))
		for _, p := range m.Ring {
			b = binary.AppendVarint(b, p.T)
			b = AppendFloat(b, p.V)
		}
		return b
	}
	b = AppendBool(b, m.HasLast)
	b = AppendFloat(b, m.LastV)
	return binary.AppendVarint(b, m.LastT)
}

// DecodeMemory reads into m what AppendMemory wrote. A ring longer than
// the capacity of m.Ring (the stage's size went down) is left out.
func DecodeMemory(d *Dec, m *Memory, ring bool) {
	if !ring {
		m.HasLast, m.LastV, m.LastT = d.Bool(), d.Float(), d.Varint()
		return
	}
	pos, n := int(d.Uvarint()), d.Uvarint()
	if n > uint64(len(d.B)) {
		d.fail()
		return
	}
	var r []Seen
	for i := uint64(0); i < n && d.Err == nil; i++ {
		r = append(r, Seen{d.Varint(), d.Float()})
	}
	if len(r) <= cap(m.Ring) {
		m.Ring, m.RingPos = append(m.Ring[:0], r...), 0
		if pos < len(r) {
			m.RingPos = pos
		}
	}
}

// Inputs are the latest values of a derive stage's inputs for one sensor.
type Inputs struct {
	Vals    []float64
	Times   []int64
	Quality []ingest.Quality
	Have    []bool
}

// NewInputs returns Inputs for n inputs.
func NewInputs(n int) Inputs {
	return Inputs{Vals: make([]float64, n), Times: make([]int64, n), Quality: make([]ingest.Quality, n), Have: make([]bool, n)}
}

// AppendInputs appends in.
func AppendInputs(b []byte, in *Inputs) []byte {
	b = binary.AppendUvarint(b, uint64(len(in.Vals)))
	for i := range in.Vals {
		b = AppendBool(b, in.Have[i])
		b = AppendFloat(b, in.Vals[i])
		b = binary.AppendVarint(b, in.Times[i])
		b = binary.AppendUvarint(b, uint64(in.Quality[i]))
	}
	return b
}

// DecodeInputs reads what AppendInputs wrote; ok=false if it is not for n
// inputs.
func DecodeInputs(d *Dec, n int) (in Inputs, ok bool) {
	if int(d.Uvarint()) != n {
		return in, false
	}
	in = NewInputs(n)
	for i := range n {
		in.Have[i], in.Vals[i], in.Times[i], in.Quality[i] = d.Bool(), d.Float(), d.Varint(), ingest.Quality(d.Uvarint())
	}
	return in, true
}

// Alert is the state of one alert rule for one sensor and metric.
type Alert struct {
	Pending    bool
	PendSince  int64
	Active     bool
	Since      int64
	Seq        uint32
	LastNotify int64
	Seen       bool
	LastT      int64 // newest event time evaluated
}

// AppendAlert appends a.
func AppendAlert(b []byte, a *Alert) []byte {
	b = append(b, Bits(a.Pending, a.Active, a.Seen))
	for _, v := range [...]int64{a.PendSince, a.Since, a.LastNotify, a.LastT} {
		b = binary.AppendVarint(b, v)
	}
	return binary.AppendUvarint(b, uint64(a.Seq))
}

// DecodeAlert reads what AppendAlert wrote.
func DecodeAlert(d *Dec) (a Alert) {
	fl := d.Byte()
	a.Pending, a.Active, a.Seen = fl&1 != 0, fl&2 != 0, fl&4 != 0
	a.PendSince, a.Since, a.LastNotify, a.LastT = d.Varint(), d.Varint(), d.Varint(), d.Varint()
	a.Seq = uint32(d.Uvarint())
	return a
}
