package mqttsub

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/net/proxy"
)

// readBufferSize is the read buffer put in front of the broker connection.
const readBufferSize = 32 << 10

// coalescingConn reads the broker connection through a buffer, and waits
// a little before a read that follows a small one.
//
// paho reads each packet header byte by byte straight from the connection,
// which costs several read system calls per message; with the buffer, one
// read brings in every message the kernel holds. At moderate rates that is
// still about one message per read, and every read wakes the whole chain
// of goroutines behind it for one message. Waiting `wait` before reading
// again after a read that found little lets messages gather in the socket
// buffer, so one wake-up carries many of them; under load reads come back
// full and never wait. The cost is at most `wait` of added latency.
type coalescingConn struct {
	net.Conn
	buf   []byte
	r, w  int
	wait  time.Duration
	small bool // the last read from the connection filled under a quarter of buf
}

func newCoalescingConn(c net.Conn, wait time.Duration) *coalescingConn {
	return &coalescingConn{Conn: c, buf: make([]byte, readBufferSize), wait: wait}
}

func (c *coalescingConn) Read(p []byte) (int, error) {
	if c.r == c.w {
		if c.small && c.wait > 0 {
			time.Sleep(c.wait)
		}
		n, err := c.Conn.Read(c.buf)
		c.r, c.w = 0, n
		c.small = n < len(c.buf)/4
		if n == 0 {
			return 0, err
		}
	}
	n := copy(p, c.buf[c.r:c.w])
	c.r += n
	return n, nil
}

// defaultPort fills in the MQTT port when the URL has none.
func defaultPort(u *url.URL) *url.URL {
	if u.Port() != "" {
		return u
	}
	port := ""
	switch u.Scheme {
	case "tcp", "mqtt":
		port = "1883"
	case "ssl", "tls", "mqtts":
		port = "8883"
	default:
		return u
	}
	c := *u
	c.Host = net.JoinHostPort(u.Hostname(), port)
	return &c
}

// dialer returns paho's connection function for tcp:// and ssl:// brokers:
// it honours the proxy environment variables like paho does, adds a read
// buffer, and aborts when ctx ends (so that Run stops promptly even while
// an attempt hangs). WebSocket URLs are left to paho.
func dialer(ctx context.Context, last *lastConn, wait time.Duration) mqtt.OpenConnectionFunc {
	return func(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
		c, err := dial(ctx, uri, o, wait)
		if err == nil {
			last.set(c)
		}
		return c, err
	}
}

// lastConn remembers the newest connection, so that Run can cut a
// connection attempt that is waiting for a CONNACK that will not come.
type lastConn struct {
	mu sync.Mutex
	c  net.Conn
}

func (l *lastConn) set(c net.Conn) {
	l.mu.Lock()
	l.c = c
	l.mu.Unlock()
}

func (l *lastConn) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c != nil {
		l.c.Close()
	}
}

func dial(ctx context.Context, uri *url.URL, o mqtt.ClientOptions, wait time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: o.ConnectTimeout}
	var raw net.Conn
	var err error
	if cd, ok := proxy.FromEnvironmentUsing(d).(proxy.ContextDialer); ok {
		raw, err = cd.DialContext(ctx, "tcp", uri.Host)
	} else {
		raw, err = proxy.FromEnvironmentUsing(d).Dial("tcp", uri.Host)
	}
	if err != nil {
		return nil, err
	}
	conn := raw
	switch uri.Scheme {
	case "tcp", "mqtt":
	case "ssl", "tls", "mqtts":
		tc := tls.Client(raw, o.TLSConfig)
		if o.ConnectTimeout > 0 {
			raw.SetDeadline(time.Now().Add(o.ConnectTimeout))
		}
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		raw.SetDeadline(time.Time{})
		conn = tc
	default:
		raw.Close()
		return nil, fmt.Errorf("unsupported scheme %q", uri.Scheme)
	}
	return newCoalescingConn(conn, wait), nil
}
