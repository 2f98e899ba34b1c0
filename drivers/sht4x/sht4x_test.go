package sht4x

import (
	"context"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/sensorgate/sensorgate/drivers/chip"
	"github.com/sensorgate/sensorgate/drivers/internal/sensirion/sensiriontest"
)

var noSleep = &Opts{Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }}

// Serial 0x12345678: words 0x1234 (CRC 0x37) and 0x5678 (CRC 0x7D). The
// measurement's temperature word is the §4.4 CRC example 0xBEEF (CRC 0x92),
// its humidity word 0x8000 (CRC 0xA2).
var (
	opSerialCmd  = i2ctest.IO{Addr: 0x44, W: []byte{0x89}}
	opSerialRead = i2ctest.IO{Addr: 0x44, R: []byte{0x12, 0x34, 0x37, 0x56, 0x78, 0x7D}}
	opMeasure    = i2ctest.IO{Addr: 0x44, W: []byte{0xFD}}
	opRead       = i2ctest.IO{Addr: 0x44, R: []byte{0xBE, 0xEF, 0x92, 0x80, 0x00, 0xA2}}
)

func family() sensiriontest.Chip {
	return sensiriontest.Chip{
		New: func(ctx context.Context, bus i2c.Bus) (chip.Sensor, error) {
			return New(ctx, bus, DefaultAddr, noSleep)
		},
		Init:   []i2ctest.IO{opSerialCmd, opSerialRead},
		Sense:  []i2ctest.IO{opMeasure, opRead},
		BadCRC: []i2ctest.IO{opMeasure, {Addr: 0x44, R: []byte{0xBE, 0xEF, 0x93, 0x80, 0x00, 0xA2}}},
		// 0xBEEF: 85.52 °C; 0x8000: 56.5 %RH.
		Want: []chip.Value{
			{Metric: chip.MetricTemp, Unit: chip.UnitCelsius, V: -45 + 175*48879.0/65535},
			{Metric: chip.MetricHum, Unit: chip.UnitPercent, V: -6 + 125*32768.0/65535},
		},
	}
}

func TestFamily(t *testing.T) { sensiriontest.Run(t, family()) }

func TestConversion(t *testing.T) {
	// Datasheet §4.6: RH = -6 + 125·S/65535 (cropped to 0..100), T = -45 + 175·S/65535.
	sensiriontest.Conversions(t, []sensiriontest.Conversion{
		{Raw: 0x0000, WantT: -45, WantH: 0},   // -6 % cropped to 0
		{Raw: 0xFFFF, WantT: 130, WantH: 100}, // 119 % cropped to 100
		{Raw: 0x8000, WantT: -45 + 175*32768.0/65535, WantH: -6 + 125*32768.0/65535},
		{Raw: 0x6666, WantT: -45 + 175*26214.0/65535, WantH: -6 + 125*26214.0/65535},
	}, Temperature, Humidity)
}

func TestSerial(t *testing.T) {
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{opSerialCmd, opSerialRead}}
	d, err := New(context.Background(), bus, DefaultAddr, noSleep)
	if err != nil {
		t.Fatal(err)
	}
	if d.Serial() != 0x12345678 {
		t.Fatalf("serial %#x", d.Serial())
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestResetAndPrecision(t *testing.T) {
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{
		{Addr: 0x46, W: []byte{0x89}}, {Addr: 0x46, R: []byte{0x12, 0x34, 0x37, 0x56, 0x78, 0x7D}},
		{Addr: 0x46, W: []byte{0x94}},
		{Addr: 0x46, W: []byte{0xE0}}, {Addr: 0x46, R: []byte{0x66, 0x66, 0x93, 0x80, 0x00, 0xA2}},
	}}
	d, err := New(context.Background(), bus, AddrC, &Opts{Precision: Low, Sleep: noSleep.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Measure(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
}
