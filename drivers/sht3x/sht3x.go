package sht3x

import (
	"context"
	"fmt"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"

	"github.com/sensorgate/sensorgate/drivers/chip"
	"github.com/sensorgate/sensorgate/drivers/internal/sensirion"
)

// I²C addresses (ADDR pin low / high), datasheet §3.1, table 7.
const (
	DefaultAddr uint16 = 0x44
	AltAddr     uint16 = 0x45
)

// Commands, datasheet §4.3 (table 9), §4.9 (soft reset), §4.11 (status).
const (
	cmdMeasureHigh   = 0x2400 // single shot, high repeatability, no clock stretching
	cmdMeasureMedium = 0x240B
	cmdMeasureLow    = 0x2416
	cmdSoftReset     = 0x30A2
	cmdStatus        = 0xF32D
)

// Repeatability trades measurement time for noise (datasheet table 2).
type Repeatability int

// Repeatability settings.
const (
	High Repeatability = iota
	Medium
	Low
)

// Measurement durations, datasheet §2.2 table 4 (maximum values).
var duration = [...]time.Duration{High: 15500 * time.Microsecond, Medium: 6500 * time.Microsecond, Low: 4500 * time.Microsecond}
var command = [...]uint16{High: cmdMeasureHigh, Medium: cmdMeasureMedium, Low: cmdMeasureLow}

// Opts configure a Dev. The zero value is high repeatability.
type Opts struct {
	Repeatability Repeatability
	// Sleep waits for a measurement (nil: a timer honouring ctx). Tests
	// pass a function that returns at once.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Measurement is one reading of the chip.
type Measurement struct {
	Temperature physic.Temperature
	Humidity    physic.RelativeHumidity
}

// Dev is an SHT3x on a bus.
type Dev struct {
	d     i2c.Dev
	opts  Opts
	sleep func(context.Context, time.Duration) error
}

// New returns the SHT3x at addr on bus after reading its status register
// (which checks that it answers and that its CRC is right).
func New(ctx context.Context, bus i2c.Bus, addr uint16, opts *Opts) (*Dev, error) {
	d := &Dev{d: i2c.Dev{Bus: bus, Addr: addr}}
	if opts != nil {
		d.opts = *opts
	}
	if d.opts.Repeatability < High || d.opts.Repeatability > Low {
		return nil, fmt.Errorf("sht3x: bad repeatability %d", d.opts.Repeatability)
	}
	d.sleep = d.opts.Sleep
	if d.sleep == nil {
		d.sleep = sensirion.Sleep
	}
	if _, err := d.Status(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Dev) String() string { return fmt.Sprintf("SHT3x{%s %#x}", d.d.Bus, d.d.Addr) }

func (d *Dev) cmd(c uint16) error {
	return d.d.Tx([]byte{byte(c >> 8), byte(c)}, nil)
}

// Status reads the status register (datasheet §4.11, table 17).
func (d *Dev) Status(ctx context.Context) (uint16, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var b [3]byte
	if err := d.d.Tx([]byte{cmdStatus >> 8, cmdStatus & 0xFF}, b[:]); err != nil {
		return 0, fmt.Errorf("sht3x: status: %w", err)
	}
	var w [1]uint16
	if err := sensirion.Words(w[:], b[:]); err != nil {
		return 0, fmt.Errorf("sht3x: status: %w", err)
	}
	return w[0], nil
}

// Reset sends a soft reset (datasheet §4.9) and waits the 1.5 ms it takes.
func (d *Dev) Reset(ctx context.Context) error {
	if err := d.cmd(cmdSoftReset); err != nil {
		return fmt.Errorf("sht3x: reset: %w", err)
	}
	return d.sleep(ctx, 1500*time.Microsecond)
}

// Measure takes one measurement.
func (d *Dev) Measure(ctx context.Context) (Measurement, error) {
	if err := d.cmd(command[d.opts.Repeatability]); err != nil {
		return Measurement{}, fmt.Errorf("sht3x: measure: %w", err)
	}
	if err := d.sleep(ctx, duration[d.opts.Repeatability]); err != nil {
		return Measurement{}, fmt.Errorf("sht3x: %w", err)
	}
	var b [6]byte
	if err := d.d.Tx(nil, b[:]); err != nil {
		return Measurement{}, fmt.Errorf("sht3x: read: %w", err)
	}
	var w [2]uint16
	if err := sensirion.Words(w[:], b[:]); err != nil {
		return Measurement{}, fmt.Errorf("sht3x: %w", err)
	}
	return Measurement{Temperature: Temperature(w[0]), Humidity: Humidity(w[1])}, nil
}

// Temperature converts a raw temperature word: T = -45 °C + 175 °C·S/(2^16-1)
// (datasheet §4.13).
func Temperature(s uint16) physic.Temperature {
	return physic.ZeroCelsius - 45*physic.Kelvin + physic.Temperature(175*int64(physic.Kelvin)*int64(s)/65535)
}

// Humidity converts a raw humidity word: RH = 100 %·S/(2^16-1) (datasheet §4.13).
func Humidity(s uint16) physic.RelativeHumidity {
	return physic.RelativeHumidity(100 * int64(physic.PercentRH) * int64(s) / 65535)
}

// Sense implements chip.Sensor: temperature (°C) and humidity (%RH).
func (d *Dev) Sense(ctx context.Context, dst []chip.Value) ([]chip.Value, error) {
	m, err := d.Measure(ctx)
	if err != nil {
		return dst, err
	}
	return append(dst, chip.Temperature(m.Temperature), chip.Humidity(m.Humidity)), nil
}

// Halt implements chip.Sensor. In single-shot mode the SHT3x idles between
// measurements by itself, so there is nothing to stop.
func (d *Dev) Halt() error { return nil }

var _ chip.Sensor = (*Dev)(nil)
