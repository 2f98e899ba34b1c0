package uplink

import (
	"bufio"
	"net"
	"runtime"
	"sync"
	"time"
)

// bufConn wraps the network connection handed to paho. paho reads every
// packet with several small reads and writes every packet with its own
// write: at tens of thousands of messages per second the system calls are
// most of the cost. bufConn buffers reads and coalesces writes: Write
// appends to a buffer that a flusher goroutine writes out while the next
// packets queue up, so a busy connection sends many packets per system
// call and an idle one sends each at once (no added delay).
//
// Write reports the error of an earlier failed flush, so a broken
// connection is noticed on the next write; Close flushes what is queued
// (bounded by flushTimeout) before closing. Deadlines set by paho apply
// to reads; writes are bounded by flushTimeout per flush and, above
// that, by the uplink's ack watchdog.
type bufConn struct {
	net.Conn
	r *bufio.Reader

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

const (
	bufConnMaxPending = 256 << 10
	flushTimeout      = 30 * time.Second
)

func newBufConn(c net.Conn) *bufConn {
	b := &bufConn{Conn: c, r: bufio.NewReaderSize(c, 32<<10), done: make(chan struct{})}
	b.cond = sync.NewCond(&b.mu)
	go b.flusher()
	return b
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// SetDeadline applies to reads only: writes have their own deadline per
// flush.
func (b *bufConn) SetDeadline(t time.Time) error { return b.Conn.SetReadDeadline(t) }

// SetWriteDeadline is ignored for the same reason.
func (b *bufConn) SetWriteDeadline(time.Time) error { return nil }

func (b *bufConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.err == nil && !b.closed && len(b.buf) >= bufConnMaxPending {
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

func (b *bufConn) flusher() {
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
func (b *bufConn) Close() error {
	b.closeOnce.Do(func() { b.closeErr = b.close() })
	return b.closeErr
}

func (b *bufConn) close() error {
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

// abort closes the connection without flushing.
func (b *bufConn) abort() {
	b.mu.Lock()
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
	b.Conn.Close()
}
