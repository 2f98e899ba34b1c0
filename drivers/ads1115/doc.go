// Package ads1115 reads single-ended channels and differential inputs of
// the TI ADS1115 (16-bit) and ADS1015 (12-bit) ADCs on I²C through periph's ads1x15 driver, one
// single-shot conversion per Sense at the fastest data rate (TI's
// recommended duty cycling for low power, ADS1115 datasheet §9.4.3).
//
// The programmable gain is chosen from the full-scale voltage (the smallest
// range that covers it: 0.256, 0.512, 1.024, 2.048, 4.096 or 6.144 V).
// Sense reports volts × scale + offset under the metric and unit of the
// [Output] given to New (by default "voltage" in V). These chips have no CRC
// and no id register; a vanished chip shows as a bus error (NACK).
//
// The driver does not own its bus.
package ads1115
