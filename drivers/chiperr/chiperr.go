package chiperr

import "errors"

var (
	// ErrCRC: the data read from the chip failed its checksum (a noisy or
	// too long bus, a loose wire).
	ErrCRC = errors.New("crc mismatch")
	// ErrNotReady: the chip has no new measurement yet.
	ErrNotReady = errors.New("no data ready")
	// ErrPowerOn: the chip returned its power-on reset value instead of a
	// measurement (the DS18B20's 85 °C).
	ErrPowerOn = errors.New("power-on reset value")
	// ErrChipID: the chip at the address is not the expected one.
	ErrChipID = errors.New("unexpected chip id")
	// ErrNotFound: the device is not present (no such 1-Wire device).
	ErrNotFound = errors.New("device not found")
)
