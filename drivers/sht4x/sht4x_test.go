package sht4x

import (
	"context"
	"errors"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"

	"github.com/sensorgate/sensorgate/drivers/chiperr"
	"github.com/sensorgate/sensorgate/drivers/internal/bustest"
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

func TestConversion(t *testing.T) {
	// Datasheet §4.6: RH = -6 + 125·S/65535 (cropped to 0..100), T = -45 + 175·S/65535.
	for _, tc := range []struct {
		raw   uint16
		wantT float64
		wantH float64
	}{
		{0x0000, -45, 0},   // -6 % cropped to 0
		{0xFFFF, 130, 100}, // 119 % cropped to 100
		{0x8000, -45 + 175*32768.0/65535, -6 + 125*32768.0/65535},
		{0x6666, -45 + 175*26214.0/65535, -6 + 125*26214.0/65535},
	} {
		c := Temperature(tc.raw).Celsius()
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
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{opSerialCmd, opSerialRead, opMeasure, opRead}}
	d, err := New(context.Background(), bus, DefaultAddr, noSleep)
	if err != nil {
		t.Fatal(err)
	}
	if d.Serial() != 0x12345678 {
		t.Fatalf("serial %#x", d.Serial())
	}
	m, err := d.Measure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c := m.Temperature.Celsius(); c < 85.51 || c > 85.53 {
		t.Fatalf("temperature %v", m.Temperature)
	}
	if h := float64(m.Humidity) / float64(physic.PercentRH); h < 56.50 || h > 56.51 {
		t.Fatalf("humidity %v, want 56.5 %%", m.Humidity)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCRCError(t *testing.T) {
	bad := i2ctest.IO{Addr: 0x44, R: []byte{0xBE, 0xEF, 0x93, 0x80, 0x00, 0xA2}}
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{opSerialCmd, opSerialRead, opMeasure, bad}}
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
}

func TestNACKVanishAndReturn(t *testing.T) {
	pb := &i2ctest.Playback{Ops: []i2ctest.IO{opSerialCmd, opSerialRead, opMeasure, opRead, opSerialCmd, opSerialRead, opMeasure, opRead}}
	bus := &bustest.FlakyBus{Bus: pb}
	ctx := context.Background()
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
	bus.SetGone(true)
	if _, err := d.Measure(ctx); !errors.Is(err, bustest.ErrNACK) {
		t.Fatalf("Sense while gone: %v", err)
	}
	bus.SetGone(false)
	if d, err = New(ctx, bus, DefaultAddr, noSleep); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Measure(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pb.Close(); err != nil {
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
