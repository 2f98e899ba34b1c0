//go:build linux

package clock

import "golang.org/x/sys/unix"

// kernelSynced asks the kernel through adjtimex(2) (read-only: modes 0,
// no privileges needed) whether the clock is synchronised: an NTP client
// (systemd-timesyncd, chrony, ntpd) clears STA_UNSYNC when it has set it.
func kernelSynced() (synced, known bool) {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return false, false
	}
	return tx.Status&unix.STA_UNSYNC == 0 && state != unix.TIME_ERROR, true
}
