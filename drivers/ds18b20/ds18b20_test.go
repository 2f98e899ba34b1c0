package ds18b20

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"periph.io/x/conn/v3/physic"

	"github.com/sensorgate/sensorgate/drivers/chip"
	"github.com/sensorgate/sensorgate/drivers/chiperr"
)

// w1slave renders what the kernel's w1-therm driver writes for scratchpad
// sp (with its CRC byte computed unless crc >= 0) and verdict.
func w1slave(sp [9]byte, verdict string) string {
	var hex []string
	for _, b := range sp {
		hex = append(hex, fmt.Sprintf("%02x", b))
	}
	h := strings.Join(hex, " ")
	t := int(Raw(sp)) * 1000 / 16
	return fmt.Sprintf("%s : crc=%02x %s\n%s t=%d\n", h, sp[8], verdict, h, t)
}

// scratchpad returns a 12-bit scratchpad holding raw, with a valid CRC.
func scratchpad(raw uint16) [9]byte {
	sp := [9]byte{byte(raw), byte(raw >> 8), 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10}
	sp[8] = CRC8(sp[:8])
	return sp
}

func TestCRC8(t *testing.T) {
	// Maxim application note 27 ("Understanding and Using Cyclic Redundancy
	// Checks with Maxim 1-Wire and iButton Products"), worked example: the
	// ROM bytes 02 1C B8 01 00 00 00 have CRC A2.
	if got := CRC8([]byte{0x02, 0x1C, 0xB8, 0x01, 0x00, 0x00, 0x00}); got != 0xA2 {
		t.Fatalf("CRC8 = %#02x, want 0xA2", got)
	}
	// A scratchpad as a real w1-therm prints it: crc=57.
	if got := CRC8([]byte{0x72, 0x01, 0x4b, 0x46, 0x7f, 0xff, 0x0e, 0x10}); got != 0x57 {
		t.Fatalf("CRC8 = %#02x, want 0x57", got)
	}
}

func TestParseDatasheetTable(t *testing.T) {
	// DS18B20 datasheet, table 1 "Temperature/Data Relationship".
	for _, tc := range []struct {
		raw  uint16
		want float64
	}{
		{0x07D0, 125}, {0x0191, 25.0625}, {0x00A2, 10.125}, {0x0008, 0.5}, {0x0000, 0},
		{0xFFF8, -0.5}, {0xFF5E, -10.125}, {0xFE6F, -25.0625}, {0xFC90, -55},
	} {
		sp := scratchpad(tc.raw)
		if tc.raw == 0 {
			sp[2] = 0x01 // keep the scratchpad from being all zero
			sp[8] = CRC8(sp[:8])
		}
		got, err := Parse([]byte(w1slave(sp, "YES")))
		if err != nil {
			t.Fatalf("%#04x: %v", tc.raw, err)
		}
		if c := got.Celsius(); c != tc.want {
			t.Errorf("%#04x: %v °C, want %v", tc.raw, c, tc.want)
		}
	}
	// The real kernel sample: 0x0172 = 23.125 °C.
	got, err := Parse([]byte("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"))
	if err != nil || got != physic.ZeroCelsius+23125*physic.MilliKelvin {
		t.Fatalf("%v %v", got, err)
	}
}

func TestResolutionMask(t *testing.T) {
	// At 9 bits (config 0x1F) bits 2..0 are undefined: 0x0191 reads 25.0 °C.
	sp := [9]byte{0x91, 0x01, 0x4B, 0x46, 0x1F, 0xFF, 0x0C, 0x10}
	sp[8] = CRC8(sp[:8])
	got, err := Parse([]byte(w1slave(sp, "YES")))
	if err != nil || got.Celsius() != 25 {
		t.Fatalf("%v %v", got, err)
	}
}

