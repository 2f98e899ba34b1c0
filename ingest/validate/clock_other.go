//go:build !linux

package validate

// kernelSynced cannot tell on this platform; only the MinTime check applies.
func kernelSynced() (synced, known bool) { return false, false }
