package drivers

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/spi"

	"github.com/sensorgate/sensorgate/drivers/ads1115"
	"github.com/sensorgate/sensorgate/drivers/bme280"
	"github.com/sensorgate/sensorgate/drivers/chip"
	"github.com/sensorgate/sensorgate/drivers/chiperr"
	"github.com/sensorgate/sensorgate/drivers/ds18b20"
	"github.com/sensorgate/sensorgate/drivers/pulse"
	"github.com/sensorgate/sensorgate/drivers/scd4x"
	"github.com/sensorgate/sensorgate/drivers/sht3x"
	"github.com/sensorgate/sensorgate/drivers/sht4x"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/internal/backoff"
)

// Opener opens buses and pins. The command passes a HostOpener (real
// hardware through periph's registries); tests pass fakes built on periph's
// i2ctest and gpiotest.
type Opener interface {
	OpenI2C(bus string) (i2c.BusCloser, error)
	OpenSPI(port string) (spi.PortCloser, error)
	OpenPin(name string) (gpio.PinIO, error)
}

// ErrNoOpener is returned by a sensor's open when it needs a bus or pin but
// the Poller has no Opener.
var ErrNoOpener = errors.New("drivers: no opener for buses and pins")

var (
	edges = map[string]gpio.Edge{"rising": gpio.RisingEdge, "falling": gpio.FallingEdge, "both": gpio.BothEdges}
	pulls = map[string]gpio.Pull{"up": gpio.PullUp, "down": gpio.PullDown, "none": gpio.Float}
)

// Options tune a Poller.
type Options struct {
	// Now stamps the readings (nil means time.Now).
	Now func() time.Time
	// Logger receives a line when a sensor starts failing and when it
	// recovers (nil discards).
	Logger *slog.Logger
	// Seed seeds the interval jitter.
	Seed int64
	// Sleep is passed to the chip drivers that wait for a conversion (nil:
	// real timers honouring the context). Tests pass a no-op.
	Sleep func(ctx context.Context, d time.Duration) error
	// MinBackoff is the first retry delay after a failure, before jitter
	// (default: the sensor's interval, at most 1s).
	MinBackoff time.Duration
}

// Error reasons in SensorStats.ErrorsByReason.
const (
	ReasonCRC      = "crc"
	ReasonNotReady = "not_ready"
	ReasonPowerOn  = "power_on"
	ReasonNotFound = "not_found"
	ReasonChipID   = "chip_id"
	ReasonTimeout  = "timeout"
	ReasonOpen     = "open" // the bus or pin could not be opened
	ReasonBus      = "bus"  // any other I/O error: a NACK, a vanished chip
)

var reasons = []string{ReasonCRC, ReasonNotReady, ReasonPowerOn, ReasonNotFound, ReasonChipID, ReasonTimeout, ReasonOpen, ReasonBus}

func reasonOf(err error) string {
	switch {
	case errors.Is(err, chiperr.ErrCRC):
		return ReasonCRC
	case errors.Is(err, chiperr.ErrNotReady):
		return ReasonNotReady
	case errors.Is(err, chiperr.ErrPowerOn):
		return ReasonPowerOn
	case errors.Is(err, chiperr.ErrNotFound):
		return ReasonNotFound
	case errors.Is(err, chiperr.ErrChipID):
		return ReasonChipID
	case errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout
	case errors.Is(err, errOpen):
		return ReasonOpen
	}
	return ReasonBus
}

// transient errors keep the device open: the chip answered, the data was
// bad or late.
func transient(reason string) bool {
	return reason == ReasonCRC || reason == ReasonNotReady || reason == ReasonPowerOn
}

var errOpen = errors.New("open")

// SensorStats are one sensor's counters.
type SensorStats struct {
	ID, Type string
	// Up is true while the last read succeeded.
	Up       bool
	Reads    uint64 // successful reads
	Readings uint64 // readings sent
	Errors   uint64 // failed reads and opens
	// ErrorsByReason splits Errors by the Reason* constants.
	ErrorsByReason map[string]uint64
	Opens          uint64 // (re)initialisations of the chip
	// Consecutive failures since the last success.
	Consecutive uint64
	LastError   string
}

