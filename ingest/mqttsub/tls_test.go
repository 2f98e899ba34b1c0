package mqttsub

import (
	"crypto/tls"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/internal/mqttnet"
)

// startMochiTLS starts an in-process broker with a TLS listener.
func startMochiTLS(t *testing.T, p pki) (*mochi.Server, string) {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(p.ServerCert, p.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	s := mochi.New(&mochi.Options{InlineClient: true, Logger: quietLogger()})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "tls", Address: "127.0.0.1:0",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	if err := s.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, l.Address()
}

func TestTLSWithTestCA(t *testing.T) {
	checkNoLeak(t)
	p := newPKI(t)
	b, addr := startMochiTLS(t, p)
	s := newSub(t, Config{Broker: "ssl://" + addr, TLS: mqttnet.TLS{CAFile: p.CA, ServerName: "broker.test"},
		Subscriptions: []Subscription{jsonSub("tls/+", 1, 1)}})
	out := make(chan ingest.Reading, 4)
	running(t, s, out)
	waitFor(t, "subscription over TLS", func() bool { return len(b.Topics.Subscribers("tls/x").Subscriptions) > 0 })
	if err := b.Publish("tls/dev", payload(1714564800, "v", 7), false, 1); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, out, 1); got[0].Sensor != "dev" || got[0].Value != 7 {
		t.Fatalf("got %+v", got)
	}
}

func TestTLSUntrustedServerIsRefused(t *testing.T) {
	checkNoLeak(t)
	p := newPKI(t)
	other := newPKI(t) // a CA that did not sign the server certificate
	_, addr := startMochiTLS(t, p)
	s := newSub(t, Config{Broker: "ssl://" + addr, TLS: mqttnet.TLS{CAFile: other.CA}, ConnectTimeout: 2 * time.Second,
		Subscriptions: []Subscription{jsonSub("tls/+", 1, 1)}})
	out := make(chan ingest.Reading, 1)
	running(t, s, out)
	waitFor(t, "a failed handshake", func() bool { return s.Stats().ConnectFailures > 0 })
	if s.Stats().Connected {
		t.Fatal("connected to a server signed by an untrusted CA")
	}
	if err := s.LastError(); err == nil {
		t.Fatal("no error recorded")
	}
}

func TestTLSConfigErrors(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []mqttnet.TLS{
		{CAFile: "/nonexistent/ca.pem"},
		{CAFile: p.ServerKey}, // not a certificate
		{CertFile: p.ClientCert, KeyFile: p.ServerKey},
	} {
		if _, err := New(Config{Broker: "ssl://127.0.0.1:8883", TLS: tc, Subscriptions: []Subscription{jsonSub("a", 0, 0)}}, Options{}); err == nil {
			t.Errorf("%+v: New succeeded", tc)
		}
	}
}
