package scd4x

import (
	"context"
	"errors"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"

	"github.com/sensorgate/sensorgate/drivers/chip"
	"github.com/sensorgate/sensorgate/drivers/chiperr"
	"github.com/sensorgate/sensorgate/drivers/internal/sensirion/sensiriontest"
)

var noSleep = &Opts{Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }}

const a = 0x62

// Bytes from the SCD4x datasheet: §3.5.2 read_measurement example response
// 0x01F4 0x33 | 0x6667 0xA2 | 0x5EB9 0x3C = 500 ppm, 25 °C, 37 %RH;
// get_data_ready_status (§3.8.2) 0x8006 (CRC 0x04): ready (low 11 bits 6),
// 0x8000 (CRC 0xA2): not ready. Serial 0x1234 5678 9ABC.
var (
	opStop       = i2ctest.IO{Addr: a, W: []byte{0x3F, 0x86}}
	opSerialCmd  = i2ctest.IO{Addr: a, W: []byte{0x36, 0x82}}
	opSerialRead = i2ctest.IO{Addr: a, R: []byte{0x12, 0x34, 0x37, 0x56, 0x78, 0x7D, 0x9A, 0xBC, 0xE0}}
	opStart      = i2ctest.IO{Addr: a, W: []byte{0x21, 0xB1}}
	opReadyCmd   = i2ctest.IO{Addr: a, W: []byte{0xE4, 0xB8}}
	opReady      = i2ctest.IO{Addr: a, R: []byte{0x80, 0x06, 0x04}}
	opNotReady   = i2ctest.IO{Addr: a, R: []byte{0x80, 0x00, 0xA2}}
	opMeasCmd    = i2ctest.IO{Addr: a, W: []byte{0xEC, 0x05}}
	opMeas       = i2ctest.IO{Addr: a, R: []byte{0x01, 0xF4, 0x33, 0x66, 0x67, 0xA2, 0x5E, 0xB9, 0x3C}}
)

func initOps() []i2ctest.IO { return []i2ctest.IO{opStop, opSerialCmd, opSerialRead, opStart} }

func TestSenseDatasheetExample(t *testing.T) {
	ops := append(initOps(), opReadyCmd, opNotReady, opReadyCmd, opReady, opMeasCmd, opMeas, opStop)
	bus := &i2ctest.Playback{Ops: ops}
	d, err := New(context.Background(), bus, DefaultAddr, noSleep)
	if err != nil {
		t.Fatal(err)
	}
	if d.Serial() != 0x123456789ABC {
		t.Fatalf("serial %#x", d.Serial())
	}
	m, err := d.Measure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if m.CO2 != 500 {
		t.Fatalf("CO2 %d, want 500", m.CO2)
	}
	if c := m.Temperature.Celsius(); c < 24.99 || c > 25.01 {
		t.Fatalf("temperature %v, want 25 °C", m.Temperature)
	}
	if h := float64(m.Humidity) / float64(physic.PercentRH); h < 36.99 || h > 37.01 {
		t.Fatalf("humidity %v, want 37 %%", m.Humidity)
	}
	if err := d.Halt(); err != nil {
		t.Fatal(err)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNotReadyUntilDeadline(t *testing.T) {
	ops := append(initOps(), opReadyCmd, opNotReady)
	bus := &i2ctest.Playback{Ops: ops}
	sleeps := 0
	d, err := New(context.Background(), bus, DefaultAddr, &Opts{Sleep: func(ctx context.Context, dd time.Duration) error {
		if dd == pollReady {
			sleeps++
			return context.DeadlineExceeded
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Measure(context.Background()); !errors.Is(err, chiperr.ErrNotReady) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want ErrNotReady", err)
	}
	if sleeps != 1 {
		t.Fatalf("%d poll sleeps", sleeps)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
}

func family() sensiriontest.Chip {
	bad := opMeas
	bad.R = []byte{0x01, 0xF4, 0x33, 0x66, 0x67, 0xA2, 0x5E, 0xB9, 0x3D}
	return sensiriontest.Chip{
		New: func(ctx context.Context, bus i2c.Bus) (chip.Sensor, error) {
			return New(ctx, bus, DefaultAddr, noSleep)
		},
		// After a power cycle the chip is idle: New restarts periodic
		// measurement, so a re-opened chip replays Init.
		Init:   initOps(),
		Sense:  []i2ctest.IO{opReadyCmd, opReady, opMeasCmd, opMeas},
		BadCRC: []i2ctest.IO{opReadyCmd, opReady, opMeasCmd, bad},
		// Datasheet §3.5.2 example: 500 ppm, 25 °C, 37 %RH.
		Want: []chip.Value{
			{Metric: chip.MetricCO2, Unit: chip.UnitPPM, V: 500},
			{Metric: chip.MetricTemp, Unit: chip.UnitCelsius, V: -45 + 175*float64(0x6667)/65536},
			{Metric: chip.MetricHum, Unit: chip.UnitPercent, V: 100 * float64(0x5EB9) / 65536},
		},
	}
}

func TestFamily(t *testing.T) { sensiriontest.Run(t, family()) }

func TestConversion(t *testing.T) {
	// Datasheet §3.5.2: T = -45 + 175·S/2^16, RH = 100·S/2^16.
	sensiriontest.Conversions(t, []sensiriontest.Conversion{
		{Raw: 0x0000, WantT: -45, WantH: 0},
		{Raw: 0x6667, WantT: -45 + 175*26215.0/65536, WantH: 100 * 26215.0 / 65536},
		{Raw: 0x5EB9, WantT: -45 + 175*24249.0/65536, WantH: 100 * 24249.0 / 65536},
	}, Temperature, Humidity)
}
