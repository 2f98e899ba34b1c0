package mqttnet

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/url"
	"testing"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sensorgate/sensorgate/test/leak"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// echoServer accepts connections on 127.0.0.1 and echoes what they send,
// over TLS when tc is not nil. accepted receives every accepted conn.
func echoServer(t *testing.T, tc *tls.Config) (addr string, accepted <-chan net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			ch <- c
			if tc != nil {
				c = tls.Server(c, tc)
			}
			go func() {
				defer c.Close()
				io.Copy(c, c) //nolint:errcheck // test echo
			}()
		}
	}()
	return l.Addr().String(), ch
}

func roundTrip(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

func TestDialTCP(t *testing.T) {
	leak.Check(t)
	addr, _ := echoServer(t, nil)
	c, err := Dial(context.Background(), &url.URL{Scheme: "tcp", Host: addr}, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c)
}

func TestDialTLSWithALPN(t *testing.T) {
	leak.Check(t)
	p := mqtttest.NewPKI(t)
	addr, _ := echoServer(t, &tls.Config{Certificates: []tls.Certificate{p.Server}, NextProtos: []string{"x-amzn-mqtt-ca"}})
	tc, err := TLS{CAFile: p.CAFile, ALPN: []string{"x-amzn-mqtt-ca"}}.Build("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(context.Background(), &url.URL{Scheme: "mqtts", Host: addr}, DialOptions{TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Conn.(*tls.Conn).ConnectionState().NegotiatedProtocol; got != "x-amzn-mqtt-ca" {
		t.Errorf("negotiated %q", got)
	}
	roundTrip(t, c)
}

func TestDialTLSUntrusted(t *testing.T) {
	p, other := mqtttest.NewPKI(t), mqtttest.NewPKI(t)
	addr, _ := echoServer(t, &tls.Config{Certificates: []tls.Certificate{p.Server}})
	tc, err := TLS{CAFile: other.CAFile}.Build("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Dial(context.Background(), &url.URL{Scheme: "ssl", Host: addr}, DialOptions{TLS: tc}); err == nil {
		t.Fatal("handshake with an untrusted server succeeded")
	}
}

// A handshake that hangs (the server never answers) ends when ctx does.
func TestDialAbortsOnContext(t *testing.T) {
	leak.Check(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			accepted <- c // held open, silent
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Dial(ctx, &url.URL{Scheme: "tls", Host: l.Addr().String()}, DialOptions{})
		done <- err
	}()
	c := <-accepted
	defer c.Close()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial after cancel: %v, want context.Canceled", err)
	}
}

func TestDialUnsupportedScheme(t *testing.T) {
	if _, err := Dial(context.Background(), &url.URL{Scheme: "http", Host: "127.0.0.1:1"}, DialOptions{}); err == nil {
		t.Fatal("http:// accepted")
	}
}

func TestDefaultPort(t *testing.T) {
	for in, want := range map[string]string{
		"tcp://h": "h:1883", "mqtt://h": "h:1883", "ssl://h": "h:8883", "mqtts://h": "h:8883",
		"tls://h:1": "h:1", "ws://h": "h", "wss://h/mqtt": "h",
	} {
		u, _ := url.Parse(in)
		if got := DefaultPort(u).Host; got != want {
			t.Errorf("DefaultPort(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestLastConnAbort(t *testing.T) {
	leak.Check(t)
	addr, accepted := echoServer(t, nil)
	var last LastConn
	last.Abort() // nothing yet: no panic
	open := OpenConnection(context.Background(), DialOptions{}, &last)
	c, err := open(&url.URL{Scheme: "tcp", Host: addr}, mqttClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	<-accepted
	last.Abort()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read on an aborted connection succeeded")
	}
}

func mqttClientOptions() mqtt.ClientOptions { return *mqtt.NewClientOptions() }

// NewTLS is called at every attempt: a CA file replaced between two
// connections is used by the second.
func TestOpenConnectionRebuildsTLS(t *testing.T) {
	leak.Check(t)
	p, other := mqtttest.NewPKI(t), mqtttest.NewPKI(t)
	addr, _ := echoServer(t, &tls.Config{Certificates: []tls.Certificate{p.Server}})
	cfg := TLS{CAFile: other.CAFile}
	builds := 0
	open := OpenConnection(context.Background(), DialOptions{NewTLS: func() (*tls.Config, error) {
		builds++
		return cfg.Build("127.0.0.1")
	}}, nil)
	uri := &url.URL{Scheme: "ssl", Host: addr}
	if _, err := open(uri, mqttClientOptions()); err == nil {
		t.Fatal("handshake with an untrusted server succeeded")
	}
	cfg.CAFile = p.CAFile
	c, err := open(uri, mqttClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c)
	if builds != 2 {
		t.Errorf("NewTLS called %d times, want 2", builds)
	}
}
