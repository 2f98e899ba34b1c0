package simulator

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"sync/atomic"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
)

// Random streams. Every sensor and every metric has its own streams, seeded
// from the simulator's seed and their names, so the values of one metric do
// not depend on how many other sensors there are or in which order the
// scheduler visits them.
const (
	streamValues = iota + 1
	streamFaults
	streamSchedule
)

func newRand(seed int64, stream uint64, names ...string) *rand.Rand {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], stream)
	h.Write(b[:])
	for _, n := range names {
		h.Write([]byte(n))
		h.Write([]byte{0})
	}
	return rand.New(rand.NewPCG(uint64(seed), h.Sum64()))
}

// counters are the fault and volume counters shared by the in-process
// simulator and the load generator.
type counters struct {
	samples    atomic.Uint64
	readings   atomic.Uint64
	spikes     atomic.Uint64
	dropouts   atomic.Uint64
	stuck      atomic.Uint64
	outOfOrder atomic.Uint64
	duplicates atomic.Uint64
	malformed  atomic.Uint64
}

// series generates the values of one metric of one sensor, sample by sample.
type series struct {
	name     string
	unit     string
	sig      Signal
	faults   Faults
	interval int64 // ns
	period   int64 // ns
	rng      *rand.Rand
	frng     *rand.Rand
	spike    float64

	k         uint64 // index of the next sample
	walk      float64
	last      float64
	stuckLeft int
}

func newSeries(seed int64, sensor, metric string, sig Signal, f Faults, interval time.Duration) *series {
	return &series{
		name:     metric,
		unit:     sig.Unit,
		sig:      sig,
		faults:   f,
		interval: int64(interval),
		period:   int64(sig.Period),
		rng:      newRand(seed, streamValues, sensor, metric),
		frng:     newRand(seed, streamFaults, sensor, metric),
		spike:    f.spikeSize(sig),
		walk:     sig.Base,
	}
}

// phase returns (k·interval mod period)/period in [0, 1) and the number of
// whole periods, in integer nanoseconds so that step edges are exact.
func (s *series) phase(k uint64) (float64, uint64) {
	t := k * uint64(s.interval)
	p := uint64(s.period)
	return float64(t%p) / float64(p), t / p
}

// clean returns the value of sample k (which must be s.k) without faults
// other than drift.
func (s *series) clean(k uint64) float64 {
	g := &s.sig
	var v float64
	switch g.Model {
	case ModelConstant:
		v = g.Base
	case ModelSine:
		f, _ := s.phase(k)
		v = g.Base + g.Amplitude*math.Sin(2*math.Pi*f)
	case ModelStep:
		if _, n := s.phase(k); n%2 == 1 {
			v = g.Base + g.Amplitude
		} else {
			v = g.Base
		}
	case ModelSawtooth:
		f, _ := s.phase(k)
		v = g.Base + g.Amplitude*f
	case ModelRandomWalk:
		if k > 0 && g.Step > 0 {
			s.walk += g.Step * s.rng.NormFloat64()
			if g.Max > g.Min {
				if s.walk > g.Max {
					s.walk = 2*g.Max - s.walk
				}
				if s.walk < g.Min {
					s.walk = 2*g.Min - s.walk
				}
				s.walk = min(max(s.walk, g.Min), g.Max)
			}
		}
		v = s.walk
	}
	if g.Noise > 0 {
		v += g.Noise * s.rng.NormFloat64()
	}
	if g.Max > g.Min {
		v = min(max(v, g.Min), g.Max)
	}
	if s.faults.Drift != 0 {
		v += s.faults.Drift * float64(k*uint64(s.interval)) / float64(time.Hour)
	}
	return v
}

