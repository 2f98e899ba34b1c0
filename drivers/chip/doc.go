// Package chip is the one interface every chip driver under drivers/
// implements, so that a consumer (the [drivers.Poller], a test, a tool)
// handles any chip without knowing its type: periph's physic.SenseEnv
// idea, widened to the values these chips give (CO₂, ADC channels, pulse
// counts).
//
// # Basics
//
// A [Sensor] appends one [Value] per quantity to a caller's slice on each
// Sense, in a fixed order per chip, with the units named by the Unit*
// constants (°C, %RH, hPa, ppm) or, for the chips whose meaning is set by
// the config (an ADC channel, a pulse counter), the unit configured for
// them. A driver asserts the interface at compile time:
//
//	var _ chip.Sensor = (*Dev)(nil)
//
// A chip that must watch continuously between reads (the pulse counter
// counts edges) also implements [Runner]; whoever senses it runs it, for as
// long as it senses. Chips never own their bus: Halt puts the chip to rest
// and leaves the bus or port to whoever opened it.
//
// # Guarantees
//
// Sense either returns dst with every value of one measurement appended,
// or dst unchanged (same length) and an error; never a partial
// measurement. Errors wrap the drivers/chiperr values where the cause is
// one of them, so a caller can tell a bad CRC from a vanished chip.
//
// # Caveats
//
// This package has no quality flags: what the chips can say about a
// value's trust (a CRC error, the DS18B20's power-on 85 °C, no data ready)
// is an error, not a flagged value, so it is counted and never forwarded.
// Values are float64 in the unit named; the typed physic values stay in
// each driver's own API (Measure).
package chip
