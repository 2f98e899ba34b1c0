package mqttnet

import (
	"crypto/tls"
	"errors"
	"testing"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

func TestTLSBuild(t *testing.T) {
	p := mqtttest.NewPKI(t)
	c, err := TLS{CAFile: p.CAFile, CertFile: p.ClientCertFile, KeyFile: p.ClientKeyFile, ALPN: []string{"x-amzn-mqtt-ca"}}.Build("h.example")
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerName != "h.example" || c.RootCAs == nil || len(c.Certificates) != 1 || c.MinVersion != tls.VersionTLS12 {
		t.Errorf("Build: %+v", c)
	}
	if len(c.NextProtos) != 1 || c.NextProtos[0] != "x-amzn-mqtt-ca" {
		t.Errorf("ALPN: %v", c.NextProtos)
	}
	c, err = TLS{ServerName: "broker.test"}.Build("127.0.0.1")
	if err != nil || c.ServerName != "broker.test" || c.RootCAs != nil {
		t.Errorf("server_name override: %+v, %v", c, err)
	}
}

func TestTLSBuildErrors(t *testing.T) {
	p := mqtttest.NewPKI(t)
	for _, tc := range []TLS{
		{CAFile: "/nonexistent/ca.pem"},
		{CAFile: p.ServerKeyFile}, // not a certificate
		{CertFile: p.ClientCertFile, KeyFile: p.ServerKeyFile},
	} {
		if _, err := tc.Build("h"); err == nil {
			t.Errorf("%+v: Build succeeded", tc)
		}
	}
	if _, err := (TLS{CAFile: p.ServerKeyFile}).Build("h"); !errors.Is(err, ErrNoCertificates) {
		t.Errorf("want ErrNoCertificates, got %v", err)
	}
}

func TestTLSValidate(t *testing.T) {
	if err := (TLS{CertFile: "c", KeyFile: "k"}).Validate(); err != nil {
		t.Error(err)
	}
	for _, tc := range []TLS{{CertFile: "c"}, {KeyFile: "k"}} {
		var fe *ingest.FieldError
		if err := tc.Validate(); !errors.As(err, &fe) || fe.Path != "cert_file" {
			t.Errorf("%+v: %v, want a FieldError at cert_file", tc, err)
		}
	}
}

func TestTLSIsSet(t *testing.T) {
	if (TLS{}).IsSet() {
		t.Error("zero TLS is set")
	}
	for _, tc := range []TLS{{CAFile: "x"}, {ALPN: []string{"a"}}, {InsecureSkipVerify: true}, {ServerName: "s"}} {
		if !tc.IsSet() {
			t.Errorf("%+v not set", tc)
		}
	}
}

func TestTLSHint(t *testing.T) {
	if h := (TLS{}).Hint(errors.New("remote error: tls: certificate required")); h == "" {
		t.Error("no hint for a missing client certificate")
	}
	if h := (TLS{}).Hint(errors.New("x509: certificate signed by unknown authority")); h == "" {
		t.Error("no hint for an unknown CA")
	}
	if h := (TLS{}).Hint(nil); h != "" {
		t.Errorf("hint for nil: %q", h)
	}
}
