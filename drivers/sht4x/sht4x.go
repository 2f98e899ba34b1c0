package sht4x

import (
	"context"
	"fmt"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"

	"github.com/sensorgate/sensorgate/drivers/chip"
	"github.com/sensorgate/sensorgate/drivers/internal/sensirion"
)

// I²C addresses by part (SHT4x-A..., -B..., -C..., datasheet §4.1).
const (
	DefaultAddr uint16 = 0x44
	AddrB       uint16 = 0x45
	AddrC       uint16 = 0x46
)

// Commands, datasheet §4.5 table 7.
const (
	cmdSerial    = 0x89
	cmdSoftReset = 0x94
)

// Precision trades measurement time for repeatability (datasheet table 7).
type Precision = sensirion.Level

// Precision settings.
const (
	High   = sensirion.High
	Medium = sensirion.Medium
	Low    = sensirion.Low
)

// Measurement commands (datasheet §4.5 table 7) and maximum durations
// (§3.1 table 4).
var (
	command  = [...]byte{High: 0xFD, Medium: 0xF6, Low: 0xE0}
	duration = [...]time.Duration{High: 8300 * time.Microsecond, Medium: 4500 * time.Microsecond, Low: 1600 * time.Microsecond}
)

// Opts configure a Dev; the zero value is high precision.
type Opts struct {
	Precision Precision
	// Sleep waits for a measurement (nil: a timer honouring ctx).
	Sleep func(ctx context.Context, d time.Duration) error
}

// Measurement is one reading of the chip.
type Measurement = sensirion.Measurement

// Dev is an SHT4x on a bus.
type Dev struct {
	s      sensirion.Dev
	prec   Precision
	serial uint32
}

// New returns the SHT4x at addr on bus after reading its serial number.
func New(ctx context.Context, bus i2c.Bus, addr uint16, opts *Opts) (*Dev, error) {
	var o Opts
	if opts != nil {
		o = *opts
	}
	if !o.Precision.Valid() {
		return nil, fmt.Errorf("sht4x: bad precision %d", o.Precision)
	}
	d := &Dev{s: sensirion.NewDev(bus, addr, o.Sleep), prec: o.Precision}
	var w [2]uint16
	if err := d.s.Read(ctx, []byte{cmdSerial}, time.Millisecond, w[:]); err != nil {
		return nil, fmt.Errorf("sht4x: serial: %w", err)
	}
	d.serial = uint32(w[0])<<16 | uint32(w[1])
	return d, nil
}

func (d *Dev) String() string { return d.s.Name("SHT4x") }

// Serial returns the serial number read by New.
func (d *Dev) Serial() uint32 { return d.serial }

// Reset sends a soft reset (datasheet §4.5) and waits 1 ms.
func (d *Dev) Reset(ctx context.Context) error {
	if err := d.s.Send(cmdSoftReset); err != nil {
		return fmt.Errorf("sht4x: reset: %w", err)
	}
	return d.s.Wait(ctx, time.Millisecond)
}

// Measure takes one measurement.
func (d *Dev) Measure(ctx context.Context) (Measurement, error) {
	var w [2]uint16
	if err := d.s.Read(ctx, []byte{command[d.prec]}, duration[d.prec], w[:]); err != nil {
		return Measurement{}, fmt.Errorf("sht4x: measure: %w", err)
	}
	return Measurement{Temperature: Temperature(w[0]), Humidity: Humidity(w[1])}, nil
}

// Temperature converts a raw word: T = -45 °C + 175 °C·S/(2^16-1)
// (datasheet §4.6).
func Temperature(s uint16) physic.Temperature { return sensirion.Temperature(s, 65535) }

// Humidity converts a raw word: RH = -6 % + 125 %·S/(2^16-1), cropped to
// [0, 100] % as the datasheet recommends (§4.6).
func Humidity(s uint16) physic.RelativeHumidity {
	rh := -6*physic.PercentRH + physic.RelativeHumidity(125*int64(physic.PercentRH)*int64(s)/65535)
	return min(max(rh, 0), 100*physic.PercentRH)
}

// Sense implements chip.Sensor: temperature (°C) and humidity (%RH).
func (d *Dev) Sense(ctx context.Context, dst []chip.Value) ([]chip.Value, error) {
	return sensirion.Sense(ctx, dst, d.Measure)
}

// Halt implements chip.Sensor. In single-shot mode the SHT4x idles between
// measurements by itself, so there is nothing to stop.
func (d *Dev) Halt() error { return nil }

var _ chip.Sensor = (*Dev)(nil)
