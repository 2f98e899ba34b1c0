package drivers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/spi"

	"github.com/sensorgate/sensorgate/drivers/ds18b20"
	"github.com/sensorgate/sensorgate/drivers/internal/sensirion"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/test/leak"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// sht3xChip emulates SHT3x chips on a bus (datasheet §4.3, §4.11): it
// answers the status and single-shot commands with CRC-protected words, can
// vanish (NACK every transfer) and can corrupt the next CRC.
type sht3xChip struct {
	mu      sync.Mutex
	addrs   map[uint16]bool
	rawT    uint16
	gone    bool
	badCRC  int
	pending map[uint16]bool
	txs     int
}

var errNACK = errors.New("i2c: remote I/O error (NACK)")

func newSHT3xChip(addrs ...uint16) *sht3xChip {
	c := &sht3xChip{addrs: map[uint16]bool{}, rawT: 0x6666, pending: map[uint16]bool{}}
	for _, a := range addrs {
		c.addrs[a] = true
	}
	return c
}

func word(w uint16) []byte {
	b := []byte{byte(w >> 8), byte(w)}
	return append(b, sensirion.CRC8(b))
}

func (c *sht3xChip) Tx(addr uint16, w, r []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.txs++
	if c.gone || !c.addrs[addr] {
		return errNACK
	}
	switch {
	case len(w) == 2 && w[0] == 0xF3 && w[1] == 0x2D && len(r) == 3:
		copy(r, word(0x8010))
	case len(w) == 2 && w[0] == 0x24 && w[1] == 0x00 && len(r) == 0:
		c.pending[addr] = true
	case len(w) == 0 && len(r) == 6 && c.pending[addr]:
		c.pending[addr] = false
		copy(r, append(word(c.rawT), word(0x8000)...))
		if c.badCRC > 0 {
			c.badCRC--
			r[2] ^= 0xFF
		}
	default:
		return fmt.Errorf("sht3x emulator: unexpected tx w=% x r=%d", w, len(r))
	}
	return nil
}

func (c *sht3xChip) set(f func(c *sht3xChip)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

func (c *sht3xChip) String() string                  { return "sht3x-emulator" }
func (c *sht3xChip) SetSpeed(physic.Frequency) error { return nil }
func (c *sht3xChip) Close() error                    { return nil }

type closer struct{ i2c.Bus }

func (closer) Close() error { return nil }

// fakeOpener hands out fake buses and pins by name.
type fakeOpener struct {
	mu     sync.Mutex
	buses  map[string]i2c.BusCloser
	pins   map[string]gpio.PinIO
	opened map[string]int
}

func (o *fakeOpener) OpenI2C(bus string) (i2c.BusCloser, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.opened == nil {
		o.opened = map[string]int{}
	}
	o.opened[bus]++
	if b, ok := o.buses[bus]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("no such bus %q", bus)
}

func (o *fakeOpener) OpenSPI(port string) (spi.PortCloser, error) {
	return nil, fmt.Errorf("no spi port %q", port)
}

func (o *fakeOpener) OpenPin(name string) (gpio.PinIO, error) {
	if p, ok := o.pins[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("no pin %q", name)
}

func writeW1(t *testing.T, dir, id string, raw uint16) {
	t.Helper()
	sp := [9]byte{byte(raw), byte(raw >> 8), 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10}
	sp[8] = ds18b20.CRC8(sp[:8])
	var h []string
	for _, b := range sp {
		h = append(h, fmt.Sprintf("%02x", b))
	}
	s := strings.Join(h, " ")
	content := fmt.Sprintf("%s : crc=%02x YES\n%s t=%d\n", s, sp[8], s, int(int16(raw))*1000/16)
	if err := os.MkdirAll(filepath.Join(dir, id), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, id, "w1_slave"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// collector drains readings into per-sensor lists.
type collector struct {
	mu  sync.Mutex
	got map[string][]ingest.Reading
}

func collect(ctx context.Context, in <-chan ingest.Reading) *collector {
	c := &collector{got: map[string][]ingest.Reading{}}
	go func() {
		for {
			select {
			case r := <-in:
				c.mu.Lock()
				c.got[r.Sensor] = append(c.got[r.Sensor], r)
				c.mu.Unlock()
			case <-ctx.Done():
				return
			}
		}
	}()
	return c
}

func (c *collector) count(sensor string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got[sensor])
}

func (c *collector) last(sensor string) []ingest.Reading {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]ingest.Reading(nil), c.got[sensor]...)
}

// waitFor is mqtttest.WaitFor in the argument order of these tests.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	mqtttest.WaitFor(t, 20*time.Second, cond, what)
}

