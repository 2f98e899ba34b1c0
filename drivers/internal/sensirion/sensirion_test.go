package sensirion

import (
	"errors"
	"testing"

	"github.com/sensorgate/sensorgate/drivers/chiperr"
)

func TestCRC8(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want byte
	}{
		{[]byte{0xBE, 0xEF}, 0x92}, // SHT3x datasheet §4.12, SHT4x datasheet §4.4, SCD4x datasheet §3.11
		{[]byte{0x01, 0xF4}, 0x33}, // SCD4x datasheet §3.5.2 read_measurement example: CO2 500 ppm
		{[]byte{0x66, 0x67}, 0xA2}, // same example: temperature 25 °C
		{[]byte{0x5E, 0xB9}, 0x3C}, // same example: humidity 37 %RH
	} {
		if got := CRC8(tc.in); got != tc.want {
			t.Errorf("CRC8(% x) = %#02x, want %#02x", tc.in, got, tc.want)
		}
	}
}

func TestWords(t *testing.T) {
	var w [3]uint16
	if err := Words(w[:], []byte{0x01, 0xF4, 0x33, 0x66, 0x67, 0xA2, 0x5E, 0xB9, 0x3C}); err != nil || w != [3]uint16{500, 0x6667, 0x5EB9} {
		t.Fatalf("%v %x", err, w)
	}
	if err := Words(w[:], []byte{0x01, 0xF4, 0x33, 0x66, 0x67, 0xA3, 0x5E, 0xB9, 0x3C}); !errors.Is(err, chiperr.ErrCRC) {
		t.Fatalf("bad crc: %v", err)
	}
	if err := Words(w[:], []byte{1, 2}); err == nil || errors.Is(err, chiperr.ErrCRC) {
		t.Fatalf("short: %v", err)
	}
}

func FuzzWords(f *testing.F) {
	f.Add([]byte{0x01, 0xF4, 0x33, 0x66, 0x67, 0xA2, 0x5E, 0xB9, 0x3C})
	f.Add([]byte{0xBE, 0xEF, 0x92})
	f.Add([]byte{0xBE, 0xEF, 0x93})
	f.Fuzz(func(t *testing.T, b []byte) {
		w := make([]uint16, len(b)/3)
		err := Words(w, b)
		if len(b)%3 != 0 {
			if err == nil {
				t.Fatal("accepted a length that is not a multiple of 3")
			}
			return
		}
		// Accepted exactly when every group's CRC matches.
		ok := true
		for i := 0; i+3 <= len(b); i += 3 {
			if CRC8(b[i:i+2]) != b[i+2] {
				ok = false
			}
		}
		if (err == nil) != ok {
			t.Fatalf("Words(% x): err %v, crc ok %v", b, err, ok)
		}
		if err != nil && !ok && !errors.Is(err, chiperr.ErrCRC) {
			t.Fatalf("crc failure not ErrCRC: %v", err)
		}
	})
}
