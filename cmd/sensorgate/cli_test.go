package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sensorgate/sensorgate/buffer"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = realMain(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestCommandLineConvention holds the convention of doc.go ("Command
// line") for every command and subcommand: --help, no arguments, a bad flag.
func TestCommandLineConvention(t *testing.T) {
	t.Chdir(t.TempDir()) // probe and friends must not find a config or data dir here
	paths := [][]string{{}, {"run"}, {"validate"}, {"buffer"}, {"buffer", "stats"}, {"buffer", "peek"}, {"buffer", "compact"}, {"probe"}, {"version"}}
	for _, c := range simulateCommand() {
		paths = append(paths, []string{c.name})
	}
	for _, p := range paths {
		name := strings.Join(append([]string{"sensorgate"}, p...), " ")
		args := func(a ...string) []string { return append(append([]string{}, p...), a...) }

		for _, h := range []string{"--help", "-h"} {
			code, out, errs := runCLI(args(h)...)
			if code != 0 || errs != "" || strings.Count(out, "Usage:") != 1 || strings.Count(strings.ToLower(out), "usage:") != 1 {
				t.Errorf("%s %s: exit %d, want 0 with Usage: once on stdout and nothing on stderr\nstdout: %q\nstderr: %q", name, h, code, out, errs)
			}
		}

		code, out, errs := runCLI(args("--no-such-flag")...)
		checkUsageError(t, name+" --no-such-flag", name, code, out, errs)

		code, out, errs = runCLI(args()...)
		switch name {
		case "sensorgate version":
			if code != 0 || !strings.HasPrefix(out, "sensorgate ") || errs != "" {
				t.Errorf("%s: exit %d, stdout %q, stderr %q", name, code, out, errs)
			}
		case "sensorgate probe":
			// Runs the probe: 0 on a board with a bus, else one line per failure.
			for _, l := range splitLines(errs) {
				if !strings.HasPrefix(l, name+": ") || strings.Contains(l, "Init()") {
					t.Errorf("%s: stderr line %q: want %q and what to do", name, l, name+": ")
				}
			}
			if code != 0 && (code != 1 || errs == "") {
				t.Errorf("%s: exit %d, stderr %q; want 0, or 1 with the failure", name, code, errs)
			}
		default:
			checkUsageError(t, name+" (no arguments)", name, code, out, errs)
		}
	}
	code, out, errs := runCLI("bogus")
	checkUsageError(t, "sensorgate bogus", "sensorgate", code, out, errs)
	code, out, errs = runCLI("buffer", "bogus")
	checkUsageError(t, "sensorgate buffer bogus", "sensorgate buffer", code, out, errs)
	code, out, errs = runCLI("run", "--config", "c.yaml", "extra")
	checkUsageError(t, "sensorgate run extra", "sensorgate run", code, out, errs)
}

// checkUsageError: exit 2, nothing on stdout, and on stderr one line with
// the command's prefix and the pointer to --help.
func checkUsageError(t *testing.T, what, name string, code int, out, errs string) {
	t.Helper()
	lines := splitLines(errs)
	if code != 2 || out != "" || len(lines) != 2 || !strings.HasPrefix(lines[0], name+": ") ||
		lines[1] != "Run '"+name+" --help' for usage." {
		t.Errorf("%s: exit %d, want 2 with one line and the pointer to --help on stderr\nstdout: %q\nstderr: %q", what, code, out, errs)
	}
}