func stat(p *Poller, id string) SensorStats {
	for _, s := range p.Stats().Sensors {
		if s.ID == id {
			return s
		}
	}
	return SensorStats{}
}

func fast(d DeviceConfig) DeviceConfig {
	d.Interval = 10 * time.Millisecond
	d.Jitter = 2 * time.Millisecond
	d.MaxBackoff = 40 * time.Millisecond
	return d
}

func TestPollerOneBrokenChipNeverStopsTheOthers(t *testing.T) {
	before := runtime.NumGoroutine()
	chip := newSHT3xChip(0x44, 0x45)
	w1 := t.TempDir()
	writeW1(t, w1, "28-000000000001", 0x0191) // 25.0625 °C (DS18B20 table 1)
	pin := &gpiotest.Pin{N: "GPIO17", EdgesChan: make(chan gpio.Level)}
	adc := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{
		{Addr: 0x48, W: []byte{0x01, 0xC3, 0xE3}},            // AIN0, ±4.096 V, single shot, 860 SPS
		{Addr: 0x48, W: []byte{0x00}, R: []byte{0x40, 0x00}}, // 2.048 V
	}}
	op := &fakeOpener{
		buses: map[string]i2c.BusCloser{"/dev/i2c-1": chip, "/dev/i2c-2": closer{adc}},
		pins:  map[string]gpio.PinIO{"GPIO17": pin},
	}
	entries := []Entry{
		{ID: "a", Type: TypeSHT3x, Device: fast(DeviceConfig{})},
		{ID: "b", Type: TypeSHT3x, Device: fast(DeviceConfig{Address: 0x45})},
		{ID: "w", Type: TypeDS18B20, Device: fast(DeviceConfig{Bus: w1})},
		{ID: "broken-bus", Type: TypeSHT4x, Device: fast(DeviceConfig{Bus: "/dev/i2c-9"})},
		{ID: "absent", Type: TypeSCD4x, Device: fast(DeviceConfig{})},
		{ID: "level", Type: TypeADS1115, Device: fast(DeviceConfig{Bus: "/dev/i2c-2", Scale: 50, Offset: -25, Metric: "level", Unit: "cm"})},
		{ID: "meter", Type: TypePulse, Device: fast(DeviceConfig{Pin: "GPIO17", PerPulse: 0.5, Unit: "l"})},
	}
	p, err := NewPoller(entries, op, Options{MinBackoff: 5 * time.Millisecond, Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan ingest.Reading, 8)
	col := collect(ctx, out)
	done := make(chan error)
	go func() { done <- p.Run(ctx, out) }()

	waitFor(t, "readings from a, b and w", func() bool {
		return col.count("a") >= 10 && col.count("b") >= 10 && col.count("w") >= 5 && col.count("level") == 1
	})
	waitFor(t, "errors of the broken sensors", func() bool {
		return stat(p, "broken-bus").ErrorsByReason[ReasonOpen] >= 3 && stat(p, "absent").ErrorsByReason[ReasonBus] >= 3
	})
	r := col.last("a")[0]
	if r.Metric != MetricTemp || r.Unit != UnitCelsius || math.Abs(r.Value-(-45+175*26214.0/65535)) > 1e-6 || r.Time != r.Arrival || r.Time == 0 {
		t.Fatalf("sht3x reading %+v", r)
	}
	if h := col.last("a")[1]; h.Metric != MetricHum || h.Unit != UnitPercent || math.Abs(h.Value-100*32768.0/65535) > 1e-4 {
		t.Fatalf("sht3x humidity %+v", h)
	}
	if w := col.last("w")[0]; w.Value != 25.0625 || w.Unit != UnitCelsius {
		t.Fatalf("ds18b20 reading %+v", w)
	}
	// ADC scaling: 2.048 V × 50 + (-25) = 77.4 cm.
	if l := col.last("level")[0]; l.Metric != "level" || l.Unit != "cm" || math.Abs(l.Value-77.4) > 1e-9 {
		t.Fatalf("adc reading %+v", l)
	}
	// The ADC's playback ran out: its later reads fail and are counted.
	waitFor(t, "adc errors", func() bool { return stat(p, "level").Errors > 0 })
	// The pulse counter counts edges in the background.
	for range 4 {
		pin.EdgesChan <- gpio.High
	}
	waitFor(t, "pulse count 2 l", func() bool {
		rs := col.last("meter")
		return len(rs) >= 2 && rs[len(rs)-2].Metric == MetricCount && rs[len(rs)-2].Value == 2 && rs[len(rs)-2].Unit == "l"
	})
	if rs := col.last("meter"); rs[1].Metric != MetricRate || rs[1].Unit != "l/s" {
		t.Fatalf("pulse readings %+v", rs[:2])
	}
	op.mu.Lock()
	opened := op.opened["/dev/i2c-1"]
	op.mu.Unlock()
	if opened != 1 {
		t.Fatalf("bus opened %d times, want once (shared)", opened)
	}
	st := stat(p, "absent")
	if st.Up || st.Consecutive < 3 || st.LastError == "" || st.Reads != 0 {
		t.Fatalf("absent sensor stats %+v", st)
	}

	// A CRC error is counted; the chip stays open (no re-init).
	opens := stat(p, "a").Opens
	chip.set(func(c *sht3xChip) { c.badCRC = 1 })
	waitFor(t, "crc error", func() bool { return stat(p, "a").ErrorsByReason[ReasonCRC]+stat(p, "b").ErrorsByReason[ReasonCRC] == 1 })
	n := col.count("a")
	waitFor(t, "readings after the crc error", func() bool { return col.count("a") > n+4 })
	if o := stat(p, "a").Opens; o != opens {
		t.Fatalf("re-opened after a CRC error: %d -> %d", opens, o)
	}

	// The chips vanish (NACK) and come back: errors, backoff, re-init.
	chip.set(func(c *sht3xChip) { c.gone = true })
	waitFor(t, "a failing", func() bool { s := stat(p, "a"); return !s.Up && s.Consecutive >= 3 })
	if w := col.count("w"); true {
		waitFor(t, "ds18b20 still read while the bus is down", func() bool { return col.count("w") > w+3 })
	}
	chip.set(func(c *sht3xChip) { c.gone = false })
	n = col.count("a")
	waitFor(t, "a back", func() bool { return col.count("a") > n+4 && stat(p, "a").Up })
	if s := stat(p, "a"); s.Opens <= opens || s.ErrorsByReason[ReasonBus] < 3 || s.Consecutive != 0 {
		t.Fatalf("after return: %+v", s)
	}

	// The DS18B20 reports its power-on value: counted as power_on.
	writeW1(t, w1, "28-000000000001", 0x0550)
	waitFor(t, "power-on error", func() bool { return stat(p, "w").ErrorsByReason[ReasonPowerOn] > 0 })

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background(), out); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v", err)
	}
	tot := p.Stats()
	if tot.Reads == 0 || tot.Errors == 0 || tot.Readings < tot.Reads {
		t.Fatalf("totals %+v", tot)
	}
	checkGoroutines(t, before)
}

