// Package sht3x drives the Sensirion SHT30/SHT31/SHT35 temperature and
// humidity sensors on I²C, in single-shot mode without clock stretching.
//
// Every 16-bit word the chip sends is followed by a CRC-8 (datasheet §4.12),
// checked here: a mismatch is an error wrapping chiperr.ErrCRC. While a
// measurement is in progress the chip NACKs a read (§4.3), which shows as a
// bus error; Sense waits the maximum measurement duration (Table 4) before
// reading, so that only happens on a broken bus.
//
// The driver does not own its bus: closing the bus is the caller's job.
package sht3x
