package bme280

import (
	"context"
	"errors"
	"math"
	"testing"

	"periph.io/x/conn/v3/conntest"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/spi/spitest"

	"github.com/sensorgate/sensorgate/drivers/chip"
	"github.com/sensorgate/sensorgate/drivers/chiperr"
	"github.com/sensorgate/sensorgate/drivers/internal/bustest"
)

// Calibration and raw values of the worked example in the BMP280 datasheet
// (BST-BMP280-DS001), §3.12 "Calculating pressure and temperature", table
// 16: dig_T1..T3 = 27504, 26435, -1000; dig_P1..P9 = 36477, -10685, 3024,
// 2855, 140, -7, 15500, -14600, 6000; adc_T = 519888 -> 25.08 °C (t_fine
// 128422); adc_P = 415148 -> 100653.27 Pa. The registers are little endian
// (BME280 datasheet §4.2.2, table 16), starting at 0x88.
var calTP = []byte{
	0x70, 0x6B, 0x43, 0x67, 0x18, 0xFC, // T1 T2 T3
	0x7D, 0x8E, 0x43, 0xD6, 0xD0, 0x0B, 0x27, 0x0B, 0x8C, 0x00, // P1..P5
	0xF9, 0xFF, 0x8C, 0x3C, 0xF8, 0xC6, 0x70, 0x17, // P6..P9
	0x00, // 0xA0, reserved
	0x4B, // 0xA1, dig_H1 = 75
}

// Humidity calibration at 0xE1..0xE7 (BME280 datasheet §4.2.2, table 16):
// dig_H2 = 362, dig_H3 = 0, dig_H4 = 324, dig_H5 = 0, dig_H6 = 30.
var calH = []byte{0x6A, 0x01, 0x00, 0x14, 0x04, 0x00, 0x1E}

// Raw data registers 0xF7..0xFE: press_msb/lsb/xlsb = adc_P 415148
// (0x655AC), temp = adc_T 519888 (0x7EED0), hum = 0x6A00.
var dataTPH = []byte{0x65, 0x5A, 0xC0, 0x7E, 0xED, 0x00, 0x6A, 0x00}

const a = 0x76

// initOps is what bmxx80 sends to set a BME280 up: the chip id, the
// calibration, then ctrl_meas (sleep), ctrl_hum, config, ctrl_meas again
// (BME280 datasheet §5.4.3: ctrl_hum takes effect after ctrl_meas).
func initOps(chipID byte) []i2ctest.IO {
	ops := []i2ctest.IO{
		{Addr: a, W: []byte{0xD0}, R: []byte{chipID}},
		{Addr: a, W: []byte{0x88}, R: calTP},
	}
	if chipID == ChipIDBME280 {
		return append(ops,
			i2ctest.IO{Addr: a, W: []byte{0xE1}, R: calH},
			i2ctest.IO{Addr: a, W: []byte{0xF4, 0x6C, 0xF2, 0x03, 0xF5, 0xA0, 0xF4, 0x6C}})
	}
	return append(ops, i2ctest.IO{Addr: a, W: []byte{0xF4, 0x6C, 0xF5, 0xA0, 0xF4, 0x6C}})
}

// senseOps is one forced measurement: ctrl_meas with mode forced, the
// status register (measuring bit clear), then the data burst read.
func senseOps(bme bool) []i2ctest.IO {
	data := dataTPH
	if !bme {
		data = dataTPH[:6]
	}
	return []i2ctest.IO{
		{Addr: a, W: []byte{0xF4, 0x6D}},
		{Addr: a, W: []byte{0xF3}, R: []byte{0x00}},
		{Addr: a, W: []byte{0xF7}, R: data},
	}
}

// humidityDouble is the BME280 datasheet's floating-point humidity
// compensation (§8.1, bme280_compensate_H_double), used to check the
// integer result of the driver.
func humidityDouble(adcH, tFine float64) float64 {
	const h1, h2, h3, h4, h5, h6 = 75.0, 362.0, 0.0, 324.0, 0.0, 30.0
	v := tFine - 76800
	v = (adcH - (h4*64 + h5/16384*v)) * (h2 / 65536 * (1 + h6/67108864*v*(1+h3/67108864*v)))
	v = v * (1 - h1*v/524288)
	return min(max(v, 0), 100)
}