func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	leak.Wait(t, before)
}

func TestBackoffGrowsAndCaps(t *testing.T) {
	p, err := NewPoller([]Entry{{ID: "x", Type: TypeSHT3x, Device: DeviceConfig{Interval: time.Second, MaxBackoff: 10 * time.Second}}}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := p.sensors[0]
	for n, want := range map[uint64]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 40: 10 * time.Second} {
		s.consecutive.Store(n)
		for range 20 {
			if d := p.backoff(s); d < want/2 || d > want {
				t.Fatalf("failure %d: backoff %v, want in [%v, %v]", n, d, want/2, want)
			}
		}
	}
}

func TestDeviceConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		typ   string
		dev   DeviceConfig
		paths []string
	}{
		{TypeBME280, DeviceConfig{}, nil},
		{TypeBME280, DeviceConfig{Bus: "/dev/spidev0.0"}, nil},
		{TypeBME280, DeviceConfig{Address: 0x44}, []string{"address"}},
		{TypeSHT3x, DeviceConfig{Address: 0x45, Interval: -1, Timeout: -1}, []string{"interval", "timeout"}},
		{TypeSHT4x, DeviceConfig{Address: 0x46, Jitter: time.Minute}, []string{"jitter"}},
		{TypeSCD4x, DeviceConfig{Address: 0x63}, []string{"address"}},
		{TypeADS1115, DeviceConfig{Channel: 4, FullScale: 7, Scale: math.Inf(1), Metric: ""}, []string{"channel", "full_scale", "scale"}},
		{TypeADS1015, DeviceConfig{Address: 0x4B, Channel: 3}, nil},
		{TypeADS1115, DeviceConfig{Channel: 0, Negative: 3}, nil},
		{TypeADS1115, DeviceConfig{Channel: 1, Negative: 2}, []string{"negative"}},
		{TypeDS18B20, DeviceConfig{Serial: "10-000"}, []string{"serial"}},
		{TypePulse, DeviceConfig{Edge: "up", Pull: "sideways", PerPulse: -1, Debounce: -1}, []string{"pin", "edge", "pull", "per_pulse", "debounce"}},
		{"lidar", DeviceConfig{}, []string{""}},
	} {
		d := tc.dev
		d.Defaults(tc.typ)
		err := d.Validate(tc.typ)
		var got []string
		for _, e := range ingest.FlattenErrors(err) {
			var fe *ingest.FieldError
			if !errors.As(e, &fe) {
				t.Fatalf("%s: not a FieldError: %v", tc.typ, e)
			}
			got = append(got, fe.Path)
		}
		if strings.Join(got, ",") != strings.Join(tc.paths, ",") {
			t.Errorf("%s %+v: paths %q, want %q (%v)", tc.typ, tc.dev, got, tc.paths, err)
		}
	}
	if _, err := NewPoller([]Entry{{ID: "a", Type: TypeSHT3x}, {ID: "a", Type: TypeSHT3x}}, nil, Options{}); err == nil {
		t.Fatal("duplicate id accepted")
	}
	if !Known(TypeSCD4x) || Known("sim") || len(Types()) != 9 {
		t.Fatal("Known/Types")
	}
}

