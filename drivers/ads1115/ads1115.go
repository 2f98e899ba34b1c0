package ads1115

import (
	"context"
	"fmt"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/ads1x15"

	"github.com/sensorgate/sensorgate/drivers/chip"
)

// DefaultAddr is the address with ADDR tied to GND (0x48..0x4B possible,
// ADS1115 datasheet §9.5.1.1 table 4).
const DefaultAddr uint16 = 0x48

// Chip variants.
const (
	ADS1115 = "ADS1115"
	ADS1015 = "ADS1015"
)

// Dev is one channel of an ADS1x15.
type Dev struct {
	chip  string
	input string
	pin   ads1x15.PinADC
	out   Output
}

// Output is what Sense reports: the metric Metric in Unit, computed as
// volts × Scale + Offset. A nil *Output in New means "voltage" in "V",
// scale 1, offset 0; a non-nil one is taken as it is.
type Output struct {
	Metric, Unit  string
	Scale, Offset float64
}

var volts = Output{Metric: "voltage", Unit: "V", Scale: 1}

// channels maps single-ended inputs to periph's mux values (MUX[2:0] =
// 100..111, ADS1115 datasheet §9.6.3 table 8).
var channels = [...]ads1x15.Channel{ads1x15.Channel0, ads1x15.Channel1, ads1x15.Channel2, ads1x15.Channel3}

// differential maps the input pairs the multiplexer offers (MUX[2:0] =
// 000..011, ADS1115 datasheet §9.6.3 table 8) to periph's mux values.
var differential = map[[2]int]ads1x15.Channel{
	{0, 1}: ads1x15.Channel0Minus1, {0, 3}: ads1x15.Channel0Minus3,
	{1, 3}: ads1x15.Channel1Minus3, {2, 3}: ads1x15.Channel2Minus3,
}

// ValidPair reports whether AIN<pos> - AIN<neg> is a differential input of
// the chip (0-1, 0-3, 1-3, 2-3).
func ValidPair(pos, neg int) bool { _, ok := differential[[2]int{pos, neg}]; return ok }

// New returns channel (0-3, single-ended against GND) of the chip at addr
// with a full-scale range of at least fullScale, reporting out (nil: volts).
// No bus traffic happens until Sense.
func New(bus i2c.Bus, addr uint16, chip string, channel int, fullScale physic.ElectricPotential, out *Output) (*Dev, error) {
	if channel < 0 || channel > 3 {
		return nil, fmt.Errorf("ads1115: channel %d: want 0-3", channel)
	}
	return newDev(bus, addr, chip, channels[channel], fmt.Sprintf("AIN%d", channel), fullScale, out)
}

// NewDifferential returns the differential input AIN<pos> - AIN<neg> (pairs
// 0-1, 0-3, 1-3, 2-3); the value is negative when AIN<neg> is higher.
func NewDifferential(bus i2c.Bus, addr uint16, chip string, pos, neg int, fullScale physic.ElectricPotential, out *Output) (*Dev, error) {
	c, ok := differential[[2]int{pos, neg}]
	if !ok {
		return nil, fmt.Errorf("ads1115: AIN%d-AIN%d is not a differential pair (want 0-1, 0-3, 1-3 or 2-3)", pos, neg)
	}
	return newDev(bus, addr, chip, c, fmt.Sprintf("AIN%d-AIN%d", pos, neg), fullScale, out)
}

func newDev(bus i2c.Bus, addr uint16, chip string, c ads1x15.Channel, name string, fullScale physic.ElectricPotential, out *Output) (*Dev, error) {
	var d *ads1x15.Dev
	var err error
	switch chip {
	case ADS1115:
		d, err = ads1x15.NewADS1115(bus, &ads1x15.Opts{I2cAddress: addr})
	case ADS1015:
		d, err = ads1x15.NewADS1015(bus, &ads1x15.Opts{I2cAddress: addr})
	default:
		return nil, fmt.Errorf("ads1115: unknown chip %q", chip)
	}
	if err != nil {
		return nil, fmt.Errorf("ads1115: %w", err)
	}
	// 1 Hz is below every data rate; SaveEnergy then picks the fastest.
	pin, err := d.PinForChannel(c, fullScale, physic.Hertz, ads1x15.SaveEnergy)
	if err != nil {
		return nil, fmt.Errorf("ads1115: %w", err)
	}
	dev := &Dev{chip: chip, input: name, pin: pin, out: volts}
	if out != nil {
		dev.out = *out
	}
	return dev, nil
}

func (d *Dev) String() string { return d.chip + "{" + d.input + "}" }

// Measure converts once and returns the voltage and the raw code.
func (d *Dev) Measure(ctx context.Context) (physic.ElectricPotential, int32, error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	s, err := d.pin.Read()
	if err != nil {
		return 0, 0, fmt.Errorf("ads1115: %s: %w", d, err)
	}
	return s.V, s.Raw, nil
}

// Sense implements chip.Sensor: one conversion, reported as the Output
// given to New.
func (d *Dev) Sense(ctx context.Context, dst []chip.Value) ([]chip.Value, error) {
	v, _, err := d.Measure(ctx)
	if err != nil {
		return dst, err
	}
	return append(dst, chip.Value{Metric: d.out.Metric, Unit: d.out.Unit, V: chip.Volts(v)*d.out.Scale + d.out.Offset}), nil
}

// Halt implements chip.Sensor. In single-shot mode the chip powers down
// after each conversion by itself (datasheet §9.4.2), so there is nothing
// to stop.
func (d *Dev) Halt() error { return nil }

var _ chip.Sensor = (*Dev)(nil)
