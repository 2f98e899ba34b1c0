// Package sensirion has what the Sensirion chips (SHT3x, SHT4x, SCD4x)
// share: the CRC-8 that protects every 16-bit word they send, reading
// words off the bus with that check ([Dev]: command, execution time,
// words), the repeatability/precision [Level], the temperature and
// humidity [Measurement] and the conversions from raw words. The chip
// packages keep only their commands, durations and datasheet formulas.
//
// The shared table-driven tests of the family are in sensiriontest.
package sensirion
