package boltcheck

import (
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

// pinnedBolt is the go.etcd.io/bbolt major.minor whose on-disk format
// (FormatVersion) this package was last checked against.
const pinnedBolt = "v1.5"

// TestBoltFormatPinned fails when bbolt moves to another major or minor
// version: this package parses bbolt's pages by hand, and a new version may
// change them. Re-read bbolt's internal/common/page.go and meta.go against
// this package's constants, then move pinnedBolt.
func TestBoltFormatPinned(t *testing.T) {
	v := boltModuleVersion(t)
	if got := majorMinor(v); got != pinnedBolt {
		t.Fatalf("go.etcd.io/bbolt is %s, boltcheck is pinned to %s.x (format version %d): check the page layout, then update pinnedBolt", v, pinnedBolt, FormatVersion)
	}
}

// boltModuleVersion reads bbolt's version from the test binary's build
// info, or from go.mod when the binary has none.
func boltModuleVersion(t *testing.T) string {
	t.Helper()
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "go.etcd.io/bbolt" {
				if d.Replace != nil && d.Replace.Version != "" {
					return d.Replace.Version
				}
				return d.Version
			}
		}
	}
	b, err := os.ReadFile("../../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "go.etcd.io/bbolt" {
			return f[1]
		}
		if len(f) >= 3 && f[0] == "require" && f[1] == "go.etcd.io/bbolt" {
			return f[2]
		}
	}
	t.Fatal("go.etcd.io/bbolt not found in the build info or go.mod")
	return ""
}

// majorMinor turns "v1.5.0" (or "v1.5.0-rc.1") into "v1.5".
func majorMinor(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

func TestMajorMinor(t *testing.T) {
	for in, want := range map[string]string{"v1.5.0": "v1.5", "v1.5.0-rc.1": "v1.5", "v2.0.1": "v2.0", "v1": "v1"} {
		if got := majorMinor(in); got != want {
			t.Errorf("majorMinor(%q) = %q, want %q", in, got, want)
		}
	}
}