// lockConfig is the smallest gateway config on dir; listen "" turns
// metrics off.
func lockConfig(t *testing.T, dir, listen string) *Config {
	t.Helper()
	yaml := fmt.Sprintf("gateway: {data_dir: %q}\nmetrics: {listen: %q}\nsensors:\n  - {id: s1, type: sim, sim: {metrics: {t: {model: constant, base: 1}}}}\nuplinks:\n  - {name: console, type: stdout}\n", dir, listen)
	c, err := parseConfig([]byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDataDirInUse(t *testing.T) {
	dir := t.TempDir()
	m1 := &Main{Config: lockConfig(t, dir, "")}
	if err := m1.Open(); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("data dir %s is in use by another sensorgate (pid %d)", dir, os.Getpid())

	m2 := &Main{Config: lockConfig(t, dir, "")}
	err := m2.Open()
	var iu *dataDirInUseError
	if !errors.As(err, &iu) || iu.PID != os.Getpid() || !strings.Contains(err.Error(), want) {
		t.Fatalf("second Open: %v; want %q", err, want)
	}
	for _, sub := range []string{"stats", "peek", "compact"} {
		code, _, errs := runCLI("buffer", sub, "--data", dir)
		if code != 1 || len(splitLines(errs)) != 1 || !strings.HasPrefix(errs, "sensorgate buffer "+sub+": "+want) {
			t.Errorf("buffer %s while running: exit %d, stderr %q; want 1 and %q", sub, code, errs, want)
		}
	}

	// A clean stop removes the lock file; the next start takes the dir.
	if err := m1.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, pidFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("lock file after a clean stop: %v", err)
	}
	// What a kill -9 leaves: the file, with a pid, and no lock.
	if err := os.WriteFile(filepath.Join(dir, pidFile), []byte("999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m2.Open(); err != nil {
		t.Fatalf("start after a stale lock file: %v", err)
	}
	defer m2.Close()
	if got := readPID(dir); got != os.Getpid() {
		t.Fatalf("lock file says pid %d, want %d", got, os.Getpid())
	}
}

// TestRunMetricsAddrInUse: a taken metrics port stops run with one line
// that names the address and the key to change.
func TestRunMetricsAddrInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	m := &Main{Config: lockConfig(t, dir, ln.Addr().String())}
	err = m.Open()
	var ae *addrInUseError
	if !errors.As(err, &ae) || ae.Addr != ln.Addr().String() {
		t.Fatalf("Open: %v, want an addrInUseError", err)
	}
	if _, err := os.Stat(filepath.Join(dir, pidFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("lock file after a failed start: %v", err)
	}

	cfg := filepath.Join(dir, "c.yaml")
	yaml := fmt.Sprintf("gateway: {data_dir: %q}\nmetrics: {listen: %q}\nsensors:\n  - {id: s1, type: sim, sim: {metrics: {t: {model: constant, base: 1}}}}\nuplinks:\n  - {name: console, type: stdout}\n", dir, ln.Addr().String())
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI("run", "--config", cfg)
	want := "sensorgate run: metrics: address " + ln.Addr().String() + " is already in use by another program: set metrics.listen in the config"
	lines := splitLines(errs) // the log's start-up lines, then the failure
	if code != 1 || len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], want) || strings.Count(errs, "sensorgate run:") != 1 {
		t.Fatalf("run: exit %d, stderr %q; want 1 and %q", code, errs, want)
	}
}

func TestDefaultMetricsPort(t *testing.T) {
	c := lockConfig(t, t.TempDir(), "")
	c.Metrics.Listen = nil
	c.defaults()
	_, port, _ := net.SplitHostPort(*c.Metrics.Listen)
	if p, _ := strconv.Atoi(port); p >= 9090 && p <= 9999 {
		t.Fatalf("default metrics.listen %s: in Prometheus' own or the exporters' port range", *c.Metrics.Listen)
	}
}

func TestBufferPeekEmpty(t *testing.T) {
	dir := t.TempDir()
	o, err := buffer.Open(buffer.Config{Path: filepath.Join(dir, "outbox.db")}, buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o.Close()
	code, out, errs := runCLI("buffer", "peek", "--data", dir)
	if code != 0 || out != "" || errs != "sensorgate buffer peek: the outbox "+filepath.Join(dir, "outbox.db")+" is empty\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = runCLI("buffer", "peek", "--data", dir, "--lane", "alerts")
	if code != 0 || out != "" || !strings.Contains(errs, "lane alerts of the outbox") {
		t.Fatalf("--lane: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestProbeNoBusMessage(t *testing.T) {
	cause := errors.New("i2creg: no bus found; did you forget to call Init()?")
	err := i2cOpenError("/dev/i2c-1", nil, cause)
	if msg := err.Error(); !strings.Contains(msg, "I2C bus /dev/i2c-1: this machine has no I2C bus") || strings.Contains(msg, "Init()") {
		t.Fatalf("no bus: %q", msg)
	}
	err = i2cOpenError("/dev/i2c-7", []string{"I2C1", "I2C2"}, cause)
	if msg := err.Error(); !strings.Contains(msg, "I2C bus /dev/i2c-7") || !strings.Contains(msg, "this machine has: I2C1, I2C2") {
		t.Fatalf("other buses: %q", msg)
	}
}

func TestConfigPathOnce(t *testing.T) {
	code, _, errs := runCLI("run", "--config", "missing.yaml")
	if code != 2 || strings.Count(errs, "missing.yaml") != 1 || !strings.HasPrefix(errs, "sensorgate run: config missing.yaml: ") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}
