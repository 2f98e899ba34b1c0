package simulator

// Sampler draws the samples of one simulated sensor in sequence, with the
// same values and faults as the in-process [Simulator] but without a
// schedule: the load generator (simulator/load) asks for the next sample
// when it is due to publish one. A Sampler is not safe for concurrent use.
type Sampler struct {
	s *simSensor
	c counters
}

// Metric names one metric of a Sampler and its unit.
type Metric struct {
	Name, Unit string
}

// Sample is the outcome of one Sampler.Next.
type Sample struct {
	// Values holds one value per metric, in [Sampler.Metrics] order. It is
	// the Sampler's buffer: valid until the next call, and the caller may
	// change it (round it) in between.
	Values []float64
	// Drop: a dropout fault, nothing is to be sent for this sample.
	Drop bool
	// Dup: a duplicate fault, the sample is to be sent twice.
	Dup bool
	// Lag is how many ns to subtract from the event time (an out-of-order
	// fault), 0 otherwise.
	Lag int64
}

// SamplerCounts are a Sampler's sensor-wide fault counts.
type SamplerCounts struct {
	Dropouts, OutOfOrder, Duplicates uint64
}

// NewSampler returns the sampler of sensor id. cfg is used as given (call
// its Defaults and Validate first); its random streams derive from seed
// and id exactly as in [New], so the same seed gives the same values.
func NewSampler(seed int64, id string, cfg SensorConfig) *Sampler {
	return &Sampler{s: newSimSensor(seed, id, cfg)}
}

// ID returns the sensor id.
func (p *Sampler) ID() string { return p.s.id }

// Metrics returns the metrics in name order (a fresh slice).
func (p *Sampler) Metrics() []Metric {
	m := make([]Metric, len(p.s.series))
	for i, se := range p.s.series {
		m[i] = Metric{Name: se.name, Unit: se.unit}
	}
	return m
}

// Next draws the next sample.
func (p *Sampler) Next() Sample {
	o := p.s.sample(&p.c)
	return Sample{Values: p.s.vals, Drop: o.drop, Dup: o.dup, Lag: o.lag}
}

// Counts returns the fault counts so far.
func (p *Sampler) Counts() SamplerCounts {
	return SamplerCounts{Dropouts: p.c.dropouts.Load(), OutOfOrder: p.c.outOfOrder.Load(), Duplicates: p.c.duplicates.Load()}
}