// Stats are the poller's counters, sensors in id order.
type Stats struct {
	Sensors  []SensorStats
	Reads    uint64
	Readings uint64
	Errors   uint64
}

// Poller polls chips and sends their readings: an ingest.Source. Each
// sensor has its own goroutine, interval, jitter, read timeout and
// exponential backoff, so one broken chip never stops the others.
type Poller struct {
	sensors []*sensor
	op      Opener
	opts    Options
	now     func() time.Time
	log     *slog.Logger
	ran     atomic.Bool

	busMu sync.Mutex
	buses map[string]i2c.BusCloser
}

type sensor struct {
	Entry
	rng *rand.Rand
	bo  backoff.Backoff // draws from rng, so only the sensor's goroutine uses it

	up          atomic.Bool
	reads       atomic.Uint64
	readings    atomic.Uint64
	errs        atomic.Uint64
	opens       atomic.Uint64
	consecutive atomic.Uint64
	byReason    [8]atomic.Uint64 // indexed like reasons
	lastErrMu   sync.Mutex
	lastErr     string
}

// NewPoller checks the entries (after filling their defaults on a copy)
// and returns a poller. op may be nil when no sensor needs a bus or pin
// (ds18b20 reads sysfs files).
func NewPoller(entries []Entry, op Opener, opts Options) (*Poller, error) {
	p := &Poller{op: op, opts: opts, now: opts.Now, log: opts.Logger, buses: map[string]i2c.BusCloser{}}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	seen := map[string]bool{}
	var errs []error
	for i, e := range entries {
		if e.ID == "" {
			errs = append(errs, fmt.Errorf("drivers: sensor [%d]: empty id", i))
			continue
		}
		if seen[e.ID] {
			errs = append(errs, fmt.Errorf("drivers: sensor %q: duplicate id", e.ID))
			continue
		}
		seen[e.ID] = true
		e.Device.Defaults(e.Type)
		if err := e.Device.Validate(e.Type); err != nil {
			errs = append(errs, fmt.Errorf("drivers: sensor %q: %w", e.ID, err))
			continue
		}
		h := fnv.New64a()
		h.Write([]byte(e.ID))
		s := &sensor{Entry: e, rng: rand.New(rand.NewPCG(uint64(opts.Seed), h.Sum64()))}
		s.bo = backoff.Backoff{Min: opts.MinBackoff, Max: e.Device.MaxBackoff, Rand: s.rng.Int64N}
		if s.bo.Min <= 0 {
			s.bo.Min = min(e.Device.Interval, time.Second)
		}
		p.sensors = append(p.sensors, s)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	sort.Slice(p.sensors, func(i, j int) bool { return p.sensors[i].ID < p.sensors[j].ID })
	return p, nil
}

// Stats returns a snapshot of the counters.
func (p *Poller) Stats() Stats {
	var st Stats
	for _, s := range p.sensors {
		ss := SensorStats{ID: s.ID, Type: s.Type, Up: s.up.Load(), Reads: s.reads.Load(), Readings: s.readings.Load(),
			Errors: s.errs.Load(), Opens: s.opens.Load(), Consecutive: s.consecutive.Load(), ErrorsByReason: map[string]uint64{}}
		for i, r := range reasons {
			if n := s.byReason[i].Load(); n > 0 {
				ss.ErrorsByReason[r] = n
			}
		}
		s.lastErrMu.Lock()
		ss.LastError = s.lastErr
		s.lastErrMu.Unlock()
		st.Sensors = append(st.Sensors, ss)
		st.Reads += ss.Reads
		st.Readings += ss.Readings
		st.Errors += ss.Errors
	}
	return st
}

// ErrRunning is returned by Run the second time.
var ErrRunning = errors.New("drivers: Run called twice")

// Run polls every sensor until ctx is cancelled, then closes the devices
// and the buses it opened and returns nil. Failures of single sensors are
// counted and retried with backoff, never returned.
func (p *Poller) Run(ctx context.Context, out chan<- ingest.Reading) error {
	if !p.ran.CompareAndSwap(false, true) {
		return ErrRunning
	}
	var wg sync.WaitGroup
	for _, s := range p.sensors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.poll(ctx, s, out)
		}()
	}
	<-ctx.Done()
	wg.Wait()
	p.busMu.Lock()
	defer p.busMu.Unlock()
	for name, b := range p.buses {
		if err := b.Close(); err != nil {
			p.log.Warn("drivers: close bus", "bus", name, "err", err)
		}
		delete(p.buses, name)
	}
	return nil
}

