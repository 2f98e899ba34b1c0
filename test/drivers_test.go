package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// TestChipsThroughTheBinary runs the real binary with a DS18B20 read through
// a 1-Wire sysfs tree in a temp dir (the kernel's w1-therm format) and a
// BME280 on an I2C bus this machine does not have. The DS18B20's readings
// must reach the summaries; the missing chip must be counted as failing
// without stopping the other.
func TestChipsThroughTheBinary(t *testing.T) {
	dir := t.TempDir()
	w1 := filepath.Join(dir, "w1")
	serial := "28-0316a2799aff"
	if err := os.MkdirAll(filepath.Join(w1, serial), 0o755); err != nil {
		t.Fatal(err)
	}
	// Scratchpad 0x0172 = 23.125 °C (DS18B20 datasheet, Table 1: LSB 1/16 °C).
	slave := "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
	if err := os.WriteFile(filepath.Join(w1, serial, "w1_slave"), []byte(slave), 0o644); err != nil {
		t.Fatal(err)
	}
	mport := mqtttest.FreePort(t)
	cfg := writeConfig(t, dir, fmt.Sprintf(`gateway: {id: gw-chips, data_dir: %s, shutdown_grace: 5s}
metrics: {listen: "127.0.0.1:%d"}
sensors:
  - id: freezer
    type: ds18b20
    location: cold room
    device: {bus: %s, serial: %s, interval: 200ms}
  - id: room
    type: bme280
    device: {bus: /dev/i2c-97, interval: 200ms}
rules:
  windows:
    - {name: w, sensor: "*", metric: "*", type: tumbling, size: 1s, lateness: 0s}
uplinks:
  - {name: console, type: stdout}
`, dir, mport, w1, serial))
	g := startGateway(t, cfg)
	mqtttest.WaitFor(t, 30*time.Second, func() bool {
		return strings.Contains(g.out(), `"sensor":"freezer"`)
	}, "a DS18B20 summary on stdout")

	mqtttest.WaitFor(t, 30*time.Second, func() bool {
		doc := health(t, mport)
		comps, _ := doc["components"].(map[string]any)
		d, _ := comps["source_drivers"].(map[string]any)
		sensors, _ := d["Sensors"].([]any)
		for _, s := range sensors {
			m, _ := s.(map[string]any)
			if m["ID"] == "room" {
				errs, _ := m["Errors"].(float64)
				return errs >= 2 && m["Up"] == false
			}
		}
		return false
	}, "the missing BME280 counted as failing")

	g.terminate()
	var n int
	for _, line := range scanLines(g.out()) {
		var m upstreamMsg
		if err := json.Unmarshal([]byte(line), &m); err != nil || m.Summary == nil {
			continue
		}
		if m.Summary.Sensor != "freezer" {
			t.Errorf("summary for %s: only the freezer has a chip", m.Summary.Sensor)
			continue
		}
		n++
		if m.Summary.Metric != "temperature" || m.Summary.Min != 23.125 || m.Summary.Max != 23.125 || m.Summary.Unit != "°C" {
			t.Errorf("freezer summary %+v, want temperature 23.125 °C", m.Summary)
		}
		if m.Summary.Meta["location"] != "cold room" {
			t.Errorf("meta %v", m.Summary.Meta)
		}
	}
	if n == 0 {
		t.Fatal("no freezer summaries")
	}
}
