package sht3x

import (
	"context"
	"errors"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/sensorgate/sensorgate/drivers/chip"
	"github.com/sensorgate/sensorgate/drivers/chiperr"
	"github.com/sensorgate/sensorgate/drivers/internal/sensirion"
	"github.com/sensorgate/sensorgate/drivers/internal/sensirion/sensiriontest"
)

var noSleep = &Opts{Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }}

// Bytes on the wire. The status register after power-on is 0x8010 (alert
// pending, reset detected: datasheet §4.11 table 17), CRC 0xE1. The
// measurement uses the CRC example of §4.12 as the temperature word (0xBEEF,
// CRC 0x92) and 0x8000 (CRC 0xA2) as the humidity word.
var (
	opStatus  = i2ctest.IO{Addr: 0x44, W: []byte{0xF3, 0x2D}, R: []byte{0x80, 0x10, 0xE1}}
	opMeasure = i2ctest.IO{Addr: 0x44, W: []byte{0x24, 0x00}}
	opRead    = i2ctest.IO{Addr: 0x44, R: []byte{0xBE, 0xEF, 0x92, 0x80, 0x00, 0xA2}}
)

func family() sensiriontest.Chip {
	bad := opRead
	bad.R = []byte{0xBE, 0xEF, 0x92, 0x80, 0x00, 0xA3}
	return sensiriontest.Chip{
		New: func(ctx context.Context, bus i2c.Bus) (chip.Sensor, error) {
			return New(ctx, bus, DefaultAddr, noSleep)
		},
		Init:   []i2ctest.IO{opStatus},
		Sense:  []i2ctest.IO{opMeasure, opRead},
		BadCRC: []i2ctest.IO{opMeasure, bad},
		// 0xBEEF: 85.52 °C; 0x8000: 50 %RH.
		Want: []chip.Value{
			{Metric: chip.MetricTemp, Unit: chip.UnitCelsius, V: -45 + 175*48879.0/65535},
			{Metric: chip.MetricHum, Unit: chip.UnitPercent, V: 100 * 32768.0 / 65535},
		},
	}
}

func TestFamily(t *testing.T) { sensiriontest.Run(t, family()) }

func TestConversion(t *testing.T) {
	// Datasheet §4.13: T = -45 + 175·S/65535, RH = 100·S/65535.
	sensiriontest.Conversions(t, []sensiriontest.Conversion{
		{Raw: 0x0000, WantT: -45, WantH: 0},
		{Raw: 0xFFFF, WantT: 130, WantH: 100},
		{Raw: 0xBEEF, WantT: -45 + 175*48879.0/65535, WantH: 100 * 48879.0 / 65535},
		{Raw: 0x6666, WantT: -45 + 175*26214.0/65535, WantH: 100 * 26214.0 / 65535},
	}, Temperature, Humidity)
}

func TestStatusCRC(t *testing.T) {
	// A bad CRC on the status register fails New.
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{{Addr: 0x44, W: []byte{0xF3, 0x2D}, R: []byte{0x80, 0x10, 0x00}}}}
	if _, err := New(context.Background(), bus, DefaultAddr, noSleep); !errors.Is(err, chiperr.ErrCRC) {
		t.Fatalf("New with bad status CRC: %v", err)
	}
}

func TestSoftResetAndRepeatability(t *testing.T) {
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{
		{Addr: 0x45, W: []byte{0xF3, 0x2D}, R: []byte{0x00, 0x00, 0x81}},
		{Addr: 0x45, W: []byte{0x30, 0xA2}},
		{Addr: 0x45, W: []byte{0x24, 0x16}},
		{Addr: 0x45, R: []byte{0x66, 0x66, 0x93, 0x80, 0x00, 0xA2}},
	}}
	d, err := New(context.Background(), bus, AltAddr, &Opts{Repeatability: Low, Sleep: noSleep.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	m, err := d.Measure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c := m.Temperature.Celsius(); c < 24.99 || c > 25.0 {
		t.Fatalf("temperature %v", m.Temperature)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
	// A cancelled context stops the wait for the measurement.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d2 := &Dev{s: sensirion.NewDev(&i2ctest.Playback{Ops: []i2ctest.IO{{Addr: 0x45, W: []byte{0x24, 0x00}}}}, 0x45,
		func(ctx context.Context, _ time.Duration) error { return ctx.Err() })}
	if _, err := d2.Measure(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Sense: %v", err)
	}
}
