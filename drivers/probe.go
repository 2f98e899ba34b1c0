package drivers

import (
	"context"
	"fmt"
	"time"

	"periph.io/x/conn/v3/i2c"

	"github.com/sensorgate/sensorgate/drivers/bme280"
	"github.com/sensorgate/sensorgate/drivers/internal/sensirion"
)

// Found is a device that answered on an I²C bus during Probe.
type Found struct {
	Addr uint16
	// Chip is the identified chip ("BME280", "SHT3x") or, when the chip has
	// no id to check, candidates by address ("maybe SSD1306 OLED"); empty
	// when nothing is known about the address.
	Chip string
	// Type is the sensor type to put in the config when this package drives
	// the chip ("bme280"), else empty.
	Type string
	// Detail is what identified it ("chip id 0x60").
	Detail string
}

// ProbeOptions tune Probe.
type ProbeOptions struct {
	// First and Last bound the scanned addresses (default 0x08..0x77, the
	// range i2cdetect scans, skipping reserved addresses).
	First, Last uint16
	// Sleep waits for the SHT4x's serial number (nil: a timer honouring ctx).
	Sleep func(ctx context.Context, d time.Duration) error
}

// byAddress names common chips that have no id register we can check.
var byAddress = map[uint16]string{
	0x20: "MCP23017/PCF8574 I/O expander", 0x23: "BH1750 light sensor", 0x27: "PCF8574 LCD backpack",
	0x29: "VL53L0X/TSL2591", 0x38: "AHT10/AHT20", 0x39: "TSL2561/APDS-9960", 0x3C: "SSD1306 OLED", 0x3D: "SSD1306 OLED",
	0x40: "INA219/HTU21D/Si7021/PCA9685", 0x41: "INA219", 0x50: "AT24C EEPROM", 0x53: "ADXL345", 0x57: "AT24C32 EEPROM (RTC module)",
	0x58: "SGP30", 0x5A: "CCS811/MLX90614", 0x5B: "CCS811", 0x60: "MCP4725 DAC", 0x61: "SCD30",
	0x68: "DS3231/DS1307 RTC or MPU-6050", 0x69: "MPU-6050", 0x70: "TCA9548A I²C multiplexer",
}

// Probe scans bus for devices that acknowledge a one-byte read and names
// the known ones: BME280/BMP280 by chip id (register 0xD0), SHT3x by its
// CRC-checked status register, SHT4x by its CRC-checked serial number,
// SCD4x by its serial number (a chip in periodic measurement refuses that
// command and is reported as "SCD4x?"), ADS1115/ADS1015 by the config
// register, and others by address only. Probing only reads registers and
// issues read-only commands; it does not reset or reconfigure chips. A
// device that answers the scan but fails identification is still listed.
func Probe(ctx context.Context, bus i2c.Bus, opts ProbeOptions) ([]Found, error) {
	first, last := opts.First, opts.Last
	if first == 0 {
		first = 0x08
	}
	if last == 0 {
		last = 0x77
	}
	sleep := opts.Sleep
	if sleep == nil {
		sleep = sensirion.Sleep
	}
	var found []Found
	var b [1]byte
	for addr := first; addr <= last; addr++ {
		if err := ctx.Err(); err != nil {
			return found, err
		}
		if bus.Tx(addr, nil, b[:]) != nil {
			continue
		}
		found = append(found, identify(ctx, bus, addr, sleep))
	}
	return found, nil
}

func identify(ctx context.Context, bus i2c.Bus, addr uint16, sleep func(context.Context, time.Duration) error) Found {
	f := Found{Addr: addr}
	d := i2c.Dev{Bus: bus, Addr: addr}
	switch addr {
	case 0x76, 0x77:
		var id [1]byte
		if d.Tx([]byte{0xD0}, id[:]) == nil {
			f.Detail = fmt.Sprintf("chip id %#02x", id[0])
			switch id[0] {
			case bme280.ChipIDBME280:
				f.Chip, f.Type = "BME280", TypeBME280
			case bme280.ChipIDBMP280:
				f.Chip, f.Type = "BMP280", TypeBMP280
			case 0x55:
				f.Chip = "BMP180"
			case 0x61:
				f.Chip = "BME680"
			}
		}
	case 0x44, 0x45, 0x46:
		if addr != 0x46 {
			var st [3]byte
			var w [1]uint16
			if d.Tx([]byte{0xF3, 0x2D}, st[:]) == nil && sensirion.Words(w[:], st[:]) == nil {
				f.Chip, f.Type, f.Detail = "SHT3x", TypeSHT3x, fmt.Sprintf("status %#04x", w[0])
				return f
			}
		}
		var sn [6]byte
		var w [2]uint16
		if d.Tx([]byte{0x89}, nil) == nil && sleep(ctx, time.Millisecond) == nil &&
			d.Tx(nil, sn[:]) == nil && sensirion.Words(w[:], sn[:]) == nil {
			f.Chip, f.Type, f.Detail = "SHT4x", TypeSHT4x, fmt.Sprintf("serial %#08x", uint32(w[0])<<16|uint32(w[1]))
		}
	case 0x62:
		var sn [9]byte
		var w [3]uint16
		if d.Tx([]byte{0x36, 0x82}, nil) == nil && sleep(ctx, time.Millisecond) == nil &&
			d.Tx(nil, sn[:]) == nil && sensirion.Words(w[:], sn[:]) == nil {
			f.Chip, f.Type, f.Detail = "SCD4x", TypeSCD4x, fmt.Sprintf("serial %#012x", uint64(w[0])<<32|uint64(w[1])<<16|uint64(w[2]))
		} else {
			f.Chip, f.Type, f.Detail = "SCD4x?", TypeSCD4x, "no serial number (busy in periodic measurement?)"
		}
	case 0x48, 0x49, 0x4A, 0x4B:
		var cfg [2]byte
		if d.Tx([]byte{0x01}, cfg[:]) == nil {
			f.Chip, f.Type, f.Detail = "ADS1115/ADS1015", TypeADS1115, fmt.Sprintf("config %#04x", uint16(cfg[0])<<8|uint16(cfg[1]))
		}
	}
	if f.Chip == "" {
		if n, ok := byAddress[addr]; ok {
			f.Chip = "maybe " + n
		}
	}
	return f
}
