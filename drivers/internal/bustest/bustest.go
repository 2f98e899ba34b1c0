package bustest

import (
	"errors"
	"sync"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// ErrNACK is what a Tx returns while the bus is "gone": what Linux's i2c-dev
// reports as EREMOTEIO when no chip acknowledges its address.
var ErrNACK = errors.New("bustest: i2c: no acknowledge (remote I/O error)")

// FlakyBus forwards to Bus unless the chip is gone or a failure is pending;
// failed transactions do not reach Bus (so a Playback's ops stay in step).
type FlakyBus struct {
	Bus i2c.Bus

	mu       sync.Mutex
	gone     bool
	failNext int
	nacks    int
}

// SetGone makes every Tx fail (true) or forward again (false).
func (b *FlakyBus) SetGone(g bool) {
	b.mu.Lock()
	b.gone = g
	b.mu.Unlock()
}

// FailNext makes the next n Tx calls fail with ErrNACK.
func (b *FlakyBus) FailNext(n int) {
	b.mu.Lock()
	b.failNext = n
	b.mu.Unlock()
}

// NACKs returns how many Tx calls failed.
func (b *FlakyBus) NACKs() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nacks
}

// Tx implements i2c.Bus.
func (b *FlakyBus) Tx(addr uint16, w, r []byte) error {
	b.mu.Lock()
	fail := b.gone || b.failNext > 0
	if b.failNext > 0 {
		b.failNext--
	}
	if fail {
		b.nacks++
	}
	b.mu.Unlock()
	if fail {
		return ErrNACK
	}
	return b.Bus.Tx(addr, w, r)
}

// SetSpeed implements i2c.Bus.
func (b *FlakyBus) SetSpeed(f physic.Frequency) error { return b.Bus.SetSpeed(f) }

// String implements i2c.Bus.
func (b *FlakyBus) String() string { return "flaky(" + b.Bus.String() + ")" }

// Close implements i2c.BusCloser; it does not close Bus.
func (b *FlakyBus) Close() error { return nil }