// next returns the value of the next sample with the per-metric faults
// (stuck, spike, malformed) applied, and advances.
func (s *series) next(c *counters) float64 {
	k := s.k
	s.k++
	v := s.clean(k)
	f := &s.faults
	if f.StuckProb > 0 && k > 0 {
		if s.stuckLeft > 0 {
			s.stuckLeft--
			v = s.last
			c.stuck.Add(1)
		} else if s.frng.Float64() < f.StuckProb {
			s.stuckLeft = f.StuckLen - 1
			v = s.last
			c.stuck.Add(1)
		}
	}
	s.last = v
	if f.SpikeProb > 0 && s.frng.Float64() < f.SpikeProb {
		if s.frng.IntN(2) == 0 {
			v += s.spike
		} else {
			v -= s.spike
		}
		c.spikes.Add(1)
	}
	if f.MalformedProb > 0 && s.frng.Float64() < f.MalformedProb {
		switch s.frng.IntN(3) {
		case 0:
			v = math.NaN()
		case 1:
			v = math.Inf(1)
		default:
			v = math.Inf(-1)
		}
		c.malformed.Add(1)
	}
	return v
}

// simSensor is one simulated sensor: its metrics in name order, its
// schedule and the sensor-wide faults (dropout, out of order, duplicate).
type simSensor struct {
	id       string
	cfg      SensorConfig
	series   []*series
	vals     []float64
	sched    *rand.Rand
	frng     *rand.Rand
	interval int64

	k        uint64 // index of the next sample
	anchor   int64  // Unix ns of sample 0's nominal time
	due      int64  // Unix ns when sample k is due
	dropLeft int
	discard  counters
	batch    ingest.ReadingBatch // reused by the msgpack payload encoder
}

func newSimSensor(seed int64, id string, cfg SensorConfig) *simSensor {
	names := make([]string, 0, len(cfg.Metrics))
	for n := range cfg.Metrics {
		names = append(names, n)
	}
	sort.Strings(names)
	s := &simSensor{
		id:       id,
		cfg:      cfg,
		vals:     make([]float64, len(names)),
		sched:    newRand(seed, streamSchedule, id),
		frng:     newRand(seed, streamFaults, id),
		interval: int64(cfg.Interval),
	}
	for _, n := range names {
		s.series = append(s.series, newSeries(seed, id, n, cfg.Metrics[n], cfg.Faults, cfg.Interval))
	}
	return s
}

// start anchors the schedule at now plus a seeded offset in [0, interval),
// so that many sensors do not all sample at the same instant.
func (s *simSensor) start(now int64) {
	s.anchor = now + s.sched.Int64N(s.interval)
	s.due = s.anchor
	s.k = 0
}

// advance moves the schedule to the next sample: nominal time plus jitter
// (which does not accumulate), never before the previous sample.
func (s *simSensor) advance() {
	s.k++
	due := s.anchor + int64(s.k)*s.interval
	if j := int64(s.cfg.Jitter); j > 0 {
		due += s.sched.Int64N(2*j+1) - j
	}
	s.due = max(due, s.due)
}

// outcome of one sample.
type outcome struct {
	drop bool
	dup  bool
	lag  int64 // ns to subtract from the event time
}

// sample computes the next sample's values into s.vals and its sensor-wide
// faults. The values of every metric advance even during a dropout, so
// sample k always has the same values.
func (s *simSensor) sample(c *counters) outcome {
	c.samples.Add(1)
	var o outcome
	f := &s.cfg.Faults
	if f.DropoutProb > 0 {
		if s.dropLeft > 0 {
			s.dropLeft--
			o.drop = true
		} else if s.frng.Float64() < f.DropoutProb {
			s.dropLeft = f.DropoutLen - 1
			o.drop = true
		}
	}
	vc := c
	if o.drop {
		c.dropouts.Add(1)
		vc = &s.discard // faults of values never sent are not counted
	}
	for i, se := range s.series {
		s.vals[i] = se.next(vc)
	}
	if f.OutOfOrderProb > 0 && s.frng.Float64() < f.OutOfOrderProb && f.OutOfOrderLag > 0 {
		o.lag = 1 + s.frng.Int64N(int64(f.OutOfOrderLag))
		if !o.drop {
			c.outOfOrder.Add(1)
		}
	}
	if f.DuplicateProb > 0 && s.frng.Float64() < f.DuplicateProb {
		o.dup = true
		if !o.drop {
			c.duplicates.Add(1)
		}
	}
	return o
}
