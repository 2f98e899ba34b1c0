package sensirion

import (
	"context"
	"fmt"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"

	"github.com/sensorgate/sensorgate/drivers/chip"
)

// Level is the SHT3x's repeatability and the SHT4x's precision: a higher
// level takes longer and is less noisy. Each chip maps it to its own
// commands and durations.
type Level int

// Levels.
const (
	High Level = iota
	Medium
	Low
)

// Valid reports whether l is one of the levels.
func (l Level) Valid() bool { return l >= High && l <= Low }

// Measurement is one temperature and humidity reading (SHT3x, SHT4x).
type Measurement struct {
	Temperature physic.Temperature
	Humidity    physic.RelativeHumidity
}

// Append appends m as chip values: temperature (°C), humidity (%RH).
func (m Measurement) Append(dst []chip.Value) []chip.Value {
	return append(dst, chip.Temperature(m.Temperature), chip.Humidity(m.Humidity))
}

// Dev is what every Sensirion driver does on the bus: send a command, wait
// its execution time, read CRC-checked words. The zero value is not usable;
// use NewDev.
type Dev struct {
	i2c   i2c.Dev
	sleep func(context.Context, time.Duration) error
}

// NewDev returns the device at addr on bus; a nil sleep means [Sleep].
func NewDev(bus i2c.Bus, addr uint16, sleep func(context.Context, time.Duration) error) Dev {
	if sleep == nil {
		sleep = Sleep
	}
	return Dev{i2c: i2c.Dev{Bus: bus, Addr: addr}, sleep: sleep}
}

// Name formats the chip's String: "SHT3x{bus 0x44}".
func (d *Dev) Name(chip string) string { return fmt.Sprintf("%s{%s %#x}", chip, d.i2c.Bus, d.i2c.Addr) }

// Send writes a command.
func (d *Dev) Send(cmd ...byte) error { return d.i2c.Tx(cmd, nil) }

// Wait sleeps for d or until ctx is done.
func (d *Dev) Wait(ctx context.Context, wait time.Duration) error { return d.sleep(ctx, wait) }

// Read sends cmd, waits its execution time and reads len(w) words into w
// (at most 3).
func (d *Dev) Read(ctx context.Context, cmd []byte, wait time.Duration, w []uint16) error {
	if err := d.Send(cmd...); err != nil {
		return err
	}
	if err := d.sleep(ctx, wait); err != nil {
		return err
	}
	var b [9]byte
	if err := d.i2c.Tx(nil, b[:3*len(w)]); err != nil {
		return err
	}
	return Words(w, b[:3*len(w)])
}

// ReadNow writes cmd and reads len(w) words (at most 3) in one transfer,
// for the commands that answer at once (the SHT3x's status register).
func (d *Dev) ReadNow(cmd []byte, w []uint16) error {
	var b [9]byte
	if err := d.i2c.Tx(cmd, b[:3*len(w)]); err != nil {
		return err
	}
	return Words(w, b[:3*len(w)])
}

// Temperature converts a raw word: T = -45 °C + 175 °C·S/den, where den
// is 2^16-1 (SHT3x, SHT4x) or 2^16 (SCD4x) by the chip's datasheet.
func Temperature(s uint16, den int64) physic.Temperature {
	return physic.ZeroCelsius - 45*physic.Kelvin + physic.Temperature(175*int64(physic.Kelvin)*int64(s)/den)
}

// Humidity converts a raw word: RH = 100 %·S/den (den as for Temperature).
func Humidity(s uint16, den int64) physic.RelativeHumidity {
	return physic.RelativeHumidity(100 * int64(physic.PercentRH) * int64(s) / den)
}

// Sense is the chip.Sensor Sense of the temperature and humidity chips:
// one measure, appended to dst, or dst unchanged and the error.
func Sense(ctx context.Context, dst []chip.Value, measure func(context.Context) (Measurement, error)) ([]chip.Value, error) {
	m, err := measure(ctx)
	if err != nil {
		return dst, err
	}
	return m.Append(dst), nil
}
