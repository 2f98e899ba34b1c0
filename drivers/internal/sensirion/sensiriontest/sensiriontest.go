package sensiriontest

import (
	"context"
	"errors"
	"math"
	"testing"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"

	"github.com/sensorgate/sensorgate/drivers/chip"
	"github.com/sensorgate/sensorgate/drivers/chiperr"
	"github.com/sensorgate/sensorgate/drivers/internal/bustest"
)

// Chip is one Sensirion chip's playback.
type Chip struct {
	// New opens the chip on bus (with a sleep that returns at once).
	New func(ctx context.Context, bus i2c.Bus) (chip.Sensor, error)
	// Init is what New sends and reads; Sense is one measurement that
	// gives Want; BadCRC is the same measurement with one CRC wrong.
	Init, Sense, BadCRC []i2ctest.IO
	Want                []chip.Value
}

// Run runs every shared test of c as subtests.
func Run(t *testing.T, c Chip) {
	t.Run("Sense", func(t *testing.T) { testSense(t, c) })
	t.Run("CRCError", func(t *testing.T) { testCRCError(t, c) })
	t.Run("NACKVanishAndReturn", func(t *testing.T) { testNACKVanishAndReturn(t, c) })
}

func ops(parts ...[]i2ctest.IO) []i2ctest.IO {
	var o []i2ctest.IO
	for _, p := range parts {
		o = append(o, p...)
	}
	return o
}

// check compares values to the datasheet's within the conversion's
// rounding (1e-4 of a unit: physic's integer steps).
func check(t *testing.T, got, want []chip.Value) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("values %+v, want %+v", got, want)
	}
	for i := range got {
		if got[i].Metric != want[i].Metric || got[i].Unit != want[i].Unit || math.Abs(got[i].V-want[i].V) > 1e-4 {
			t.Fatalf("value %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func testSense(t *testing.T, c Chip) {
	bus := &i2ctest.Playback{Ops: ops(c.Init, c.Sense)}
	d, err := c.New(context.Background(), bus)
	if err != nil {
		t.Fatal(err)
	}
	prev := []chip.Value{{Metric: "before"}}
	got, err := d.Sense(context.Background(), prev)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Metric != "before" {
		t.Fatalf("Sense overwrote dst: %+v", got)
	}
	check(t, got[1:], c.Want)
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
}

func testCRCError(t *testing.T, c Chip) {
	bus := &i2ctest.Playback{Ops: ops(c.Init, c.BadCRC)}
	d, err := c.New(context.Background(), bus)
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Sense(context.Background(), nil)
	if !errors.Is(err, chiperr.ErrCRC) || len(got) != 0 {
		t.Fatalf("Sense %+v, err %v, want ErrCRC and no values", got, err)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
}

// testNACKVanishAndReturn: a NACK fails New, the next New works; the chip
// vanishes (reads fail) and comes back (a fresh New and Sense work).
func testNACKVanishAndReturn(t *testing.T, c Chip) {
	pb := &i2ctest.Playback{Ops: ops(c.Init, c.Sense, c.Init, c.Sense)}
	bus := &bustest.FlakyBus{Bus: pb}
	ctx := context.Background()
	bus.FailNext(1)
	if _, err := c.New(ctx, bus); !errors.Is(err, bustest.ErrNACK) {
		t.Fatalf("New on a NACK: %v", err)
	}
	d, err := c.New(ctx, bus)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Sense(ctx, nil); err != nil {
		t.Fatal(err)
	}
	bus.SetGone(true)
	if _, err := d.Sense(ctx, nil); !errors.Is(err, bustest.ErrNACK) {
		t.Fatalf("Sense while gone: %v", err)
	}
	bus.SetGone(false)
	if d, err = c.New(ctx, bus); err != nil {
		t.Fatal(err)
	}
	got, err := d.Sense(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	check(t, got, c.Want)
	if err := pb.Close(); err != nil {
		t.Fatal(err)
	}
}

// Conversion is one raw word and the datasheet formula's result.
type Conversion struct {
	Raw          uint16
	WantT, WantH float64 // °C, %RH
}

// Conversions checks a chip's word conversions against the formula's
// values: temperature within 1e-6 °C, humidity within 1e-4 %RH.
func Conversions(t *testing.T, cases []Conversion, temp func(uint16) physic.Temperature, hum func(uint16) physic.RelativeHumidity) {
	t.Helper()
	for _, tc := range cases {
		c := chip.Temperature(temp(tc.Raw)).V
		h := chip.Humidity(hum(tc.Raw)).V
		if math.Abs(c-tc.WantT) > 1e-6 {
			t.Errorf("T(%#x) = %v, want %v", tc.Raw, c, tc.WantT)
		}
		if math.Abs(h-tc.WantH) > 1e-4 {
			t.Errorf("RH(%#x) = %v, want %v", tc.Raw, h, tc.WantH)
		}
	}
}
