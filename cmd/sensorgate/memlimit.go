package main

import (
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// applyMemoryLimit sets the runtime's soft memory limit from
// gateway.memory_limit, unless GOMEMLIMIT is set: the operator's
// environment wins over the config file. It runs at start and on reload.
func (m *Main) applyMemoryLimit(c GatewayConfig) {
	if env := os.Getenv("GOMEMLIMIT"); env != "" {
		m.Logger.Info("memory limit from GOMEMLIMIT", "GOMEMLIMIT", env)
		return
	}
	limit := c.MemoryLimit
	switch {
	case limit < 0:
		limit = math.MaxInt64 // the runtime's "no limit"
	case limit == 0:
		limit = autoMemoryLimit(machineMemory())
		m.Logger.Info("memory limit", "bytes", limit, "of_machine", machineMemory())
	}
	debug.SetMemoryLimit(limit)
}

// autoMemoryLimit is gateway.memory_limit's default for a machine (or
// cgroup) of total bytes: a quarter of it, at least minMemoryLimit.
func autoMemoryLimit(total int64) int64 {
	return max(total/4, minMemoryLimit)
}

// machineMemory returns the memory the gateway may use: MemTotal, or the
// cgroup v2 limit when lower; 0 when neither can be read.
func machineMemory() int64 {
	var total int64
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64); err == nil {
					total = kb << 10
				}
				break
			}
		}
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 && (total == 0 || v < total) {
			total = v // "max" (no limit) does not parse
		}
	}
	return total
}
