package sensirion

import (
	"context"
	"fmt"
	"time"

	"github.com/sensorgate/sensorgate/drivers/chiperr"
)

// CRC8 is the Sensirion CRC-8: polynomial 0x31 (x^8 + x^5 + x^4 + 1),
// initial value 0xFF, no reflection, no final XOR (SHT3x datasheet §4.12,
// table 20; the example there: 0xBEEF gives 0x92).
func CRC8(b []byte) byte {
	crc := byte(0xFF)
	for _, v := range b {
		crc ^= v
		for range 8 {
			if crc&0x80 != 0 {
				crc = crc<<1 ^ 0x31
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// Words checks and decodes b, a sequence of 3-byte groups (big-endian word
// then its CRC), into dst. It returns an error wrapping chiperr.ErrCRC
// naming the first bad word.
func Words(dst []uint16, b []byte) error {
	if len(b) != 3*len(dst) {
		return fmt.Errorf("sensirion: %d bytes for %d words", len(b), len(dst))
	}
	for i := range dst {
		g := b[3*i : 3*i+3]
		if c := CRC8(g[:2]); c != g[2] {
			return fmt.Errorf("word %d (%#02x%02x): crc %#02x, want %#02x: %w", i, g[0], g[1], g[2], c, chiperr.ErrCRC)
		}
		dst[i] = uint16(g[0])<<8 | uint16(g[1])
	}
	return nil
}

// Sleep waits for d or until ctx is done.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
