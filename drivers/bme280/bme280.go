package bme280

import (
	"context"
	"fmt"
	"strings"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/spi"
	"periph.io/x/devices/v3/bmxx80"

	"github.com/sensorgate/sensorgate/drivers/chip"
	"github.com/sensorgate/sensorgate/drivers/chiperr"
)

// I²C addresses (SDO to GND / VDDIO), datasheet §6.2.
const (
	DefaultAddr uint16 = 0x76
	AltAddr     uint16 = 0x77
)

// Chip ids in register 0xD0 (BME280 datasheet §5.4.1, BMP280 §4.3.1).
const (
	ChipIDBME280 = 0x60
	ChipIDBMP280 = 0x58
)

// Measurement is one reading. Humidity is zero on a BMP280.
type Measurement struct {
	Temperature physic.Temperature
	Pressure    physic.Pressure
	Humidity    physic.RelativeHumidity
}

// Dev is a BME280 or BMP280.
type Dev struct {
	d    *bmxx80.Dev
	chip string
}

// Opts is periph's bmxx80 options (oversampling, filter); nil means
// bmxx80.DefaultOpts (4× oversampling, no filter).
type Opts = bmxx80.Opts

// New opens the chip at addr on an I²C bus.
func New(bus i2c.Bus, addr uint16, opts *Opts) (*Dev, error) {
	if opts == nil {
		o := bmxx80.DefaultOpts
		opts = &o
	}
	d, err := bmxx80.NewI2C(bus, addr, opts)
	if err != nil {
		return nil, wrap(err)
	}
	return newDev(d)
}

// NewSPI opens the chip on an SPI port (CS line required).
func NewSPI(port spi.Port, opts *Opts) (*Dev, error) {
	if opts == nil {
		o := bmxx80.DefaultOpts
		opts = &o
	}
	d, err := bmxx80.NewSPI(port, opts)
	if err != nil {
		return nil, wrap(err)
	}
	return newDev(d)
}

func newDev(d *bmxx80.Dev) (*Dev, error) {
	name := d.String()
	switch {
	case strings.HasPrefix(name, "BME280"):
		return &Dev{d: d, chip: "BME280"}, nil
	case strings.HasPrefix(name, "BMP280"):
		return &Dev{d: d, chip: "BMP280"}, nil
	}
	return nil, fmt.Errorf("bme280: %s is not a BME280 or BMP280: %w", name, chiperr.ErrChipID)
}

// wrap keeps periph's message; bmxx80 reports an unknown chip id as
// "unexpected chip id", which becomes chiperr.ErrChipID.
func wrap(err error) error {
	if strings.Contains(err.Error(), "unexpected chip id") {
		return fmt.Errorf("bme280: %v: %w", err, chiperr.ErrChipID)
	}
	return fmt.Errorf("bme280: %w", err)
}

// Chip returns "BME280" or "BMP280".
func (d *Dev) Chip() string { return d.chip }

// HasHumidity reports whether the chip measures humidity (BME280 only).
func (d *Dev) HasHumidity() bool { return d.chip == "BME280" }

func (d *Dev) String() string { return d.d.String() }

// Measure takes one forced-mode measurement. It blocks for the conversion
// time (about 40 ms at the default oversampling); ctx is checked before.
func (d *Dev) Measure(ctx context.Context) (Measurement, error) {
	if err := ctx.Err(); err != nil {
		return Measurement{}, err
	}
	var e physic.Env
	if err := d.d.Sense(&e); err != nil {
		return Measurement{}, fmt.Errorf("bme280: %w", err)
	}
	return Measurement{Temperature: e.Temperature, Pressure: e.Pressure, Humidity: e.Humidity}, nil
}

// Halt puts the chip to sleep.
func (d *Dev) Halt() error { return d.d.Halt() }

// Sense implements chip.Sensor: temperature (°C), pressure (hPa) and, on a
// BME280, humidity (%RH).
func (d *Dev) Sense(ctx context.Context, dst []chip.Value) ([]chip.Value, error) {
	m, err := d.Measure(ctx)
	if err != nil {
		return dst, err
	}
	dst = append(dst, chip.Temperature(m.Temperature), chip.Pressure(m.Pressure))
	if d.HasHumidity() {
		dst = append(dst, chip.Humidity(m.Humidity))
	}
	return dst, nil
}

var _ chip.Sensor = (*Dev)(nil)