func TestBMP280DatasheetExample(t *testing.T) {
	bus := &i2ctest.Playback{Ops: append(initOps(ChipIDBMP280), senseOps(false)...)}
	d, err := New(bus, DefaultAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Chip() != "BMP280" || d.HasHumidity() {
		t.Fatalf("chip %s", d.Chip())
	}
	m, err := d.Measure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c := m.Temperature.Celsius(); math.Abs(c-25.08) > 0.001 {
		t.Fatalf("temperature %v °C, want 25.08", c)
	}
	if p := float64(m.Pressure) / float64(physic.Pascal); math.Abs(p-100653.27) > 0.5 {
		t.Fatalf("pressure %v Pa, want 100653.27", p)
	}
	if m.Humidity != 0 {
		t.Fatalf("BMP280 humidity %v", m.Humidity)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBME280Humidity(t *testing.T) {
	bus := &i2ctest.Playback{Ops: append(initOps(ChipIDBME280), senseOps(true)...)}
	d, err := New(bus, DefaultAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := d.Measure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.Chip() != "BME280" || m.Temperature.Celsius() != 25.08 {
		t.Fatalf("%s %v", d.Chip(), m.Temperature)
	}
	want := humidityDouble(0x6A00, 128422)
	if h := float64(m.Humidity) / float64(physic.PercentRH); math.Abs(h-want) > 0.01 || want < 1 || want > 99 {
		t.Fatalf("humidity %v %%, datasheet double formula %v %%", h, want)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestWrongChipID(t *testing.T) {
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{{Addr: a, W: []byte{0xD0}, R: []byte{0x61}}}}
	if _, err := New(bus, DefaultAddr, nil); !errors.Is(err, chiperr.ErrChipID) {
		t.Fatalf("err %v, want ErrChipID", err)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNACKVanishAndReturn(t *testing.T) {
	ops := append(initOps(ChipIDBME280), senseOps(true)...)
	ops = append(ops, initOps(ChipIDBME280)...)
	ops = append(ops, senseOps(true)...)
	pb := &i2ctest.Playback{Ops: ops}
	bus := &bustest.FlakyBus{Bus: pb}
	bus.FailNext(1)
	if _, err := New(bus, DefaultAddr, nil); err == nil {
		t.Fatal("New succeeded on a NACK")
	}
	d, err := New(bus, DefaultAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Measure(context.Background()); err != nil {
		t.Fatal(err)
	}
	bus.SetGone(true)
	if _, err := d.Measure(context.Background()); err == nil {
		t.Fatal("Sense succeeded while the chip is gone")
	}
	if bus.NACKs() != 2 {
		t.Fatalf("%d NACKs", bus.NACKs())
	}
	bus.SetGone(false)
	// Back after a power cycle: a new Dev re-reads id and calibration.
	if d, err = New(bus, DefaultAddr, nil); err != nil {
		t.Fatal(err)
	}
	if m, err := d.Measure(context.Background()); err != nil || m.Temperature.Celsius() != 25.08 {
		t.Fatal(m, err)
	}
	if err := pb.Close(); err != nil {
		t.Fatal(err)
	}
}

// spiRead is a register read over SPI (BME280 datasheet §6.3.2: the
// register address with bit 7 set, then the data clocked out).
func spiRead(reg byte, data []byte) conntest.IO {
	w := make([]byte, len(data)+1)
	w[0] = reg
	return conntest.IO{W: w, R: append([]byte{0}, data...)}
}

func TestBME280OverSPI(t *testing.T) {
	// SPI writes clear bit 7 of the register address (§6.3.1): 0xF4 -> 0x74.
	port := &spitest.Playback{Playback: conntest.Playback{Ops: []conntest.IO{
		spiRead(0xD0, []byte{ChipIDBME280}),
		spiRead(0x88, calTP),
		spiRead(0xE1, calH),
		{W: []byte{0x74, 0x6C, 0x72, 0x03, 0x75, 0xA0, 0x74, 0x6C}},
		{W: []byte{0x74, 0x6D}},
		spiRead(0xF3, []byte{0x00}),
		spiRead(0xF7, dataTPH),
	}}}
	d, err := NewSPI(port, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := d.Measure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.Chip() != "BME280" || m.Temperature.Celsius() != 25.08 {
		t.Fatalf("%s %v", d.Chip(), m.Temperature)
	}
	if p := float64(m.Pressure) / float64(physic.Pascal); math.Abs(p-100653.27) > 0.5 {
		t.Fatalf("pressure %v Pa", p)
	}
	if err := port.Close(); err != nil {
		t.Fatal(err)
	}
}

// The chip.Sensor view of the same playback: BMP280 (datasheet §3.12
// example) gives temperature and pressure, no humidity; a failed read
// leaves dst as it was.
func TestSenseValues(t *testing.T) {
	bus := &i2ctest.Playback{Ops: append(initOps(ChipIDBMP280), senseOps(false)...)}
	d, err := New(bus, DefaultAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	prev := []chip.Value{{Metric: "x"}}
	vs, err := d.Sense(context.Background(), prev)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 3 || vs[1].Metric != chip.MetricTemp || vs[1].Unit != chip.UnitCelsius || math.Abs(vs[1].V-25.08) > 0.001 ||
		vs[2].Metric != chip.MetricPress || vs[2].Unit != chip.UnitHPa || math.Abs(vs[2].V-1006.5327) > 0.005 {
		t.Fatalf("values %+v", vs)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if vs, err := d.Sense(ctx, prev); err == nil || len(vs) != 1 {
		t.Fatalf("cancelled Sense: %+v %v", vs, err)
	}
}
