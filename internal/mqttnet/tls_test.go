package mqttnet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
)

// testPKI is a throwaway CA with a server certificate for 127.0.0.1 and
// "broker.test", and a client certificate; file paths in a temp dir.
type testPKI struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
	server                                           tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{CA: write("ca.pem", "CERTIFICATE", caDER)}
	leaf := func(serial int64, usage x509.ExtKeyUsage) ([]byte, []byte) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		c := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			DNSNames: []string{"broker.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, c, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalECPrivateKey(k)
		return der, kd
	}
	sd, sk := leaf(2, x509.ExtKeyUsageServerAuth)
	p.ServerCert, p.ServerKey = write("server.pem", "CERTIFICATE", sd), write("server.key", "EC PRIVATE KEY", sk)
	cd, ck := leaf(3, x509.ExtKeyUsageClientAuth)
	p.ClientCert, p.ClientKey = write("client.pem", "CERTIFICATE", cd), write("client.key", "EC PRIVATE KEY", ck)
	p.server, err = tls.LoadX509KeyPair(p.ServerCert, p.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTLSBuild(t *testing.T) {
	p := newTestPKI(t)
	c, err := TLS{CAFile: p.CA, CertFile: p.ClientCert, KeyFile: p.ClientKey, ALPN: []string{"x-amzn-mqtt-ca"}}.Build("h.example")
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
	p := newTestPKI(t)
	for _, tc := range []TLS{
		{CAFile: "/nonexistent/ca.pem"},
		{CAFile: p.ServerKey}, // not a certificate
		{CertFile: p.ClientCert, KeyFile: p.ServerKey},
	} {
		if _, err := tc.Build("h"); err == nil {
			t.Errorf("%+v: Build succeeded", tc)
		}
	}
	if _, err := (TLS{CAFile: p.ServerKey}).Build("h"); !errors.Is(err, ErrNoCertificates) {
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
