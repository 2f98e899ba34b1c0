package state

import (
	"bytes"
	"fmt"
)

// AppendKey appends prefix and parts separated by NUL bytes.
func AppendKey(b []byte, prefix string, parts ...string) []byte {
	b = append(b, prefix...)
	for i, p := range parts {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

// SplitKey returns the n parts of a key made by AppendKey.
func SplitKey(key []byte, prefix string, n int) ([]string, error) {
	if !bytes.HasPrefix(key, []byte(prefix)) {
		return nil, ErrCorrupt
	}
	parts := bytes.SplitN(key[len(prefix):], []byte{0}, n)
	if len(parts) != n {
		return nil, ErrCorrupt
	}
	out := make([]string, n)
	for i, p := range parts {
		out[i] = string(p)
	}
	return out, nil
}

// Versioned returns a decoder of v after checking its version byte.
func Versioned(v []byte, version byte) (*Dec, error) {
	d := &Dec{B: v}
	if d.Byte() != version {
		return nil, fmt.Errorf("unknown version: %w", ErrCorrupt)
	}
	return d, nil
}

// Bits packs bools into a byte, the first in bit 0.
func Bits(bs ...bool) byte {
	var x byte
	for i, v := range bs {
		if v {
			x |= 1 << i
		}
	}
	return x
}
