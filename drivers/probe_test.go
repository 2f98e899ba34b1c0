package drivers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"
)

// scanBus is an I²C bus with a handler per address; other addresses NACK.
type scanBus map[uint16]func(w, r []byte) error

func (b scanBus) Tx(addr uint16, w, r []byte) error {
	if h, ok := b[addr]; ok {
		return h(w, r)
	}
	return errNACK
}
func (scanBus) String() string                  { return "scan" }
func (scanBus) SetSpeed(physic.Frequency) error { return nil }

// reply answers a one-byte scan read and the register reads in regs.
func reply(regs map[string][]byte) func(w, r []byte) error {
	return func(w, r []byte) error {
		if len(w) == 0 && len(r) == 1 {
			r[0] = 0
			return nil
		}
		if v, ok := regs[fmt.Sprintf("% x", w)]; ok {
			copy(r, v)
			return nil
		}
		if len(w) > 0 && len(r) == 0 {
			return nil // a command
		}
		return errNACK
	}
}

func TestProbe(t *testing.T) {
	sht := newSHT3xChip(0x44)
	scd := map[string][]byte{"": {0x12, 0x34, 0x37, 0x56, 0x78, 0x7D, 0x9A, 0xBC, 0xE0}}
	bus := scanBus{
		0x3C: reply(nil),
		0x44: func(w, r []byte) error {
			if len(w) == 0 && len(r) == 1 {
				return nil
			}
			return sht.Tx(0x44, w, r)
		},
		0x46: reply(map[string][]byte{"": {0x12, 0x34, 0x37, 0x56, 0x78, 0x7D}}), // SHT4x serial 0x12345678
		0x48: reply(map[string][]byte{"01": {0x85, 0x83}}),                       // ADS1115 config reset value 0x8583 (datasheet table 8)
		0x62: reply(scd),
		0x76: reply(map[string][]byte{"d0": {0x60}}),
		0x77: reply(map[string][]byte{"d0": {0x58}}),
		0x10: reply(nil),
	}
	noSleep := func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	got, err := Probe(context.Background(), bus, ProbeOptions{Sleep: noSleep})
	if err != nil {
		t.Fatal(err)
	}
	want := []Found{
		{Addr: 0x10},
		{Addr: 0x3C, Chip: "maybe SSD1306 OLED"},
		{Addr: 0x44, Chip: "SHT3x", Type: TypeSHT3x, Detail: "status 0x8010"},
		{Addr: 0x46, Chip: "SHT4x", Type: TypeSHT4x, Detail: "serial 0x12345678"},
		{Addr: 0x48, Chip: "ADS1115/ADS1015", Type: TypeADS1115, Detail: "config 0x8583"},
		{Addr: 0x62, Chip: "SCD4x", Type: TypeSCD4x, Detail: "serial 0x123456789abc"},
		{Addr: 0x76, Chip: "BME280", Type: TypeBME280, Detail: "chip id 0x60"},
		{Addr: 0x77, Chip: "BMP280", Type: TypeBMP280, Detail: "chip id 0x58"},
	}
	if len(got) != len(want) {
		t.Fatalf("found %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%d: %+v, want %+v", i, got[i], want[i])
		}
	}
	// An SCD4x busy measuring NACKs the serial command; a bad CRC at 0x44
	// is not an SHT3x (and then not an SHT4x either).
	delete(scd, "")
	sht.set(func(c *sht3xChip) { c.gone = true })
	got, _ = Probe(context.Background(), bus, ProbeOptions{First: 0x44, Last: 0x62, Sleep: noSleep})
	if len(got) != 4 || got[0].Chip != "" || got[3].Chip != "SCD4x?" {
		t.Fatalf("%+v", got)
	}
	// A cancelled context stops the scan.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Probe(ctx, bus, ProbeOptions{}); err == nil {
		t.Fatal("cancelled probe returned no error")
	}
}

func TestProbeIdentifyPlayback(t *testing.T) {
	// The BME280's id register read, as i2ctest records it (BME280
	// datasheet §5.4.1: register 0xD0 "id" reads 0x60).
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{
		{Addr: 0x76, R: []byte{0x00}},
		{Addr: 0x76, W: []byte{0xD0}, R: []byte{0x60}},
	}}
	got, err := Probe(context.Background(), bus, ProbeOptions{First: 0x76, Last: 0x76})
	if err != nil || len(got) != 1 || got[0].Chip != "BME280" {
		t.Fatalf("%+v %v", got, err)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
}
