package drivers

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sensorgate/sensorgate/drivers/ads1115"
	"github.com/sensorgate/sensorgate/ingest"
)

// Sensor types (the `type:` of a sensor entry) handled by this package.
const (
	TypeBME280  = "bme280"
	TypeBMP280  = "bmp280"
	TypeDS18B20 = "ds18b20"
	TypeADS1115 = "ads1115"
	TypeADS1015 = "ads1015"
	TypeSHT3x   = "sht3x"
	TypeSHT4x   = "sht4x"
	TypeSCD4x   = "scd4x"
	TypePulse   = "pulse"
)

var types = []string{TypeBME280, TypeBMP280, TypeDS18B20, TypeADS1115, TypeADS1015, TypeSHT3x, TypeSHT4x, TypeSCD4x, TypePulse}

// Types returns the sensor types this package drives.
func Types() []string { return slices.Clone(types) }

// Known reports whether typ is one of Types.
func Known(typ string) bool { return slices.Contains(types, typ) }

// Defaults applied by DeviceConfig.Defaults.
const (
	DefaultI2CBus     = "/dev/i2c-1"
	DefaultW1Dir      = "/sys/bus/w1/devices"
	DefaultInterval   = 10 * time.Second
	DefaultTimeout    = 2 * time.Second
	DefaultMaxBackoff = 5 * time.Minute
	DefaultFullScale  = 4.096
)

// defaultAddr and validAddrs per I²C type (from the datasheets: BME280 §6.2,
// SHT3x table 7, SHT4x §4.1, SCD4x §3.2, ADS1115 table 4).
var (
	defaultAddr = map[string]int{TypeBME280: 0x76, TypeBMP280: 0x76, TypeSHT3x: 0x44, TypeSHT4x: 0x44, TypeSCD4x: 0x62, TypeADS1115: 0x48, TypeADS1015: 0x48}
	validAddrs  = map[string][]int{
		TypeBME280: {0x76, 0x77}, TypeBMP280: {0x76, 0x77}, TypeSHT3x: {0x44, 0x45}, TypeSHT4x: {0x44, 0x45, 0x46},
		TypeSCD4x: {0x62}, TypeADS1115: {0x48, 0x49, 0x4A, 0x4B}, TypeADS1015: {0x48, 0x49, 0x4A, 0x4B},
	}
)

func isI2C(typ string) bool { _, ok := defaultAddr[typ]; return ok }

// DeviceConfig is the `device:` block of a sensor entry: where the chip is
// and how to poll it. Which fields apply depends on the sensor's type.
type DeviceConfig struct {
	// Durable (default true): a chip's reading cannot be asked for again,
	// so each poll's readings carry an ingest.Receipt and are committed
	// with the next checkpoint within its short delay, like a durable MQTT
	// message; false lets them wait for the state interval.
	Durable *bool `yaml:"durable"`
	// Bus: the I²C bus ("/dev/i2c-1", default; "1" and "I2C1" work too), an
	// SPI port for bme280/bmp280 ("/dev/spidev0.0"), or for ds18b20 the
	// 1-Wire sysfs directory (default /sys/bus/w1/devices).
	Bus string `yaml:"bus"`
	// Address on the I²C bus (YAML accepts 0x76); default per chip.
	Address int `yaml:"address"`
	// Serial of a ds18b20 ("28-0316a2799aff"); empty means the only one.
	Serial string `yaml:"serial"`
	// Pin of a pulse counter ("GPIO17").
	Pin string `yaml:"pin"`
	// Edge (rising, falling, both; default rising), Pull (up, down, none;
	// default up) and Debounce of a pulse counter.
	Edge     string        `yaml:"edge"`
	Pull     string        `yaml:"pull"`
	Debounce time.Duration `yaml:"debounce"`
	// PerPulse is how many Units one pulse is (default 1): 0.001 for a
	// 1,000 imp/kWh meter with Unit kWh.
	PerPulse float64 `yaml:"per_pulse"`
	// Channel of an ADC (0-3), measured against GND, or against Negative
	// when that is set: a differential input (pairs 0-1, 0-3, 1-3, 2-3).
	Channel  int `yaml:"channel"`
	Negative int `yaml:"negative"`
	// FullScale of an ADC channel in volts (default 4.096): the gain is the
	// smallest range covering it.
	FullScale float64 `yaml:"full_scale"`
	// Scale and Offset turn an ADC's volts into engineering units:
	// value = volts × scale + offset (scale defaults to 1).
	Scale  float64 `yaml:"scale"`
	Offset float64 `yaml:"offset"`
	// Metric names an ADC channel's reading (default "voltage").
	Metric string `yaml:"metric"`
	// Unit of an ADC channel's scaled value (default "V") or of a pulse
	// counter's count (default "pulses"; the rate is in Unit/s).
	Unit string `yaml:"unit"`
	// Interval between reads (default 10s) and a uniform random Jitter of
	// at most ± Jitter around it (default 0, must be < interval).
	Interval time.Duration `yaml:"interval"`
	Jitter   time.Duration `yaml:"jitter"`
	// Timeout of one read (default 2s; ds18b20 3s, scd4x 7s).
	Timeout time.Duration `yaml:"timeout"`
	// MaxBackoff caps the exponential backoff after failures (default 5m).
	MaxBackoff time.Duration `yaml:"max_backoff"`
}

