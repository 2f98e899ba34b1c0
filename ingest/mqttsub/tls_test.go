package mqttsub

import (
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/internal/mqttnet"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// newPKI is the test CA, with "broker.test" among the server's names so
// that server_name can be checked.
func newPKI(t *testing.T) *mqtttest.PKI {
	return mqtttest.NewPKI(t, "127.0.0.1", "localhost", "broker.test")
}

// startTLSBroker starts an in-process broker with a TLS listener.
func startTLSBroker(t *testing.T, p *mqtttest.PKI) (*mqtttest.Broker, string) {
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{TLS: p.ServerTLS(false)})
	return b, b.Addr()
}

func TestTLSWithTestCA(t *testing.T) {
	checkNoLeak(t)
	p := newPKI(t)
	b, addr := startTLSBroker(t, p)
	s := newSub(t, Config{Broker: "ssl://" + addr, TLS: mqttnet.TLS{CAFile: p.CAFile, ServerName: "broker.test"},
		Subscriptions: []Subscription{jsonSub("tls/+", 1, 1)}})
	out := make(chan ingest.Reading, 4)
	running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "subscription over TLS")
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
	_, addr := startTLSBroker(t, p)
	s := newSub(t, Config{Broker: "ssl://" + addr, TLS: mqttnet.TLS{CAFile: other.CAFile}, ConnectTimeout: 2 * time.Second,
		Subscriptions: []Subscription{jsonSub("tls/+", 1, 1)}})
	out := make(chan ingest.Reading, 1)
	running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().ConnectFailures > 0 }, "a failed handshake")
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
		{CAFile: p.ServerKeyFile}, // not a certificate
		{CertFile: p.ClientCertFile, KeyFile: p.ServerKeyFile},
	} {
		if _, err := New(Config{Broker: "ssl://127.0.0.1:8883", TLS: tc, Subscriptions: []Subscription{jsonSub("a", 0, 0)}}, Options{}); err == nil {
			t.Errorf("%+v: New succeeded", tc)
		}
	}
}
