// Package pulse counts edges on a GPIO input in the background: the
// S0 pulse outputs of energy meters, reed switches of water and gas meters.
//
// Run waits for edges (gpio.PinIn.WaitForEdge, which the kernel delivers as
// interrupts) and counts them, ignoring edges closer than the debounce time
// to the last counted one (contact bounce; counted separately). Measure
// returns the total count and the rate since the previous read; Sense (the
// chip.Sensor method) reports both scaled by Opts.PerPulse, as "count" in
// Opts.Unit and "rate" in Opts.Unit per second. A Counter is a
// chip.Runner: whoever senses it must also run it, or nothing is counted.
//
// The counter does not own its pin beyond configuring it as an input.
package pulse
