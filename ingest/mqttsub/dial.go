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

	"github.com/sensorgate/sensorgate/internal/mqttnet"
)

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

// dialer returns paho's connection function: it honours the proxy
// environment variables like paho does, wraps the connection in an
// mqttnet.Conn (buffered, coalesced reads and writes), and aborts a TCP
// dial when ctx ends (so that Run stops promptly even while an attempt
// hangs; a WebSocket dial is bounded by connect_timeout).
func dialer(ctx context.Context, last *lastConn, wait time.Duration, windowed bool) mqtt.OpenConnectionFunc {
	return func(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
		c, err := dial(ctx, uri, o, wait, windowed)
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
	if c, ok := l.c.(*mqttnet.Conn); ok {
		c.Abort() // a cut, not a clean close: nothing to flush, no peer to wait for
	} else if l.c != nil {
		l.c.Close()
	}
}

func dial(ctx context.Context, uri *url.URL, o mqtt.ClientOptions, wait time.Duration, windowed bool) (net.Conn, error) {
	if uri.Scheme == "ws" || uri.Scheme == "wss" {
		// paho's WebSocket dialer (it honours the proxy environment
		// variables); the connection gets the same wrapper as TCP.
		var tc *tls.Config
		if uri.Scheme == "wss" {
			tc = o.TLSConfig
		}
		c, err := mqtt.NewWebsocket(uri.String(), tc, o.ConnectTimeout, o.HTTPHeaders, o.WebsocketOptions)
		if err != nil {
			return nil, err
		}
		return mqttnet.NewConn(c, wait, windowed), nil
	}
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
	return mqttnet.NewConn(conn, wait, windowed), nil
}
