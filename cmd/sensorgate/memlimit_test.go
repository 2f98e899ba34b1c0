package main

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"strings"
	"testing"
)

func TestMemoryLimitConfig(t *testing.T) {
	base := "sensors:\n  - {id: s1, type: sim, sim: {metrics: {t: {model: constant, base: 1}}}}\nuplinks:\n  - {name: console, type: stdout}\n"
	c, err := parseConfig([]byte(base), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Gateway.MemoryLimit != 0 {
		t.Fatalf("default memory_limit %d, want 0 (automatic)", c.Gateway.MemoryLimit)
	}
	for _, v := range []string{"-1", "0", "33554432"} {
		if _, err := parseConfig([]byte("gateway: {memory_limit: "+v+"}\n"+base), env(nil)); err != nil {
			t.Errorf("memory_limit %s: %v", v, err)
		}
	}
	for _, v := range []string{"-2", "1000", "16777216"} {
		_, err := parseConfig([]byte("gateway: {memory_limit: "+v+"}\n"+base), env(nil))
		if err == nil || !strings.Contains(err.Error(), "gateway.memory_limit") {
			t.Errorf("memory_limit %s: want a gateway.memory_limit error, got %v", v, err)
		}
	}
}

func TestApplyMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	g := &Main{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}

	t.Setenv("GOMEMLIMIT", "")
	g.applyMemoryLimit(GatewayConfig{MemoryLimit: 20 << 20})
	if got := debug.SetMemoryLimit(-1); got != 20<<20 {
		t.Fatalf("limit %d after memory_limit 20 MiB", got)
	}
	g.applyMemoryLimit(GatewayConfig{MemoryLimit: -1})
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("limit %d after memory_limit -1, want none", got)
	}

	g.applyMemoryLimit(GatewayConfig{})
	if got, want := debug.SetMemoryLimit(-1), autoMemoryLimit(machineMemory()); got != want || got < 32<<20 {
		t.Fatalf("automatic limit %d, want %d (at least 32 MiB)", got, want)
	}

	// The operator's GOMEMLIMIT wins over the config file.
	debug.SetMemoryLimit(100 << 20)
	t.Setenv("GOMEMLIMIT", "100MiB")
	g.applyMemoryLimit(GatewayConfig{MemoryLimit: 20 << 20})
	if got := debug.SetMemoryLimit(-1); got != 100<<20 {
		t.Fatalf("limit %d with GOMEMLIMIT=100MiB set, want it kept", got)
	}
}

func TestAutoMemoryLimit(t *testing.T) {
	for _, c := range []struct{ total, want int64 }{
		{512 << 20, 128 << 20}, // Pi Zero
		{4 << 30, 1 << 30},     // Pi 4
		{64 << 20, 32 << 20},   // tiny cgroup: the floor
		{0, 32 << 20},          // unknown
	} {
		if got := autoMemoryLimit(c.total); got != c.want {
			t.Errorf("autoMemoryLimit(%d) = %d, want %d", c.total, got, c.want)
		}
	}
	if m := machineMemory(); m <= 0 {
		t.Errorf("machineMemory() = %d on a Linux test machine", m)
	}
}