func (p *Poller) poll(ctx context.Context, s *sensor, out chan<- ingest.Reading) {
	var dev *device
	defer func() {
		if dev != nil {
			dev.close()
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var (
		vals []chip.Value
		next = p.now() // nominal time of the next read
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		var err error
		if dev == nil {
			s.opens.Add(1)
			dev, err = p.open(ctx, s)
		}
		if err == nil {
			rctx, cancel := context.WithTimeout(ctx, s.Device.Timeout)
			vals, err = dev.Sense(rctx, vals[:0])
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			reason := reasonOf(err)
			if dev != nil && !transient(reason) {
				dev.close()
				dev = nil
			}
			p.fail(s, reason, err)
			timer.Reset(p.backoff(s))
			next = p.now()
			continue
		}
		if n := s.consecutive.Swap(0); n > 0 {
			p.log.Info("drivers: sensor recovered", "sensor", s.ID, "type", s.Type, "failures", n)
		}
		s.up.Store(true)
		s.reads.Add(1)
		now := p.now().UnixNano()
		durable := s.Device.Durable == nil || *s.Device.Durable
		for i, v := range vals {
			r := ingest.Reading{Sensor: s.ID, Metric: v.Metric, Unit: v.Unit, Value: v.V, Time: now, Arrival: now}
			if durable && i == len(vals)-1 {
				r.Receipt = ingest.PromptCommit
			}
			select {
			case out <- r:
				s.readings.Add(1)
			case <-ctx.Done():
				return
			}
		}
		// Next read at the nominal schedule plus jitter; after a stall, at
		// once but never in a burst.
		next = next.Add(s.Device.Interval)
		at := next
		if j := int64(s.Device.Jitter); j > 0 {
			at = at.Add(time.Duration(s.rng.Int64N(2*j+1) - j))
		}
		wait := at.Sub(p.now())
		if wait < 0 {
			wait, next = 0, p.now()
		}
		timer.Reset(wait)
	}
}

func (p *Poller) fail(s *sensor, reason string, err error) {
	s.up.Store(false)
	s.errs.Add(1)
	for i, r := range reasons {
		if r == reason {
			s.byReason[i].Add(1)
		}
	}
	s.lastErrMu.Lock()
	s.lastErr = err.Error()
	s.lastErrMu.Unlock()
	n := s.consecutive.Add(1)
	if n == 1 || n%100 == 0 {
		p.log.Warn("drivers: sensor failing", "sensor", s.ID, "type", s.Type, "reason", reason, "failures", n, "err", err)
	}
}

// backoff is the wait after the n-th consecutive failure: the shared
// internal/backoff rule from the sensor's min backoff up to max_backoff.
func (p *Poller) backoff(s *sensor) time.Duration {
	return s.bo.Delay(int(min(s.consecutive.Load(), 64)))
}

// bus returns the shared I²C bus name, opening it on first use. Buses stay
// open until Run returns: chips come and go, the bus adapter does not.
func (p *Poller) bus(name string) (i2c.Bus, error) {
	if p.op == nil {
		return nil, fmt.Errorf("%w: %w", errOpen, ErrNoOpener)
	}
	p.busMu.Lock()
	defer p.busMu.Unlock()
	if b, ok := p.buses[name]; ok {
		return b, nil
	}
	b, err := p.op.OpenI2C(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errOpen, err)
	}
	p.buses[name] = b
	return b, nil
}

func fullScale(v float64) physic.ElectricPotential {
	return physic.ElectricPotential(v * float64(physic.Volt))
}

// Units and metrics of the readings (the chip package's names).
const (
	UnitCelsius = chip.UnitCelsius
	UnitHPa     = chip.UnitHPa
	UnitPercent = chip.UnitPercent
	UnitPPM     = chip.UnitPPM
	MetricTemp  = chip.MetricTemp
	MetricHum   = chip.MetricHum
	MetricPress = chip.MetricPress
	MetricCO2   = chip.MetricCO2
	MetricCount = chip.MetricCount
	MetricRate  = chip.MetricRate
)

// device is an opened chip and what the poller must undo when it closes
// it: the Runner it started and the port it opened for this chip alone.
type device struct {
	chip.Sensor
	stop    func()       // stops the chip's Runner, nil if it has none
	release func() error // closes a port only this chip uses, may be nil
}

func (d *device) close() error {
	if d.stop != nil {
		d.stop()
	}
	err := d.Halt()
	if d.release != nil {
		err = errors.Join(err, d.release())
	}
	return err
}

// open makes the chip of s ready and, for a chip that watches its input
// between reads, starts its Runner (stopped by close).
func (p *Poller) open(ctx context.Context, s *sensor) (*device, error) {
	d, err := p.build(ctx, s)
	if err != nil {
		return nil, err
	}
	if r, ok := d.Sensor.(chip.Runner); ok {
		rctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.Run(rctx)
		}()
		d.stop = func() { cancel(); <-done }
	}
	return d, nil
}

