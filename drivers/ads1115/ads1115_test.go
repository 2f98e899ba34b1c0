package ads1115

import (
	"context"
	"errors"
	"testing"

	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"

	"github.com/sensorgate/sensorgate/drivers/chip"
	"github.com/sensorgate/sensorgate/drivers/internal/bustest"
)

// config builds the config register of a single-shot conversion (ADS1115
// datasheet §9.6.3, table 8): OS=1, MUX=1xx (AINx vs GND), PGA, MODE=1
// (single shot), DR, COMP_QUE=11 (comparator off).
func config(ch int, pga, dr uint16) []byte {
	v := uint16(0x8000) | uint16(4+ch)<<12 | pga<<9 | 0x0100 | dr<<5 | 0x0003
	return []byte{0x01, byte(v >> 8), byte(v)}
}

func TestOutputCodes(t *testing.T) {
	// ADS1115 datasheet §9.3.3 table 3: at FSR ±4.096 V (PGA 001) one LSB is
	// 125 µV, 0x7FFF is +FS - 1 LSB, 0x8000 is -FS. ADS1015 datasheet table
	// 3: 12-bit codes left-aligned in the register, 2 mV per LSB at ±4.096 V.
	for _, tc := range []struct {
		chip string
		ch   int
		fs   physic.ElectricPotential
		pga  uint16
		dr   uint16 // fastest data rate: 860 SPS (111) / 3300 SPS (110)
		code []byte
		want physic.ElectricPotential
	}{
		{ADS1115, 0, 4096 * physic.MilliVolt, 1, 7, []byte{0x40, 0x00}, 2048 * physic.MilliVolt},
		{ADS1115, 1, 4 * physic.Volt, 1, 7, []byte{0x7F, 0xFF}, 4096*physic.MilliVolt - 125*physic.MicroVolt},
		{ADS1115, 2, 3300 * physic.MilliVolt, 1, 7, []byte{0x80, 0x00}, -4096 * physic.MilliVolt},
		{ADS1115, 3, 200 * physic.MilliVolt, 5, 7, []byte{0x00, 0x01}, 256 * physic.MilliVolt / 32768},
		{ADS1015, 0, 4096 * physic.MilliVolt, 1, 6, []byte{0x7F, 0xF0}, 4094 * physic.MilliVolt},
		{ADS1015, 1, 6 * physic.Volt, 0, 6, []byte{0x00, 0x10}, 3 * physic.MilliVolt},
	} {
		bus := &i2ctest.Playback{Ops: []i2ctest.IO{
			{Addr: 0x48, W: config(tc.ch, tc.pga, tc.dr)},
			{Addr: 0x48, W: []byte{0x00}, R: tc.code},
		}}
		d, err := New(bus, DefaultAddr, tc.chip, tc.ch, tc.fs, nil)
		if err != nil {
			t.Fatal(err)
		}
		v, _, err := d.Measure(context.Background())
		if err != nil {
			t.Fatalf("%s ch%d: %v", tc.chip, tc.ch, err)
		}
		if v != tc.want {
			t.Errorf("%s ch%d code % x: %v, want %v", tc.chip, tc.ch, tc.code, v, tc.want)
		}
		if err := bus.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBadArgs(t *testing.T) {
	bus := &i2ctest.Playback{}
	if _, err := New(bus, DefaultAddr, ADS1115, 4, physic.Volt, nil); err == nil {
		t.Fatal("channel 4 accepted")
	}
	if _, err := New(bus, DefaultAddr, "ADS9999", 0, physic.Volt, nil); err == nil {
		t.Fatal("unknown chip accepted")
	}
	if _, err := New(bus, DefaultAddr, ADS1115, 0, 10*physic.Volt, nil); err == nil {
		t.Fatal("10 V full scale accepted")
	}
}

func TestNACKVanishAndReturn(t *testing.T) {
	conv := []i2ctest.IO{{Addr: 0x49, W: config(0, 1, 7)}, {Addr: 0x49, W: []byte{0x00}, R: []byte{0x20, 0x00}}}
	pb := &i2ctest.Playback{Ops: append(append([]i2ctest.IO{}, conv...), conv...)}
	bus := &bustest.FlakyBus{Bus: pb}
	d, err := New(bus, 0x49, ADS1115, 0, 4096*physic.MilliVolt, nil)
	if err != nil {
		t.Fatal(err)
	}
	bus.FailNext(1)
	if _, _, err := d.Measure(context.Background()); !errors.Is(err, bustest.ErrNACK) {
		t.Fatalf("NACK: %v", err)
	}
	if v, raw, err := d.Measure(context.Background()); err != nil || v != 1024*physic.MilliVolt || raw != 0x2000 {
		t.Fatal(v, raw, err)
	}
	bus.SetGone(true)
	if _, _, err := d.Measure(context.Background()); !errors.Is(err, bustest.ErrNACK) {
		t.Fatalf("gone: %v", err)
	}
	bus.SetGone(false)
	if v, _, err := d.Measure(context.Background()); err != nil || v != 1024*physic.MilliVolt {
		t.Fatal(v, err)
	}
	if err := pb.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDifferential(t *testing.T) {
	// MUX 011 = AIN2 - AIN3 (datasheet table 8); 0xC000 at ±2.048 V (PGA 010) is -1.024 V.
	v := uint16(0x8000) | 3<<12 | 2<<9 | 0x0100 | 7<<5 | 0x0003
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{
		{Addr: 0x48, W: []byte{0x01, byte(v >> 8), byte(v)}},
		{Addr: 0x48, W: []byte{0x00}, R: []byte{0xC0, 0x00}},
	}}
	d, err := NewDifferential(bus, DefaultAddr, ADS1115, 2, 3, 2*physic.Volt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := d.Measure(context.Background()); err != nil || got != -1024*physic.MilliVolt {
		t.Fatal(got, err)
	}
	if d.String() != "ADS1115{AIN2-AIN3}" {
		t.Fatal(d.String())
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := NewDifferential(bus, DefaultAddr, ADS1115, 1, 2, physic.Volt, nil); err == nil || ValidPair(1, 2) || !ValidPair(0, 3) {
		t.Fatal("1-2 accepted")
	}
}

// The chip.Sensor view: code 0x4000 at ±4.096 V is 2.048 V (datasheet
// §9.3.3 table 3); with no Output it is reported as volts, with one as
// volts × scale + offset under the configured metric and unit.
func TestSenseValues(t *testing.T) {
	ops := []i2ctest.IO{{Addr: 0x48, W: config(0, 1, 7)}, {Addr: 0x48, W: []byte{0x00}, R: []byte{0x40, 0x00}}}
	for _, tc := range []struct {
		out  *Output
		want chip.Value
	}{
		{nil, chip.Value{Metric: "voltage", Unit: "V", V: 2.048}},
		{&Output{Metric: "level", Unit: "cm", Scale: 50, Offset: -25}, chip.Value{Metric: "level", Unit: "cm", V: 77.4}},
	} {
		bus := &i2ctest.Playback{Ops: ops, DontPanic: true}
		d, err := New(bus, DefaultAddr, ADS1115, 0, 4096*physic.MilliVolt, tc.out)
		if err != nil {
			t.Fatal(err)
		}
		vs, err := d.Sense(context.Background(), nil)
		if err != nil || len(vs) != 1 || vs[0].Metric != tc.want.Metric || vs[0].Unit != tc.want.Unit || vs[0].V-tc.want.V > 1e-9 || tc.want.V-vs[0].V > 1e-9 {
			t.Fatalf("%+v: %+v %v", tc.out, vs, err)
		}
		if err := bus.Close(); err != nil {
			t.Fatal(err)
		}
		// Past the playback every Tx fails, like a vanished chip.
		if vs, err := d.Sense(context.Background(), vs); err == nil || len(vs) != 1 {
			t.Fatalf("Sense past the playback: %+v %v", vs, err)
		}
		if err := d.Halt(); err != nil {
			t.Fatal(err)
		}
	}
}
