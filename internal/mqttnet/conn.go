package mqttnet

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ErrCut is what Read returns once Cut closed the connection. paho takes
// the error of a closed connection for its own disconnect and says
// nothing; this one it reports as a lost connection, so its owner
// reconnects.
var ErrCut = errors.New("mqttnet: connection cut")

const (
	readBufferSize = 32 << 10
	maxPending     = 256 << 10
	flushTimeout   = 30 * time.Second
)

// Conn wraps a connection for paho: see the package documentation.
type Conn struct {
	net.Conn

	// Read side, used by paho's one reader goroutine only.
	rbuf      []byte
	r, w      int
	readWait  time.Duration
	windowed  bool // the peer may hold back until we acknowledge (QoS 1/2)
	smallRead bool // the last read filled under a quarter of rbuf
	lastEager int  // bytes the last read that did not wait brought
	eager     int  // reads left before waiting is tried again
	reads     int  // reads from the connection
	useless   int  // waits in a row that did not pay off
	waits     int  // reads that waited (for tests)
	cut       atomic.Bool

	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	spare  []byte
	err    error
	closed bool
	done   chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// NewConn wraps c. readWait is how long a read that follows a small read waits
// first (0: never). windowed says the peer may hold back until we answer,
// as a broker's QoS 1/2 in-flight window does: waits that do not pay off
// are then given up for a while (see Read).
func NewConn(c net.Conn, readWait time.Duration, windowed bool) *Conn {
	b := &Conn{Conn: c, rbuf: make([]byte, readBufferSize), readWait: readWait, windowed: windowed, done: make(chan struct{})}
	b.cond = sync.NewCond(&b.mu)
	go b.flusher()
	return b
}

// eagerReads is how many reads follow a wait that did not pay off before
// waiting is tried again; every probeEvery-th read never waits, so that
// what an eager read brings stays known as the traffic changes.
const (
	eagerReads   = 256
	probeEvery   = 16
	uselessWaits = 3
)

func (b *Conn) Read(p []byte) (int, error) {
	if b.r == b.w {
		waited := false
		b.reads++
		if b.smallRead && b.readWait > 0 && b.eager == 0 && !(b.windowed && b.reads%probeEvery == 0) {
			time.Sleep(b.readWait)
			waited = true
			b.waits++
		}
		n, err := b.Conn.Read(b.rbuf)
		switch {
		case !b.windowed:
		case waited && n >= 2*b.lastEager:
			b.useless = 0
		case waited && n < 2*b.lastEager:
			// Waiting did not gather twice what an eager read did: the
			// peer is holding back until we answer (a broker's QoS 1
			// in-flight window waits for our PUBACKs; with mosquitto's
			// max_inflight_messages 1 every wait capped the stream at one
			// message per wait) or traffic is sparse. Read eagerly for a
			// while, then try again. A bursty publisher makes single
			// waits look useless now and then, hence several in a row.
			// Only for windowed peers: the check costs 10-20% CPU at
			// QoS 0, where no window exists.
			if b.useless++; b.useless >= uselessWaits {
				b.eager, b.useless = eagerReads, 0
			}
		case !waited:
			b.lastEager = n
			if b.eager > 0 {
				b.eager--
			}
		}
		b.r, b.w = 0, n
		b.smallRead = n < len(b.rbuf)/4
		if n == 0 {
			if err != nil && b.cut.Load() {
				err = ErrCut
			}
			return 0, err
		}
	}
	n := copy(p, b.rbuf[b.r:b.w])
	b.r += n
	return n, nil
}

// SetDeadline applies to reads only: writes have their own deadline per
// flush.
func (b *Conn) SetDeadline(t time.Time) error { return b.Conn.SetReadDeadline(t) }

// SetWriteDeadline is ignored for the same reason.
func (b *Conn) SetWriteDeadline(time.Time) error { return nil }

func (b *Conn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.err == nil && !b.closed && len(b.buf) >= maxPending {
		b.cond.Wait()
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.closed {
		return 0, net.ErrClosed
	}
	b.buf = append(b.buf, p...)
	b.cond.Broadcast()
	return len(p), nil
}

func (b *Conn) flusher() {
	defer close(b.done)
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		for len(b.buf) == 0 && !b.closed && b.err == nil {
			b.cond.Wait()
		}
		if b.err != nil || len(b.buf) == 0 {
			return // closed and drained, or broken
		}
		if len(b.buf) < 16<<10 && !b.closed {
			// Let the writers that are ready add their packets first:
			// fewer, larger writes for both ends, no timer involved.
			b.mu.Unlock()
			runtime.Gosched()
			b.mu.Lock()
		}
		out := b.buf
		b.buf = b.spare[:0]
		b.mu.Unlock()
		b.Conn.SetWriteDeadline(time.Now().Add(flushTimeout)) //nolint:errcheck // a failed write reports it
		_, err := b.Conn.Write(out)
		b.mu.Lock()
		b.spare = out[:0]
		if err != nil {
			b.err = err
		}
		b.cond.Broadcast()
	}
}

// Close flushes what is queued, then closes the connection. paho closes
// a connection from two goroutines at once; every call returns when the
// first one has finished.
func (b *Conn) Close() error {
	b.closeOnce.Do(func() { b.closeErr = b.close() })
	return b.closeErr
}

func (b *Conn) close() error {
	b.mu.Lock()
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
	select {
	case <-b.done:
	case <-time.After(time.Second):
		// The peer is not reading: close anyway (the flusher's write
		// fails and it returns).
		return b.Conn.Close()
	}
	// Half-close and read until the peer closes too (briefly): closing
	// with unread data in the receive queue would send a RST, and a RST
	// can make the peer drop what we just sent (the DISCONNECT, so the
	// broker would publish the last will).
	if cw, ok := b.Conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		b.Conn.SetReadDeadline(time.Now().Add(250 * time.Millisecond)) //nolint:errcheck // best effort
		var scratch [512]byte
		for {
			if _, err := b.Conn.Read(scratch[:]); err != nil {
				break
			}
		}
	}
	return b.Conn.Close()
}

// Cut closes the connection without flushing, like Abort, and makes the
// reader see ErrCut: a connection its owner wants paho to lose (the MQTT
// source does so when a commit failed, so that the broker delivers the
// unacknowledged messages again).
func (b *Conn) Cut() {
	b.cut.Store(true)
	b.Abort()
}

// Abort closes the connection without flushing.
func (b *Conn) Abort() {
	b.mu.Lock()
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
	b.Conn.Close()
}
