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
var (
	cmdSoftReset = []byte{0x30, 0xA2}
	cmdStatus    = []byte{0xF3, 0x2D}
)

// Repeatability trades measurement time for noise (datasheet table 2).
type Repeatability = sensirion.Level

// Repeatability settings.
const (
	High   = sensirion.High
	Medium = sensirion.Medium
	Low    = sensirion.Low
)

// Single shot without clock stretching, and the maximum measurement
// durations, datasheet §4.3 table 9 and §2.2 table 4.
var (
	command  = [...][]byte{High: {0x24, 0x00}, Medium: {0x24, 0x0B}, Low: {0x24, 0x16}}
	duration = [...]time.Duration{High: 15500 * time.Microsecond, Medium: 6500 * time.Microsecond, Low: 4500 * time.Microsecond}
)

// Opts configure a Dev. The zero value is high repeatability.
type Opts struct {
	Repeatability Repeatability
	// Sleep waits for a measurement (nil: a timer honouring ctx). Tests
	// pass a function that returns at once.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Measurement is one reading of the chip.
type Measurement = sensirion.Measurement

// Dev is an SHT3x on a bus.
type Dev struct {
	s   sensirion.Dev
	rep Repeatability
}

// New returns the SHT3x at addr on bus after reading its status register
// (which checks that it answers and that its CRC is right).
func New(ctx context.Context, bus i2c.Bus, addr uint16, opts *Opts) (*Dev, error) {
	var o Opts
	if opts != nil {
		o = *opts
	}
	if !o.Repeatability.Valid() {
		return nil, fmt.Errorf("sht3x: bad repeatability %d", o.Repeatability)
	}
	d := &Dev{s: sensirion.NewDev(bus, addr, o.Sleep), rep: o.Repeatability}
	if _, err := d.Status(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Dev) String() string { return d.s.Name("SHT3x") }

// Status reads the status register (datasheet §4.11, table 17).
func (d *Dev) Status(ctx context.Context) (uint16, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var w [1]uint16
	if err := d.s.ReadNow(cmdStatus, w[:]); err != nil {
		return 0, fmt.Errorf("sht3x: status: %w", err)
	}
	return w[0], nil
}

// Reset sends a soft reset (datasheet §4.9) and waits the 1.5 ms it takes.
func (d *Dev) Reset(ctx context.Context) error {
	if err := d.s.Send(cmdSoftReset...); err != nil {
		return fmt.Errorf("sht3x: reset: %w", err)
	}
	return d.s.Wait(ctx, 1500*time.Microsecond)
}

// Measure takes one measurement.
func (d *Dev) Measure(ctx context.Context) (Measurement, error) {
	var w [2]uint16
	if err := d.s.Read(ctx, command[d.rep], duration[d.rep], w[:]); err != nil {
		return Measurement{}, fmt.Errorf("sht3x: measure: %w", err)
	}
	return Measurement{Temperature: Temperature(w[0]), Humidity: Humidity(w[1])}, nil
}

// Temperature converts a raw temperature word: T = -45 °C + 175 °C·S/(2^16-1)
// (datasheet §4.13).
func Temperature(s uint16) physic.Temperature { return sensirion.Temperature(s, 65535) }

// Humidity converts a raw humidity word: RH = 100 %·S/(2^16-1) (datasheet §4.13).
func Humidity(s uint16) physic.RelativeHumidity { return sensirion.Humidity(s, 65535) }

// Sense implements chip.Sensor: temperature (°C) and humidity (%RH).
func (d *Dev) Sense(ctx context.Context, dst []chip.Value) ([]chip.Value, error) {
	return sensirion.Sense(ctx, dst, d.Measure)
}

// Halt implements chip.Sensor. In single-shot mode the SHT3x idles between
// measurements by itself, so there is nothing to stop.
func (d *Dev) Halt() error { return nil }

var _ chip.Sensor = (*Dev)(nil)