// Defaults fills zero fields for a sensor of type typ.
func (c *DeviceConfig) Defaults(typ string) {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.Timeout == 0 {
		switch typ {
		case TypeDS18B20:
			c.Timeout = 3 * time.Second
		case TypeSCD4x:
			c.Timeout = 7 * time.Second
		default:
			c.Timeout = DefaultTimeout
		}
	}
	if isI2C(typ) {
		if c.Bus == "" {
			c.Bus = DefaultI2CBus
		}
		if c.Address == 0 {
			c.Address = defaultAddr[typ]
		}
	}
	switch typ {
	case TypeDS18B20:
		if c.Bus == "" {
			c.Bus = DefaultW1Dir
		}
	case TypeADS1115, TypeADS1015:
		if c.FullScale == 0 {
			c.FullScale = DefaultFullScale
		}
		if c.Scale == 0 {
			c.Scale = 1
		}
		if c.Metric == "" {
			c.Metric = "voltage"
		}
		if c.Unit == "" {
			c.Unit = "V"
		}
	case TypePulse:
		if c.Edge == "" {
			c.Edge = "rising"
		}
		if c.Pull == "" {
			c.Pull = "up"
		}
		if c.PerPulse == 0 {
			c.PerPulse = 1
		}
		if c.Unit == "" {
			c.Unit = "pulses"
		}
	}
}

// isSPI reports whether a bme280/bmp280 is on SPI.
func (c *DeviceConfig) isSPI() bool {
	return strings.HasPrefix(c.Bus, "/dev/spidev") || strings.HasPrefix(c.Bus, "SPI")
}

// Validate checks the config for a sensor of type typ; paths are relative
// to the device block ("address", "interval").
func (c DeviceConfig) Validate(typ string) error {
	var errs []error
	if !Known(typ) {
		return ingest.FieldErrorf("", "unknown sensor type %q (want one of %s)", typ, strings.Join(types, ", "))
	}
	if c.Interval <= 0 {
		errs = append(errs, ingest.FieldErrorf("interval", "must be > 0"))
	}
	if c.Jitter < 0 || (c.Interval > 0 && c.Jitter >= c.Interval) {
		errs = append(errs, ingest.FieldErrorf("jitter", "must be >= 0 and < interval"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, ingest.FieldErrorf("timeout", "must be > 0"))
	}
	if c.MaxBackoff <= 0 {
		errs = append(errs, ingest.FieldErrorf("max_backoff", "must be > 0"))
	}
	if isI2C(typ) && !((typ == TypeBME280 || typ == TypeBMP280) && c.isSPI()) {
		if c.Bus == "" {
			errs = append(errs, ingest.FieldErrorf("bus", "is required"))
		}
		if !slices.Contains(validAddrs[typ], c.Address) {
			errs = append(errs, ingest.FieldErrorf("address", "%#x is not a %s address (want %s)", c.Address, typ, hexList(validAddrs[typ])))
		}
	}
	switch typ {
	case TypeDS18B20:
		if c.Serial != "" && !strings.HasPrefix(c.Serial, "28-") {
			errs = append(errs, ingest.FieldErrorf("serial", "%q is not a DS18B20 id (28-xxxxxxxxxxxx)", c.Serial))
		}
	case TypeADS1115, TypeADS1015:
		if c.Channel < 0 || c.Channel > 3 {
			errs = append(errs, ingest.FieldErrorf("channel", "must be 0-3"))
		} else if c.Negative != 0 && !ads1115.ValidPair(c.Channel, c.Negative) {
			errs = append(errs, ingest.FieldErrorf("negative", "channel %d - %d is not a differential pair (want 0-1, 0-3, 1-3 or 2-3)", c.Channel, c.Negative))
		}
		if !(c.FullScale > 0 && c.FullScale <= 6.144) {
			errs = append(errs, ingest.FieldErrorf("full_scale", "must be > 0 and <= 6.144 V"))
		}
		if !ingest.Finite(c.Scale) || !ingest.Finite(c.Offset) {
			errs = append(errs, ingest.FieldErrorf("scale", "scale and offset must be finite numbers"))
		}
		if c.Metric == "" {
			errs = append(errs, ingest.FieldErrorf("metric", "must not be empty"))
		}
	case TypePulse:
		if c.Pin == "" {
			errs = append(errs, ingest.FieldErrorf("pin", "is required"))
		}
		if _, ok := edges[c.Edge]; !ok {
			errs = append(errs, ingest.FieldErrorf("edge", "must be rising, falling or both"))
		}
		if _, ok := pulls[c.Pull]; !ok {
			errs = append(errs, ingest.FieldErrorf("pull", "must be up, down or none"))
		}
		if !(c.PerPulse > 0) || !ingest.Finite(c.PerPulse) {
			errs = append(errs, ingest.FieldErrorf("per_pulse", "must be > 0"))
		}
		if c.Debounce < 0 {
			errs = append(errs, ingest.FieldErrorf("debounce", "must be >= 0"))
		}
	}
	return errors.Join(errs...)
}

func hexList(a []int) string {
	s := make([]string, len(a))
	for i, v := range a {
		s[i] = fmt.Sprintf("%#x", v)
	}
	return strings.Join(s, ", ")
}

// Entry is one sensor for the Poller: its id, type and device block.
type Entry struct {
	ID     string
	Type   string
	Device DeviceConfig
}