func TestParseErrors(t *testing.T) {
	good := scratchpad(0x0191)
	badCRC := good
	badCRC[8] ^= 1
	for _, tc := range []struct {
		name string
		in   string
		want error
	}{
		{"kernel crc NO", w1slave(badCRC, "NO"), chiperr.ErrCRC},
		{"own crc check", w1slave(badCRC, "YES"), chiperr.ErrCRC},
		{"power-on 85 °C", w1slave(scratchpad(0x0550), "YES"), chiperr.ErrPowerOn},
		{"all zero", "00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n", chiperr.ErrNotFound},
		{"empty", "", ErrFormat},
		{"one line", "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n", ErrFormat},
		{"short scratchpad", "72 01 : crc=57 YES\n72 01 t=1\n", ErrFormat},
		{"bad hex", "zz 01 4b 46 7f ff 0e 10 57 : crc=57 YES\nx t=1\n", ErrFormat},
		{"no t", "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57\n", ErrFormat},
	} {
		if _, err := Parse([]byte(tc.in)); !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
}

func writeDev(t *testing.T, dir, id, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, id), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, id, "w1_slave"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSysfsVanishAndReturn(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if _, err := New(dir, ""); !errors.Is(err, chiperr.ErrNotFound) {
		t.Fatalf("empty bus: %v", err)
	}
	writeDev(t, dir, "28-0316a2799aff", w1slave(scratchpad(0x0191), "YES"))
	if err := os.MkdirAll(filepath.Join(dir, "w1_bus_master1"), 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := New(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if d.ID() != "28-0316a2799aff" {
		t.Fatalf("id %q", d.ID())
	}
	if v, err := d.Measure(ctx); err != nil || v.Celsius() != 25.0625 {
		t.Fatalf("%v %v", v, err)
	}
	// CRC failure, then the chip vanishes, then comes back.
	writeDev(t, dir, d.ID(), w1slave(scratchpad(0x0191), "NO"))
	if _, err := d.Measure(ctx); !errors.Is(err, chiperr.ErrCRC) {
		t.Fatalf("crc NO: %v", err)
	}
	if err := os.RemoveAll(filepath.Join(dir, d.ID())); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Measure(ctx); !errors.Is(err, chiperr.ErrNotFound) {
		t.Fatalf("vanished: %v", err)
	}
	writeDev(t, dir, d.ID(), w1slave(scratchpad(0xFF5E), "YES"))
	if v, err := d.Measure(ctx); err != nil || v.Celsius() != -10.125 {
		t.Fatalf("back: %v %v", v, err)
	}
	// Two sensors: Discover lists both, New needs a serial.
	writeDev(t, dir, "28-000000000002", w1slave(scratchpad(0x0008), "YES"))
	ids, err := Discover(dir)
	if err != nil || len(ids) != 2 || ids[0] != "28-000000000002" {
		t.Fatalf("Discover %v %v", ids, err)
	}
	if _, err := New(dir, ""); err == nil {
		t.Fatal("New picked one of two sensors")
	}
	if d2, err := New(dir, "28-000000000002"); err != nil {
		t.Fatal(err)
	} else if v, err := d2.Measure(ctx); err != nil || v.Celsius() != 0.5 {
		t.Fatal(v, err)
	}
	if _, err := New(dir, "28-missing"); !errors.Is(err, chiperr.ErrNotFound) {
		t.Fatalf("missing serial: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(w1slave(scratchpad(0x0191), "YES")))
	f.Add([]byte(w1slave(scratchpad(0x0550), "YES")))
	f.Add([]byte("72 01 4b 46 7f ff 0e 10 57 : crc=57 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Parse(b)
		if err != nil {
			return
		}
		// Anything accepted is within the chip's register range.
		if c := v.Celsius(); c < -2048 || c > 2048 {
			t.Fatalf("accepted %v °C", c)
		}
	})
}

// The chip.Sensor view: one temperature value in °C, and a power-on
// scratchpad is an error that leaves dst as it was.
func TestSenseValues(t *testing.T) {
	dir := t.TempDir()
	writeDev(t, dir, "28-0316a2799aff", w1slave(scratchpad(0x0191), "YES")) // +25.0625 °C, datasheet table 1
	d, err := New(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := d.Sense(context.Background(), nil)
	if err != nil || len(vs) != 1 || vs[0] != (chip.Value{Metric: chip.MetricTemp, Unit: chip.UnitCelsius, V: 25.0625}) {
		t.Fatalf("%+v %v", vs, err)
	}
	writeDev(t, dir, "28-0316a2799aff", w1slave(scratchpad(uint16(PowerOnRaw)), "YES"))
	if vs, err := d.Sense(context.Background(), vs); !errors.Is(err, chiperr.ErrPowerOn) || len(vs) != 1 {
		t.Fatalf("power-on: %+v %v", vs, err)
	}
	if err := d.Halt(); err != nil {
		t.Fatal(err)
	}
}
