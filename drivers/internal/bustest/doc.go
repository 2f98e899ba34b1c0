// Package bustest has test helpers for the chip drivers: an I²C bus that can
// NACK (the chip vanished from the bus) in front of periph's i2ctest fakes.
package bustest
