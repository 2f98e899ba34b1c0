//go:build race

package test

// raceEnabled builds the binary under test with -race when the tests run
// with -race, so the gateway's own goroutines are checked end to end.
const raceEnabled = true
