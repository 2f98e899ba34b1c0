package uplink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sensorgate/sensorgate/buffer"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files.
type testPKI struct {
	caFile, certFile, keyFile string // client side
	server                    tls.Certificate
	pool                      *x509.CertPool
}

func genKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newPKI(t *testing.T, dir, name string) *testPKI {
	t.Helper()
	caKey := genKey(t)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		k := genKey(t)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.DNSNames = []string{"broker.test"}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	p := &testPKI{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	sDER, sKey := issue(2, "broker", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.server = tls.Certificate{Certificate: [][]byte{sDER}, PrivateKey: sKey}
	cDER, cKey := issue(3, "gw-1", x509.ExtKeyUsageClientAuth, nil)
	p.caFile = filepath.Join(dir, name+"-ca.pem")
	p.certFile = filepath.Join(dir, name+"-client.pem")
	p.keyFile = filepath.Join(dir, name+"-client.key")
	writePEM(t, p.caFile, "CERTIFICATE", caDER)
	writePEM(t, p.certFile, "CERTIFICATE", cDER)
	kDER, err := x509.MarshalECPrivateKey(cKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.keyFile, "EC PRIVATE KEY", kDER)
	return p
}

// TestMQTTMutualTLS runs a broker that requires client certificates: the
// right CA and client certificate deliver; a wrong CA or a missing client
// certificate fail with an error that says so.
func TestMQTTMutualTLS(t *testing.T) {
	checkGoroutines(t)
	dir := t.TempDir()
	good := newPKI(t, dir, "good")
	other := newPKI(t, dir, "other")
	addr := freeAddr(t)
	rx := &received{}
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: discardLogger()})
	srv.AddHook(new(auth.AllowHook), nil)
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tls", Address: addr, TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{good.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: good.pool,
		MinVersion: tls.VersionTLS12,
	}})); err != nil {
		t.Fatal(err)
	}
	srv.Subscribe("#", 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) { rx.add(pk.TopicName, pk.Payload) })
	go srv.Serve()
	defer srv.Close()

	tests := []struct {
		name    string
		host    string // default 127.0.0.1
		tls     TLS
		wantErr string // substring of Stats.LastError; "" = delivers
	}{
		{"server name", "localhost", TLS{CAFile: good.caFile, CertFile: good.certFile, KeyFile: good.keyFile, ServerName: "broker.test", ALPN: []string{"mqtt"}}, ""},
		{"host not in certificate", "localhost", TLS{CAFile: good.caFile, CertFile: good.certFile, KeyFile: good.keyFile}, "set tls.server_name"},
		{"mutual tls", "", TLS{CAFile: good.caFile, CertFile: good.certFile, KeyFile: good.keyFile}, ""},
		{"wrong CA", "", TLS{CAFile: other.caFile, CertFile: good.certFile, KeyFile: good.keyFile}, "certificate signed by unknown authority"},
		{"no client cert", "", TLS{CAFile: good.caFile}, "certificate required"},
		{"client cert of another CA", "", TLS{CAFile: good.caFile, CertFile: other.certFile, KeyFile: other.keyFile}, "tls: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ob := newMemOutbox()
			ob.Append(context.Background(), buffer.LaneAlerts, mustAlert(t, 1))
			cfg := mqttCfg(addr)
			cfg.URL = "ssl://" + addr
			if tt.host != "" {
				_, port, _ := net.SplitHostPort(addr)
				cfg.URL = "ssl://" + net.JoinHostPort(tt.host, port)
			}
			cfg.TLS = tt.tls
			cfg.DisableStatus = true
			u, err := New(cfg, ob, Options{Gateway: "gw-1"})
			if err != nil {
				t.Fatal(err)
			}
			stop := runUplink(t, u)
			if tt.wantErr == "" {
				waitFor(t, "delivery", func() bool { return ob.count(buffer.LaneAlerts) == 0 })
				stop()
				return
			}
			waitFor(t, "failed connects", func() bool { return u.Stats().ConnectFailures >= 2 })
			stop()
			st := u.Stats()
			if st.Connects != 0 || ob.count(buffer.LaneAlerts) != 1 || !strings.Contains(st.LastError, tt.wantErr) {
				t.Errorf("want error containing %q: %+v", tt.wantErr, st)
			}
			t.Logf("error: %s", st.LastError)
		})
	}
}

// Username and password from the environment or a file reach the broker;
// a wrong one fails with the broker's refusal in LastError.
func TestMQTTCredentials(t *testing.T) {
	checkGoroutines(t)
	addr := freeAddr(t)
	rx := &received{}
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: discardLogger()})
	if err := srv.AddHook(new(auth.Hook), &auth.Options{Ledger: &auth.Ledger{Auth: auth.AuthRules{
		{Username: "gw-1", Password: "s3cret", Allow: true},
	}}}); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})); err != nil {
		t.Fatal(err)
	}
	srv.Subscribe("#", 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) { rx.add(pk.TopicName, pk.Payload) })
	go srv.Serve()
	defer srv.Close()
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	os.WriteFile(good, []byte("s3cret\n"), 0o600)
	os.WriteFile(bad, []byte("guess"), 0o600)
	t.Setenv("SENSORGATE_TEST_MQTT_PASSWORD", "s3cret")
	for _, tc := range []struct {
		name  string
		file  string
		env   string
		works bool
	}{{"password_env", "", "SENSORGATE_TEST_MQTT_PASSWORD", true}, {"password_file", good, "", true}, {"wrong password", bad, "", false}} {
		t.Run(tc.name, func(t *testing.T) {
			ob := newMemOutbox()
			ob.Append(context.Background(), buffer.LaneAlerts, mustAlert(t, 1))
			cfg := mqttCfg(addr)
			cfg.Username, cfg.PasswordFile, cfg.PasswordEnv = "gw-1", tc.file, tc.env
			u, err := New(cfg, ob, Options{Gateway: "gw-1"})
			if err != nil {
				t.Fatal(err)
			}
			stop := runUplink(t, u)
			if tc.works {
				waitFor(t, "delivery", func() bool { return ob.count(buffer.LaneAlerts) == 0 })
				stop()
				return
			}
			waitFor(t, "refusals", func() bool { return u.Stats().ConnectFailures >= 2 })
			stop()
			if st := u.Stats(); st.Connects != 0 || !(strings.Contains(st.LastError, "not Authorized") || strings.Contains(st.LastError, "password")) ||
				strings.Contains(st.LastError, "guess") {
				t.Errorf("stats %+v", st)
			}
			t.Logf("error: %s", u.Stats().LastError)
		})
	}
}
