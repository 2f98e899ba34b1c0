// Package bme280 reads Bosch BME280 (temperature, humidity, pressure) and
// BMP280 (temperature, pressure) sensors through periph's bmxx80 driver,
// on I²C or SPI, in forced mode: one conversion per Sense, the chip sleeps
// in between.
//
// New reads the chip id (register 0xD0: 0x60 BME280, 0x58 BMP280) and the
// calibration, so after a chip vanished and came back (power cycled), a new
// Dev must be made; the poller does that after a failed read. These chips
// have no CRC on I²C.
//
// The driver does not own its bus.
package bme280
