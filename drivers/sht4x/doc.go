// Package sht4x drives the Sensirion SHT40/SHT41/SHT45 temperature and
// humidity sensors on I²C.
//
// Commands are single bytes (datasheet §4.5, table 7); every 16-bit word the
// chip returns carries a CRC-8 (§4.4), checked here (chiperr.ErrCRC on a
// mismatch). New reads the serial number, which checks that the chip
// answers.
//
// The driver does not own its bus.
package sht4x
