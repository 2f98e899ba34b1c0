package scd4x

import (
	"context"
	"fmt"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"

	"github.com/sensorgate/sensorgate/drivers/chip"
	"github.com/sensorgate/sensorgate/drivers/chiperr"
	"github.com/sensorgate/sensorgate/drivers/internal/sensirion"
)

// DefaultAddr is the SCD4x's only I²C address (datasheet §3.2).
const DefaultAddr uint16 = 0x62

// Commands and their execution times, datasheet §3.3 table 9.
const (
	cmdStartPeriodic = 0x21B1
	cmdReadMeas      = 0xEC05
	cmdStopPeriodic  = 0x3F86
	cmdDataReady     = 0xE4B8
	cmdSerial        = 0x3682
)

const (
	execRead = time.Millisecond
	execStop = 500 * time.Millisecond
	// pollReady is how often Sense asks whether data is ready.
	pollReady = 250 * time.Millisecond
)

// Opts configure a Dev.
type Opts struct {
	// Sleep waits (nil: a timer honouring ctx).
	Sleep func(ctx context.Context, d time.Duration) error
}

// Measurement is one sample.
type Measurement struct {
	// CO2 in ppm.
	CO2         uint16
	Temperature physic.Temperature
	Humidity    physic.RelativeHumidity
}

// Dev is an SCD4x in periodic measurement mode.
type Dev struct {
	s      sensirion.Dev
	serial uint64
}

// New stops a running measurement, reads the serial number and starts
// periodic measurement. It takes at least 500 ms (the stop command's
// execution time).
func New(ctx context.Context, bus i2c.Bus, addr uint16, opts *Opts) (*Dev, error) {
	var sleep func(context.Context, time.Duration) error
	if opts != nil {
		sleep = opts.Sleep
	}
	d := &Dev{s: sensirion.NewDev(bus, addr, sleep)}
	if err := d.send(cmdStopPeriodic); err != nil {
		return nil, fmt.Errorf("scd4x: stop: %w", err)
	}
	if err := d.s.Wait(ctx, execStop); err != nil {
		return nil, fmt.Errorf("scd4x: %w", err)
	}
	var w [3]uint16
	if err := d.read(ctx, cmdSerial, w[:]); err != nil {
		return nil, fmt.Errorf("scd4x: serial: %w", err)
	}
	d.serial = uint64(w[0])<<32 | uint64(w[1])<<16 | uint64(w[2])
	if err := d.send(cmdStartPeriodic); err != nil {
		return nil, fmt.Errorf("scd4x: start: %w", err)
	}
	return d, nil
}

func (d *Dev) String() string { return d.s.Name("SCD4x") }

// Serial returns the 48-bit serial number read by New.
func (d *Dev) Serial() uint64 { return d.serial }

func (d *Dev) send(c uint16) error { return d.s.Send(byte(c>>8), byte(c)) }

// read sends command c, waits its execution time and reads len(w) words.
func (d *Dev) read(ctx context.Context, c uint16, w []uint16) error {
	return d.s.Read(ctx, []byte{byte(c >> 8), byte(c)}, execRead, w)
}

// Ready reports whether a new measurement is available: the low 11 bits
// of get_data_ready_status are not all zero (datasheet §3.8.2).
func (d *Dev) Ready(ctx context.Context) (bool, error) {
	var w [1]uint16
	if err := d.read(ctx, cmdDataReady, w[:]); err != nil {
		return false, fmt.Errorf("scd4x: data ready: %w", err)
	}
	return w[0]&0x07FF != 0, nil
}

// Measure waits until a measurement is ready (polling every 250 ms, until
// ctx is done: then the error wraps chiperr.ErrNotReady) and reads it.
func (d *Dev) Measure(ctx context.Context) (Measurement, error) {
	for {
		ok, err := d.Ready(ctx)
		if err != nil {
			return Measurement{}, err
		}
		if ok {
			break
		}
		if err := d.s.Wait(ctx, pollReady); err != nil {
			return Measurement{}, fmt.Errorf("scd4x: %w (%w)", chiperr.ErrNotReady, err)
		}
	}
	var w [3]uint16
	if err := d.read(ctx, cmdReadMeas, w[:]); err != nil {
		return Measurement{}, fmt.Errorf("scd4x: read measurement: %w", err)
	}
	return Measurement{CO2: w[0], Temperature: Temperature(w[1]), Humidity: Humidity(w[2])}, nil
}

// Halt stops periodic measurement (the chip then idles at low power).
func (d *Dev) Halt() error {
	if err := d.send(cmdStopPeriodic); err != nil {
		return fmt.Errorf("scd4x: stop: %w", err)
	}
	return nil
}

// Temperature converts a raw word: T = -45 °C + 175 °C·S/2^16 (datasheet
// §3.5.2).
func Temperature(s uint16) physic.Temperature { return sensirion.Temperature(s, 1<<16) }

// Humidity converts a raw word: RH = 100 %·S/2^16 (datasheet §3.5.2).
func Humidity(s uint16) physic.RelativeHumidity { return sensirion.Humidity(s, 1<<16) }

// Sense implements chip.Sensor: co2 (ppm), temperature (°C) and humidity
// (%RH), in that order.
func (d *Dev) Sense(ctx context.Context, dst []chip.Value) ([]chip.Value, error) {
	m, err := d.Measure(ctx)
	if err != nil {
		return dst, err
	}
	return append(dst, chip.Value{Metric: chip.MetricCO2, Unit: chip.UnitPPM, V: float64(m.CO2)},
		chip.Temperature(m.Temperature), chip.Humidity(m.Humidity)), nil
}

var _ chip.Sensor = (*Dev)(nil)
