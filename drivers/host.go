package drivers

import (
	"fmt"
	"strings"
	"sync"

	"periph.io/x/conn/v3/driver/driverreg"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/conn/v3/spi"
	"periph.io/x/conn/v3/spi/spireg"
	"periph.io/x/host/v3"
)

// HostState is what periph's host.Init found: the drivers that loaded,
// were skipped (not this hardware) and failed, by name.
type HostState struct {
	Loaded  []string
	Skipped []string
	Failed  []string
}

var (
	hostOnce  sync.Once
	hostState HostState
	hostErr   error
)

// HostInit runs periph's host.Init once per process (it registers the
// buses and pins of the board: sysfs I²C and SPI, GPIO character devices,
// the Raspberry Pi's bcm283x) and returns what it found. On a machine
// without any of that hardware it succeeds with nothing loaded.
func HostInit() (HostState, error) {
	hostOnce.Do(func() {
		st, err := host.Init()
		if err != nil {
			hostErr = fmt.Errorf("drivers: periph host init: %w", err)
			return
		}
		hostState = describeState(st)
	})
	return hostState, hostErr
}

func describeState(st *driverreg.State) HostState {
	var h HostState
	for _, d := range st.Loaded {
		h.Loaded = append(h.Loaded, d.String())
	}
	for _, d := range st.Skipped {
		h.Skipped = append(h.Skipped, d.D.String()+": "+d.Err.Error())
	}
	for _, d := range st.Failed {
		h.Failed = append(h.Failed, d.D.String()+": "+d.Err.Error())
	}
	return h
}

// HostOpener opens the machine's real buses and pins through periph's
// registries. Create it with NewHostOpener.
type HostOpener struct{}

// NewHostOpener runs HostInit and returns an opener.
func NewHostOpener() (*HostOpener, error) {
	if _, err := HostInit(); err != nil {
		return nil, err
	}
	return &HostOpener{}, nil
}

// I2CBusName turns the config's bus ("/dev/i2c-1", "1", "I2C1") into
// periph's registry name.
func I2CBusName(bus string) string {
	if n, ok := strings.CutPrefix(bus, "/dev/i2c-"); ok {
		return n
	}
	return bus
}

// OpenI2C implements Opener.
func (*HostOpener) OpenI2C(bus string) (i2c.BusCloser, error) {
	b, err := i2creg.Open(I2CBusName(bus))
	if err != nil {
		return nil, fmt.Errorf("drivers: open i2c %q: %w", bus, err)
	}
	return b, nil
}

// OpenSPI implements Opener. The port is "/dev/spidev0.0" or periph's name
// ("SPI0.0").
func (*HostOpener) OpenSPI(port string) (spi.PortCloser, error) {
	name := port
	if n, ok := strings.CutPrefix(port, "/dev/spidev"); ok {
		name = "SPI" + n
	}
	p, err := spireg.Open(name)
	if err != nil {
		return nil, fmt.Errorf("drivers: open spi %q: %w", port, err)
	}
	return p, nil
}

// OpenPin implements Opener ("GPIO17", or the number "17").
func (*HostOpener) OpenPin(name string) (gpio.PinIO, error) {
	p := gpioreg.ByName(name)
	if p == nil {
		return nil, fmt.Errorf("drivers: gpio pin %q: not found", name)
	}
	return p, nil
}

// I2CBuses lists the names of the I²C buses periph registered.
func I2CBuses() []string {
	var out []string
	for _, r := range i2creg.All() {
		out = append(out, r.Name)
	}
	return out
}