// opened keeps a constructor's typed nil out of the interface.
func opened[T chip.Sensor](c T, err error) (*device, error) {
	if err != nil {
		return nil, err
	}
	return &device{Sensor: c}, nil
}

// build constructs the chip of s; this is all the poller knows of types.
func (p *Poller) build(ctx context.Context, s *sensor) (*device, error) {
	c := &s.Device
	switch {
	case s.Type == TypeDS18B20:
		return opened(ds18b20.New(c.Bus, c.Serial))
	case s.Type == TypePulse:
		if p.op == nil {
			return nil, fmt.Errorf("%w: %w", errOpen, ErrNoOpener)
		}
		pin, err := p.op.OpenPin(c.Pin)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errOpen, err)
		}
		return opened(pulse.New(pin, &pulse.Opts{Edge: edges[c.Edge], Pull: pulls[c.Pull], Debounce: c.Debounce,
			Now: p.opts.Now, PerPulse: c.PerPulse, Unit: c.Unit}))
	case (s.Type == TypeBME280 || s.Type == TypeBMP280) && c.isSPI():
		if p.op == nil {
			return nil, fmt.Errorf("%w: %w", errOpen, ErrNoOpener)
		}
		port, err := p.op.OpenSPI(c.Bus)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errOpen, err)
		}
		d, err := bme280.NewSPI(port, nil)
		if err != nil {
			port.Close()
			return nil, err
		}
		return &device{Sensor: d, release: port.Close}, nil
	case !isI2C(s.Type):
		return nil, fmt.Errorf("drivers: unknown type %q", s.Type)
	}
	b, err := p.bus(c.Bus)
	if err != nil {
		return nil, err
	}
	addr := uint16(c.Address)
	switch s.Type {
	case TypeBME280, TypeBMP280:
		return opened(bme280.New(b, addr, nil))
	case TypeADS1115, TypeADS1015:
		kind := ads1115.ADS1115
		if s.Type == TypeADS1015 {
			kind = ads1115.ADS1015
		}
		out := &ads1115.Output{Metric: c.Metric, Unit: c.Unit, Scale: c.Scale, Offset: c.Offset}
		if c.Negative != 0 {
			return opened(ads1115.NewDifferential(b, addr, kind, c.Channel, c.Negative, fullScale(c.FullScale), out))
		}
		return opened(ads1115.New(b, addr, kind, c.Channel, fullScale(c.FullScale), out))
	case TypeSHT3x:
		return opened(sht3x.New(ctx, b, addr, &sht3x.Opts{Sleep: p.opts.Sleep}))
	case TypeSHT4x:
		return opened(sht4x.New(ctx, b, addr, &sht4x.Opts{Sleep: p.opts.Sleep}))
	case TypeSCD4x:
		return opened(scd4x.New(ctx, b, addr, &scd4x.Opts{Sleep: p.opts.Sleep}))
	}
	return nil, fmt.Errorf("drivers: unknown type %q", s.Type)
}
