// Package scd4x drives the Sensirion SCD40/SCD41 CO₂ sensors on I²C in
// periodic measurement mode (a new sample every 5 s).
//
// New stops any periodic measurement left running (a restart of the
// gateway does not power-cycle the chip), reads the serial number (which
// checks that the chip answers and its CRC) and starts periodic measurement.
// Sense polls the data-ready status and then reads the measurement. Every
// word is CRC-checked (datasheet §3.11); a mismatch is chiperr.ErrCRC. Halt
// stops periodic measurement.
//
// The driver does not own its bus.
package scd4x
