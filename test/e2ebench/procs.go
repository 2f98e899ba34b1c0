package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// clockTicks is the kernel's USER_HZ (the unit of utime/stime in
// /proc/PID/stat), read once from getconf; 100 when that fails.
var clockTicks = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && v > 0 {
			return v
		}
	}
	return 100
}()

// cpuSeconds is utime+stime of pid (its own threads, not children), in
// seconds, from /proc/PID/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces; fields after the last
	// ')' start at field 3 (state). utime is field 14, stime field 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return float64(ut+st) / clockTicks, nil
}

// memKB returns the named fields (VmRSS, VmHWM, ...) of /proc/PID/status, in
// kB.
func memKB(pid int, names ...string) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(names))
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, n := range names {
			if k == n {
				f := strings.Fields(v)
				if len(f) > 0 {
					out[n], _ = strconv.ParseInt(f[0], 10, 64)
				}
			}
		}
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("/proc/%d/status: no %s", pid, n)
		}
	}
	return out, nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// proc is a child process with its output kept in memory.
type proc struct {
	cmd  *exec.Cmd
	out  mqtttest.SyncBuffer // stdout and stderr
	done chan struct{}
	err  error
}

func startProc(name string, args []string, env []string) (*proc, error) {
	p := &proc{done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits up to timeout, then kills. It reports whether
// the process ended on its own within timeout.
func (p *proc) stop(sig syscall.Signal, timeout time.Duration) bool {
	if p.exited() {
		return true
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return false
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startMosquitto starts a Debian mosquitto on a free loopback port with a
// config in dir: anonymous, no persistence, generous queues, $SYS every
// second; inflight > 0 sets max_inflight_messages (0 keeps mosquitto's 20).
func startMosquitto(bin, dir string, maxQueued, inflight int) (*mqtttest.Mosquitto, error) {
	conf := fmt.Sprintf("allow_anonymous true\nmax_queued_messages %d\nsys_interval 1\n", maxQueued)
	if inflight > 0 {
		conf += fmt.Sprintf("max_inflight_messages %d\n", inflight)
	}
	return mqtttest.LaunchMosquitto(mqtttest.MosquittoConfig{Bin: bin, Dir: dir, Conf: conf})
}

// ioCounts is what a process has written, from /proc/PID/io: write_bytes
// (what it sent to the block layer) and wchar (every write(2), sockets
// included).
type ioCounts struct{ writeBytes, wchar uint64 }

func ioWritten(pid int) (ioCounts, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return ioCounts{}, err
	}
	vals := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			vals[k], _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	if _, ok := vals["wchar"]; !ok {
		return ioCounts{}, fmt.Errorf("/proc/%d/io: no wchar", pid)
	}
	return ioCounts{vals["write_bytes"], vals["wchar"]}, nil
}

// written is the bytes written between a and b and which field says so:
// write_bytes, or wchar where the kernel does not account write_bytes
// (as buffer/bench_test.go does).
func written(a, b ioCounts) (uint64, string) {
	if b.writeBytes > 0 {
		return b.writeBytes - a.writeBytes, "write_bytes"
	}
	return b.wchar - a.wchar, "wchar"
}

// health is the part of the gateway's /healthz document the benchmark reads
// (see cmd/sensorgate/metrics.go and the packages' Stats types).
type health struct {
	Components struct {
		Source struct {
			Received     uint64
			Readings     uint64
			Dropped      uint64
			Held         uint64
			Queued       int
			Connected    bool
			DecodeErrors map[string]uint64
			// Durable acknowledgements: DurableAcked (the durable
			// mqttsub), Journaled (its journal-era name); nil when the
			// binary has neither.
			DurableAcked *uint64
			Journaled    *uint64
			PendingAcks  int64
			Redelivered  uint64
		} `json:"source_mqtt0"`
		Rules struct {
			Readings    uint64
			Rejected    uint64
			Late        uint64
			Overflow    uint64
			Summaries   uint64
			OpenWindows int64
			Keys        int64
			Checkpoints *uint64 // nil: a binary without checkpoints
		} `json:"rules"`
		Uplink struct {
			Sent, Acked, Errors uint64
		} `json:"uplink_up"`
		Outbox struct {
			Lanes []struct {
				Name     string
				Depth    int64
				Bytes    int64
				Appended uint64
				Dropped  map[string]uint64
			}
			FileSize int64
			Commits  uint64
			// nil: a binary that does not count them.
			WriteTxs     *uint64
			BytesWritten *uint64
		} `json:"outbox"`
	} `json:"components"`
}

func getHealth(ctx context.Context, port int) (*health, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/healthz", port), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("healthz: %s", resp.Status)
	}
	var h health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return nil, fmt.Errorf("healthz: %w", err)
	}
	return &h, nil
}

// durableAcks is the source's count of messages acknowledged after a
// commit, or nil when the binary does not count them.
func (h *health) durableAcks() *uint64 {
	if s := h.Components.Source; s.DurableAcked != nil {
		return s.DurableAcked
	}
	return h.Components.Source.Journaled
}

// gwConfig is the gateway under test: one MQTT source on the simulator's
// topic, tumbling windows over every sensor and metric, summaries upstream
// over MQTT QoS 1 under bench/.
type gwConfig struct {
	dataDir     string
	broker      string // the source's broker
	upstream    string // the uplink's broker URL
	mode        mode
	inflightKey bool // the binary knows sources.mqtt[].inflight
	metricsPort int
	window      string
	// sourceQueue and readingsQueue, when > 0, set
	// sources.mqtt[0].queue_size and gateway.queue_size; readCoalesce,
	// when not empty, sources.mqtt[0].read_coalesce.
	sourceQueue, readingsQueue int
	readCoalesce               string
	grace                      time.Duration
}

func (c gwConfig) yaml() string {
	extraSrc, extraGw, extraSub := "", "", ""
	if c.sourceQueue > 0 {
		extraSrc = fmt.Sprintf("\n      queue_size: %d", c.sourceQueue)
	}
	if c.readCoalesce != "" {
		extraSrc += fmt.Sprintf("\n      read_coalesce: %s", c.readCoalesce)
	}
	if c.mode.InFlight > 0 && c.inflightKey {
		extraSrc += fmt.Sprintf("\n      inflight: %d", c.mode.InFlight)
	}
	if c.readingsQueue > 0 {
		extraGw = fmt.Sprintf("\n  queue_size: %d", c.readingsQueue)
	}
	// A durable point leaves durable at the gateway's default (durable for
	// QoS 1), so that it measures what a user gets without asking.
	if c.mode.QoS > 0 && !c.mode.Durable {
		extraSub = "\n          durable: false"
	}
	return fmt.Sprintf(`gateway:
  id: bench
  data_dir: %s
  shutdown_grace: %s%s
log:
  level: info
metrics:
  listen: 127.0.0.1:%d
sources:
  mqtt:
    - broker: %s
      client_id: e2ebench-gw-in%s
      subscriptions:
        - topic: "sensors/+/telemetry"
          qos: %d
          format: json
          json: {sensor_topic_segment: 1, time_field: ts, time_format: unix_ms}%s
rules:
  windows:
    - {name: w, sensor: "*", metric: "*", type: tumbling, size: %s, lateness: 2s}
uplinks:
  - name: up
    type: mqtt
    url: %s
    client_id: e2ebench-gw-up
    topic: "bench/{gateway}/{lane}"
`, c.dataDir, c.grace, extraGw, c.metricsPort, c.broker, extraSrc, c.mode.QoS, extraSub, c.window, c.upstream)
}

// capabilities is what the gateway binary supports of the durable-ingest
// work, probed once: the benchmark runs old and new binaries alike.
type capabilities struct {
	FlushOnStop bool `json:"run_flush_on_stop"`
	InFlightKey bool `json:"source_inflight_key"`
}

// probeCapabilities asks `run --help` for --flush-on-stop and `validate`
// whether a config with sources.mqtt[0].inflight is accepted (unknown keys
// are errors).
func probeCapabilities(bin, dir string) (capabilities, error) {
	var c capabilities
	out, _ := exec.Command(bin, "run", "--help").CombinedOutput()
	c.FlushOnStop = strings.Contains(string(out), "flush-on-stop")
	cfg := filepath.Join(dir, "probe.yaml")
	y := gwConfig{dataDir: filepath.Join(dir, "probe-data"), broker: "tcp://127.0.0.1:1", upstream: "tcp://127.0.0.1:1",
		mode: mode{QoS: 1, InFlight: 20}, inflightKey: true, metricsPort: 1, window: "10s", grace: time.Second}.yaml()
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		return c, err
	}
	vout, err := exec.Command(bin, "validate", "--config", cfg).CombinedOutput()
	c.InFlightKey = err == nil
	if err != nil && !strings.Contains(string(vout), "inflight") {
		return c, fmt.Errorf("validate of the benchmark's config failed: %v: %s", err, strings.TrimSpace(string(vout)))
	}
	return c, nil
}
