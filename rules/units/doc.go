// Package units converts between the measurement units the rules' convert
// stage knows: temperature, pressure, length, volume, energy and the rest of
// its table, each unit a factor and an offset from its dimension's base unit.
//
// # Guarantees
//
// Conversion refuses units of different dimensions and unknown names (with
// the name in the error); the table is fixed at build time and read-only, so
// the functions are safe for concurrent use. Names match exactly: "degC"
// and its listed aliases, not "DEGC".
package units
