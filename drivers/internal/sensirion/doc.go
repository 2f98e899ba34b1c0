// Package sensirion has what the Sensirion chips (SHT3x, SHT4x, SCD4x)
// share: the CRC-8 that protects every 16-bit word they send, and reading
// words off the bus with that check.
package sensirion
