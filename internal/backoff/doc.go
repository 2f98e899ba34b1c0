// Package backoff is the one jittered exponential backoff of sensorgate,
// for reconnecting to brokers, retrying uplink requests and retrying
// failing chips.
//
// # Rule
//
// The n-th delay (n from 1) is d = Min × 2^(n-1), capped at Max, then
// jittered to a uniformly random value in [d/2, d] ("equal jitter").
//
// Why this rule and not the ±20 % the chip poller used: the delay never
// exceeds Max, so a configured max_reconnect_interval or backoff.max is a
// real bound an operator can rely on; the lower half of the range spreads
// a fleet of gateways that lost the same broker at the same instant
// (several thousand reconnects are not synchronised into waves), while the
// d/2 floor keeps a flapping peer from being retried at once. Two of the
// three former copies (the MQTT source and the uplink) already used it.
//
// # Guarantees
//
// Next never returns less than Min/2 nor more than Max (with Min ≤ Max;
// a Max below Min is raised to Min). Doubling saturates: no overflow
// however many failures in a row. Reset starts again from Min.
//
// # Caveats
//
// A Backoff is not safe for concurrent use: each retry loop owns one.
// It returns durations and never sleeps or reads the clock, so callers
// wait with their own timer (interruptible by their ctx) and tests need no
// clock; the randomness is injectable through Rand.
package backoff
