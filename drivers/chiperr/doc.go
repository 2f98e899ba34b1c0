// Package chiperr holds the error values that the chip drivers under
// drivers/ share, so that the poller (and tests) can tell a CRC failure from
// a chip that is not ready or that reports its power-on value, whichever chip
// it came from. It imports nothing of ours.
package chiperr
