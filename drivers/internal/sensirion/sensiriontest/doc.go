// Package sensiriontest is the test suite the Sensirion drivers share
// (SHT3x, SHT4x, SCD4x): each chip package describes its datasheet bytes
// once as a [Chip] and runs the same table of tests against them through
// periph's i2ctest.Playback, whose Close fails on an unconsumed op. What is
// particular to one chip (the SCD4x's data-ready polling, the SHT3x's
// status register) stays in that chip's own tests.
package sensiriontest
