package clock

import (
	"runtime"
	"testing"
	"time"
)

var t2026 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestClockFakeHwclockStaleTimeIsPlausibleButUnsynced(t *testing.T) {
	// fake-hwclock restores the last shutdown time: plausible year, but the
	// kernel still says unsynchronised.
	wall := t2026.Add(-72 * time.Hour)
	c := New(Options{Now: func() time.Time { return wall }, Mono: func() time.Duration { return 0 }, Status: func() (bool, bool) { return false, true }})
	if c.Synced() {
		t.Fatal("unsynced kernel clock reported synced")
	}
	// A kernel that cannot tell falls back to the year check.
	c2 := New(Options{Now: func() time.Time { return t2026 }, Status: func() (bool, bool) { return false, false }})
	if !c2.Synced() {
		t.Fatal("plausible time with unknown status should count as synced")
	}
	c3 := New(Options{Now: func() time.Time { return time.Unix(100, 0) }, Status: func() (bool, bool) { return true, true }})
	if c3.Synced() {
		t.Fatal("1970 with a synced kernel flag should not count as synced")
	}
}

func TestKernelStatusDoesNotFail(t *testing.T) {
	// On Linux adjtimex(2) read-only works without privileges.
	_, known := kernelSynced()
	if runtime.GOOS == "linux" && !known {
		t.Error("adjtimex status unknown on Linux")
	}
}
