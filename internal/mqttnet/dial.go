package mqttnet

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/net/proxy"
)

// DefaultPort returns u with the MQTT port filled in when it has none:
// 1883 for tcp:// and mqtt://, 8883 for ssl://, tls:// and mqtts://. Other
// schemes are returned unchanged (a WebSocket URL's port is the HTTP one).
func DefaultPort(u *url.URL) *url.URL {
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

// TLSScheme reports whether a broker URL scheme runs over TLS.
func TLSScheme(scheme string) bool {
	switch scheme {
	case "ssl", "tls", "mqtts", "wss":
		return true
	}
	return false
}

// DialOptions are what one connection attempt needs.
type DialOptions struct {
	// TLS is used for ssl://, tls://, mqtts:// and wss://; nil means the
	// system roots and the URL's host name.
	TLS *tls.Config
	// NewTLS, when set, is called by OpenConnection at every attempt and
	// its result used instead of TLS, so that renewed certificates and CA
	// files are picked up without a restart (typically TLS.Build).
	NewTLS func() (*tls.Config, error)
	// Timeout bounds the TCP dial and the TLS handshake (0: none, ctx
	// only) and the whole WebSocket dial.
	Timeout time.Duration
	// Header and Websocket are passed to paho's WebSocket dialer.
	Header    http.Header
	Websocket *mqtt.WebsocketOptions
	// ReadWait and Windowed are NewConn's readWait and windowed.
	ReadWait time.Duration
	Windowed bool
}

// Dial opens a connection to uri (see the package documentation).
func Dial(ctx context.Context, uri *url.URL, o DialOptions) (*Conn, error) {
	uri = DefaultPort(uri)
	tc := o.TLS
	if tc == nil && TLSScheme(uri.Scheme) {
		tc = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: uri.Hostname()}
	}
	if uri.Scheme == "ws" || uri.Scheme == "wss" {
		d := *uri
		d.User = nil // credentials go in CONNECT, never in the HTTP request line
		var wtc *tls.Config
		if uri.Scheme == "wss" {
			wtc = tc
		}
		c, err := mqtt.NewWebsocket(d.String(), wtc, o.Timeout, o.Header, o.Websocket)
		if err != nil {
			return nil, fmt.Errorf("mqttnet: websocket %s: %w", d.Host, err)
		}
		return NewConn(c, o.ReadWait, o.Windowed), nil
	}
	switch uri.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
	default:
		return nil, fmt.Errorf("mqttnet: unsupported scheme %q", uri.Scheme)
	}
	d := &net.Dialer{Timeout: o.Timeout}
	var raw net.Conn
	var err error
	if cd, ok := proxy.FromEnvironmentUsing(d).(proxy.ContextDialer); ok {
		raw, err = cd.DialContext(ctx, "tcp", uri.Host)
	} else {
		raw, err = proxy.FromEnvironmentUsing(d).Dial("tcp", uri.Host)
	}
	if err != nil {
		return nil, fmt.Errorf("mqttnet: dial %s: %w", uri.Host, err)
	}
	conn := raw
	if TLSScheme(uri.Scheme) {
		c := tls.Client(raw, tc)
		if o.Timeout > 0 {
			raw.SetDeadline(time.Now().Add(o.Timeout)) //nolint:errcheck // a failed handshake reports it
		}
		if err := c.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("mqttnet: tls handshake: %w", err)
		}
		raw.SetDeadline(time.Time{}) //nolint:errcheck // as above
		conn = c
	}
	return NewConn(conn, o.ReadWait, o.Windowed), nil
}

// OpenConnection returns paho's connection function: Dial with o's
// ReadWait and Windowed, the TLS configuration of o.NewTLS (else o.TLS,
// else paho's options), the connect timeout of o (else paho's) and paho's
// WebSocket settings. ctx aborts TCP dials and TLS handshakes, so that a
// stop is prompt while an attempt hangs; last, if not nil, is given every
// new connection.
func OpenConnection(ctx context.Context, o DialOptions, last *LastConn) mqtt.OpenConnectionFunc {
	return func(uri *url.URL, co mqtt.ClientOptions) (net.Conn, error) {
		d := o
		d.TLS, d.Timeout, d.Header, d.Websocket = co.TLSConfig, co.ConnectTimeout, co.HTTPHeaders, co.WebsocketOptions
		if o.TLS != nil {
			d.TLS = o.TLS
		}
		if o.NewTLS != nil && TLSScheme(uri.Scheme) {
			tc, err := o.NewTLS()
			if err != nil {
				return nil, fmt.Errorf("mqttnet: %w", err)
			}
			d.TLS = tc
		}
		if o.Timeout > 0 {
			d.Timeout = o.Timeout
		}
		c, err := Dial(ctx, uri, d)
		if err != nil {
			return nil, err
		}
		if last != nil {
			last.Set(c)
		}
		return c, nil
	}
}

// LastConn remembers the newest connection, so that its owner can cut a
// connection attempt that waits for a CONNACK that will not come, or a
// connection a watchdog found dead. The zero value is ready to use.
type LastConn struct {
	mu sync.Mutex
	c  *Conn
}

// Set records c as the newest connection.
func (l *LastConn) Set(c *Conn) {
	l.mu.Lock()
	l.c = c
	l.mu.Unlock()
}

// Cut cuts the newest connection (see Conn.Cut): paho reports it lost.
// It does nothing when there is none.
func (l *LastConn) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c != nil {
		l.c.Cut()
	}
}

// Abort closes the newest connection without flushing (a cut, not a clean
// close: nothing to flush, no peer to wait for). It does nothing when
// there is none.
func (l *LastConn) Abort() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c != nil {
		l.c.Abort()
	}
}
