package ds18b20

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"periph.io/x/conn/v3/physic"

	"github.com/sensorgate/sensorgate/drivers/chip"
	"github.com/sensorgate/sensorgate/drivers/chiperr"
)

// DefaultDir is where the kernel lists 1-Wire devices.
const DefaultDir = "/sys/bus/w1/devices"

// Family is the DS18B20's 1-Wire family code: device ids start "28-".
const Family = "28"

// PowerOnRaw is the scratchpad's temperature after power-on: +85 °C.
const PowerOnRaw int16 = 0x0550

// Discover returns the ids ("28-0316a2799aff") of the DS18B20s in dir,
// sorted. A missing dir (no 1-Wire bus) gives no ids and no error.
func Discover(dir string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(dir, Family+"-*"))
	if err != nil {
		return nil, fmt.Errorf("ds18b20: %w", err)
	}
	ids := make([]string, len(m))
	for i, p := range m {
		ids[i] = filepath.Base(p)
	}
	sort.Strings(ids)
	return ids, nil
}

// Dev is one DS18B20.
type Dev struct {
	id   string
	path string
}

// New returns the sensor with id in dir (DefaultDir when empty). An empty
// id means the only DS18B20 present; it is an error if there are none
// (chiperr.ErrNotFound) or several.
func New(dir, id string) (*Dev, error) {
	if dir == "" {
		dir = DefaultDir
	}
	if id == "" {
		ids, err := Discover(dir)
		if err != nil {
			return nil, err
		}
		switch len(ids) {
		case 0:
			return nil, fmt.Errorf("ds18b20: no %s-* device in %s: %w", Family, dir, chiperr.ErrNotFound)
		case 1:
			id = ids[0]
		default:
			return nil, fmt.Errorf("ds18b20: %d devices in %s (%s): name one by serial", len(ids), dir, strings.Join(ids, ", "))
		}
	}
	d := &Dev{id: id, path: filepath.Join(dir, id, "w1_slave")}
	if _, err := os.Stat(d.path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("ds18b20: %s: %w", id, chiperr.ErrNotFound)
		}
		return nil, fmt.Errorf("ds18b20: %w", err)
	}
	return d, nil
}

// ID returns the device id.
func (d *Dev) ID() string { return d.id }

func (d *Dev) String() string { return "DS18B20{" + d.id + "}" }

// Measure reads the temperature.
func (d *Dev) Measure(ctx context.Context) (physic.Temperature, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	b, err := os.ReadFile(d.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("ds18b20: %s: %w", d.id, chiperr.ErrNotFound)
		}
		return 0, fmt.Errorf("ds18b20: %s: %w", d.id, err)
	}
	t, err := Parse(b)
	if err != nil {
		return 0, fmt.Errorf("ds18b20: %s: %w", d.id, err)
	}
	return t, nil
}

// ErrFormat is wrapped when w1_slave does not look like w1-therm output.
var ErrFormat = errors.New("unexpected w1_slave format")

// Parse parses the contents of a w1_slave file.
func Parse(b []byte) (physic.Temperature, error) {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) < 2 {
		return 0, fmt.Errorf("%w: %d lines", ErrFormat, len(lines))
	}
	l1, l2 := string(lines[0]), string(lines[1])
	i := strings.Index(l1, " : crc=")
	if i < 0 {
		return 0, fmt.Errorf("%w: no crc verdict", ErrFormat)
	}
	sp, err := parseHex(l1[:i])
	if err != nil {
		return 0, err
	}
	verdict := strings.Fields(l1[i+len(" : crc="):])
	if len(verdict) != 2 {
		return 0, fmt.Errorf("%w: crc verdict %q", ErrFormat, l1[i:])
	}
	if sp == [9]byte{} {
		return 0, fmt.Errorf("all-zero scratchpad: %w", chiperr.ErrNotFound)
	}
	if verdict[1] != "YES" {
		return 0, fmt.Errorf("kernel crc check %s: %w", verdict[1], chiperr.ErrCRC)
	}
	if c := CRC8(sp[:8]); c != sp[8] {
		return 0, fmt.Errorf("scratchpad crc %#02x, computed %#02x: %w", sp[8], c, chiperr.ErrCRC)
	}
	j := strings.Index(l2, " t=")
	if j < 0 {
		return 0, fmt.Errorf("%w: no t=", ErrFormat)
	}
	if _, err := strconv.Atoi(strings.TrimSpace(l2[j+3:])); err != nil {
		return 0, fmt.Errorf("%w: t=%q", ErrFormat, l2[j+3:])
	}
	raw := Raw(sp)
	if raw == PowerOnRaw {
		return 0, fmt.Errorf("85 °C: %w", chiperr.ErrPowerOn)
	}
	return Temperature(raw), nil
}

// Raw returns the temperature register of a scratchpad with the bits that
// are undefined at the configured resolution (datasheet: configuration
// register, table 2) cleared.
func Raw(sp [9]byte) int16 {
	raw := int16(uint16(sp[1])<<8 | uint16(sp[0]))
	res := (sp[4] >> 5) & 3 // 0: 9 bits ... 3: 12 bits
	return raw &^ int16(7>>res)
}

// Temperature converts a temperature register: 1/16 °C per LSB (datasheet
// table 1).
func Temperature(raw int16) physic.Temperature {
	return physic.ZeroCelsius + physic.Temperature(raw)*62500*physic.MicroKelvin
}

func parseHex(s string) ([9]byte, error) {
	var sp [9]byte
	f := strings.Fields(s)
	if len(f) != 9 {
		return sp, fmt.Errorf("%w: %d scratchpad bytes", ErrFormat, len(f))
	}
	for i, h := range f {
		v, err := strconv.ParseUint(h, 16, 8)
		if err != nil {
			return sp, fmt.Errorf("%w: byte %q", ErrFormat, h)
		}
		sp[i] = byte(v)
	}
	return sp, nil
}

// CRC8 is the Maxim 1-Wire CRC: polynomial x^8 + x^5 + x^4 + 1, LSB first
// (reflected 0x8C), initial value 0 (datasheet "CRC generation", figure 11).
// The CRC over a scratchpad including its CRC byte is 0.
func CRC8(b []byte) byte {
	var crc byte
	for _, v := range b {
		crc ^= v
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0x8C
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// Sense implements chip.Sensor: temperature (°C).
func (d *Dev) Sense(ctx context.Context, dst []chip.Value) ([]chip.Value, error) {
	t, err := d.Measure(ctx)
	if err != nil {
		return dst, err
	}
	return append(dst, chip.Temperature(t)), nil
}

// Halt implements chip.Sensor. The kernel's w1-therm driver starts a
// conversion on each read, so there is nothing to stop.
func (d *Dev) Halt() error { return nil }

var _ chip.Sensor = (*Dev)(nil)