func TestDeviceConfigYAML(t *testing.T) {
	src := `
bus: /dev/i2c-1
address: 0x77
interval: 30s
jitter: 2s
timeout: 1s
max_backoff: 10m
`
	var d DeviceConfig
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	d.Defaults(TypeBME280)
	if err := d.Validate(TypeBME280); err != nil {
		t.Fatal(err)
	}
	if d.Address != 0x77 || d.Interval != 30*time.Second || d.MaxBackoff != 10*time.Minute {
		t.Fatalf("%+v", d)
	}
	var a DeviceConfig
	a.Defaults(TypeADS1115)
	if a.Address != 0x48 || a.Scale != 1 || a.FullScale != 4.096 || a.Metric != "voltage" || a.Unit != "V" || a.Bus != DefaultI2CBus {
		t.Fatalf("ads defaults %+v", a)
	}
	var w DeviceConfig
	w.Defaults(TypeDS18B20)
	if w.Bus != DefaultW1Dir || w.Timeout != 3*time.Second {
		t.Fatalf("ds18b20 defaults %+v", w)
	}
	if I2CBusName("/dev/i2c-1") != "1" || I2CBusName("I2C3") != "I2C3" {
		t.Fatal("I2CBusName")
	}
}

func TestPollerReadTimeout(t *testing.T) {
	before := runtime.NumGoroutine()
	chip := newSHT3xChip(0x44)
	op := &fakeOpener{buses: map[string]i2c.BusCloser{"/dev/i2c-1": chip}}
	d := fast(DeviceConfig{})
	d.Timeout = 20 * time.Millisecond
	// A conversion that never ends: the wait honours the read's deadline.
	hang := func(ctx context.Context, _ time.Duration) error { <-ctx.Done(); return ctx.Err() }
	p, err := NewPoller([]Entry{{ID: "slow", Type: TypeSHT3x, Device: d}}, op, Options{MinBackoff: time.Millisecond, Sleep: hang})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan ingest.Reading, 1)
	done := make(chan error)
	go func() { done <- p.Run(ctx, out) }()
	waitFor(t, "timeouts", func() bool { return stat(p, "slow").ErrorsByReason[ReasonTimeout] >= 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := stat(p, "slow"); s.Reads != 0 || s.Opens < 3 {
		t.Fatalf("%+v", s)
	}
	checkGoroutines(t, before)
}
