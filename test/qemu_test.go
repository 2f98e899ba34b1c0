package test

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// TestQEMUArmV6 cross-builds sensorgate for linux/arm GOARM=6 (Raspberry Pi
// Zero/1, the ARM1176) and runs it under qemu-arm-static -cpu arm1176, so an
// ARMv7-only instruction or a 64-bit atomic on a misaligned field would
// crash it: periph's host.Init (`probe --list`), then `run` with simulated
// sensors and a DS18B20 read through a fake 1-Wire sysfs tree (which makes
// run call host.Init too), whose summaries must reach the stdout uplink,
// then a clean SIGTERM shutdown.
func TestQEMUArmV6(t *testing.T) {
	qemu := mqtttest.NeedTool(t, "qemu-arm-static", mqtttest.QEMUInstall)
	bin := qemuBuildARMv6(t)

	// periph's host.Init on the emulated ARMv6.
	out, err := exec.Command(qemu, "-cpu", "arm1176", bin, "probe", "--list").CombinedOutput()
	if err != nil {
		t.Fatalf("probe --list under qemu: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "periph host.Init: ok") {
		t.Fatalf("probe --list did not report host.Init:\n%s", out)
	}
	t.Logf("probe --list under qemu-arm -cpu arm1176:\n%s", out)

	// A config with simulated sensors, a DS18B20 on a fake 1-Wire sysfs
	// tree (a chip sensor makes `run` call host.Init and start the drivers
	// poller) and a stdout uplink. The scratchpad is the DS18B20
	// datasheet's table 1 value 0x0191 = +25.0625 °C.
	dir := t.TempDir()
	w1 := filepath.Join(dir, "w1")
	qemuW1Slave(t, w1, "28-00000a1b2c3d", 0x0191)
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`gateway: {id: gw-arm, data_dir: %s, shutdown_grace: 2s}
metrics: {listen: ""}
sensors:
  - id: arm-1
    type: sim
    sim:
      interval: 100ms
      metrics:
        temperature: {model: sine, base: 20, amplitude: 5, period: 10s, unit: "°C"}
  - id: arm-2
    type: sim
    sim:
      interval: 200ms
      metrics:
        humidity: {model: random_walk, base: 50, step: 1, min: 0, max: 100, unit: "%%RH"}
  - id: arm-w1
    type: ds18b20
    device: {bus: %s, serial: 28-00000a1b2c3d, interval: 200ms}
rules:
  windows:
    - {name: 1s, sensor: "*", metric: "*", type: tumbling, size: 1s, lateness: 0s}
uplinks:
  - {name: console, type: stdout}
`, filepath.Join(dir, "data"), w1)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := qemuStart(t, qemu, bin, "run", "--config", cfg)
	seen := func() map[string]bool {
		got := map[string]bool{}
		w1OK := true
		for _, line := range strings.Split(p.stdout(), "\n") {
			var m struct {
				Kind    string `json:"kind"`
				Summary *struct {
					Sensor string  `json:"sensor"`
					Count  float64 `json:"count"`
					Min    float64 `json:"min"`
					Max    float64 `json:"max"`
				} `json:"summary"`
			}
			if json.Unmarshal([]byte(line), &m) == nil && m.Kind == "summary" && m.Summary != nil && m.Summary.Count > 0 {
				got[m.Summary.Sensor] = true
				if m.Summary.Sensor == "arm-w1" && (m.Summary.Min != 25.0625 || m.Summary.Max != 25.0625) {
					w1OK = false
				}
			}
		}
		if !w1OK {
			t.Fatalf("ds18b20 summary is not 25.0625 °C:\n%s", p.stdout())
		}
		return got
	}
	deadline := time.Now().Add(90 * time.Second)
	for s := seen(); !s["arm-1"] || !s["arm-2"] || !s["arm-w1"]; s = seen() {
		if time.Now().After(deadline) || p.exited() {
			t.Fatalf("no summaries for all three sensors within 90s (exited %v)\nstdout:\n%s\nstderr:\n%s", p.exited(), p.stdout(), p.stderr())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("no exit within 60s of SIGTERM\nstderr:\n%s", p.stderr())
	}
	if p.err != nil {
		t.Fatalf("exit after SIGTERM: %v\nstderr:\n%s", p.err, p.stderr())
	}
}

// qemuW1Slave writes the w1_slave file the kernel's w1-therm driver would
// show for a DS18B20 holding raw (12-bit resolution), with the scratchpad's
// Maxim CRC-8 computed.
func qemuW1Slave(t *testing.T, dir, id string, raw uint16) {
	t.Helper()
	sp := []byte{byte(raw), byte(raw >> 8), 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10}
	var crc byte
	for _, v := range sp {
		crc ^= v
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0x8C
			} else {
				crc >>= 1
			}
		}
	}
	sp = append(sp, crc)
	var hex []string
	for _, b := range sp {
		hex = append(hex, fmt.Sprintf("%02x", b))
	}
	h := strings.Join(hex, " ")
	body := fmt.Sprintf("%s : crc=%02x YES\n%s t=%d\n", h, crc, h, int(int16(raw))*1000/16)
	if err := os.MkdirAll(filepath.Join(dir, id), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, id, "w1_slave"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// qemuBuildARMv6 cross-compiles the binary and checks it is a 32-bit ARM
// ELF.
func qemuBuildARMv6(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sg-arm")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "../cmd/sensorgate")
	build.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm", "GOARM=6", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("cross-build linux/arm GOARM=6: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_ARM || f.Class != elf.ELFCLASS32 {
		t.Fatalf("built %v %v, want 32-bit ARM", f.Class, f.Machine)
	}
	if st, err := os.Stat(bin); err == nil {
		t.Logf("linux/arm GOARM=6 binary: %.1f MB", float64(st.Size())/(1<<20))
	}
	return bin
}

// qemuProc is a process run under qemu.
type qemuProc struct {
	cmd  *exec.Cmd
	out  mqtttest.SyncBuffer
	errb mqtttest.SyncBuffer
	done chan struct{}
	err  error
}

func qemuStart(t *testing.T, qemu, bin string, args ...string) *qemuProc {
	t.Helper()
	p := &qemuProc{done: make(chan struct{})}
	p.cmd = exec.Command(qemu, append([]string{"-cpu", "arm1176", bin}, args...)...)
	p.cmd.Stdout = &p.out
	p.cmd.Stderr = &p.errb
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *qemuProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *qemuProc) stdout() string {
	return p.out.String()
}

func (p *qemuProc) stderr() string {
	return p.errb.String()
}
