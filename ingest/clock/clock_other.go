//go:build !linux

package clock

// kernelSynced cannot tell on this platform; only the MinTime check applies.
func kernelSynced() (synced, known bool) { return false, false }
