package sht3x

import (
	"context"
	"errors"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"

	"github.com/sensorgate/sensorgate/drivers/chiperr"
	"github.com/sensorgate/sensorgate/drivers/internal/bustest"
	"github.com/sensorgate/sensorgate/drivers/internal/sensirion"
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

func TestConversion(t *testing.T) {
	// Datasheet §4.13: T = -45 + 175·S/65535, RH = 100·S/65535.
	for _, tc := range []struct {
		raw   uint16
		wantT float64 // °C
		wantH float64 // %RH
	}{
		{0x0000, -45, 0},
		{0xFFFF, 130, 100},
		{0xBEEF, -45 + 175*48879.0/65535, 100 * 48879.0 / 65535},
		{0x6666, -45 + 175*26214.0/65535, 100 * 26214.0 / 65535},
	} {
		c := float64(Temperature(tc.raw)-physic.ZeroCelsius) / float64(physic.Kelvin)
		h := float64(Humidity(tc.raw)) / float64(physic.PercentRH)
		if d := c - tc.wantT; d > 1e-6 || d < -1e-6 {
			t.Errorf("T(%#x) = %v, want %v", tc.raw, c, tc.wantT)
		}
		if d := h - tc.wantH; d > 1e-4 || d < -1e-4 {
			t.Errorf("RH(%#x) = %v, want %v", tc.raw, h, tc.wantH)
		}
	}
}

func TestSense(t *testing.T) {
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{opStatus, opMeasure, opRead}}
	d, err := New(context.Background(), bus, DefaultAddr, noSleep)
	if err != nil {
		t.Fatal(err)
	}
	m, err := d.Measure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Temperature.Celsius(); got < 85.51 || got > 85.53 {
		t.Fatalf("temperature %v, want 85.52 °C", m.Temperature)
	}
	if m.Humidity < 50*physic.PercentRH || m.Humidity > 50*physic.PercentRH+physic.PercentRH/100 {
		t.Fatalf("humidity %v, want 50 %%", m.Humidity)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCRCError(t *testing.T) {
	bad := opRead
	bad.R = []byte{0xBE, 0xEF, 0x92, 0x80, 0x00, 0xA3}
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{opStatus, opMeasure, bad}}
	d, err := New(context.Background(), bus, DefaultAddr, noSleep)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Measure(context.Background()); !errors.Is(err, chiperr.ErrCRC) {
		t.Fatalf("err %v, want ErrCRC", err)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
	// A bad CRC on the status register fails New.
	bus = &i2ctest.Playback{Ops: []i2ctest.IO{{Addr: 0x44, W: []byte{0xF3, 0x2D}, R: []byte{0x80, 0x10, 0x00}}}}
	if _, err := New(context.Background(), bus, DefaultAddr, noSleep); !errors.Is(err, chiperr.ErrCRC) {
		t.Fatalf("New with bad status CRC: %v", err)
	}
}

func TestNACKVanishAndReturn(t *testing.T) {
	pb := &i2ctest.Playback{Ops: []i2ctest.IO{opStatus, opMeasure, opRead, opStatus, opMeasure, opRead}}
	bus := &bustest.FlakyBus{Bus: pb}
	ctx := context.Background()
	// NACK on the address: New fails.
	bus.FailNext(1)
	if _, err := New(ctx, bus, DefaultAddr, noSleep); !errors.Is(err, bustest.ErrNACK) {
		t.Fatalf("New on a NACK: %v", err)
	}
	d, err := New(ctx, bus, DefaultAddr, noSleep)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Measure(ctx); err != nil {
		t.Fatal(err)
	}
	// The chip vanishes: reads fail.
	bus.SetGone(true)
	if _, err := d.Measure(ctx); !errors.Is(err, bustest.ErrNACK) {
		t.Fatalf("Sense while gone: %v", err)
	}
	// And comes back: a fresh New and Sense work.
	bus.SetGone(false)
	d, err = New(ctx, bus, DefaultAddr, noSleep)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Measure(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pb.Close(); err != nil {
		t.Fatal(err)
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
