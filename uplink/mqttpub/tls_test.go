package mqttpub

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/test/leak"
	"github.com/sensorgate/sensorgate/test/mqtttest"
	"github.com/sensorgate/sensorgate/uplink"
	"github.com/sensorgate/sensorgate/uplink/internal/uplinktest"
)

// TestMQTTMutualTLS runs a broker that requires client certificates: the
// right CA and client certificate deliver; a wrong CA or a missing client
// certificate fail with an error that says so.
func TestMQTTMutualTLS(t *testing.T) {
	leak.Check(t)
	// The server certificate names 127.0.0.1 and broker.test, not localhost.
	good := mqtttest.NewPKI(t, "127.0.0.1", "broker.test")
	other := mqtttest.NewPKI(t, "127.0.0.1", "broker.test")
	rx := &received{}
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{TLS: good.ServerTLS(true)})
	b.Subscribe("#", func(m mqtttest.Message) { rx.add(m.Topic, m.Payload) })
	addr := b.Addr()

	tests := []struct {
		name    string
		host    string // default 127.0.0.1
		tls     uplink.TLS
		wantErr string // substring of Stats.LastError; "" = delivers
	}{
		{"server name", "localhost", uplink.TLS{CAFile: good.CAFile, CertFile: good.ClientCertFile, KeyFile: good.ClientKeyFile, ServerName: "broker.test", ALPN: []string{"mqtt"}}, ""},
		{"host not in certificate", "localhost", uplink.TLS{CAFile: good.CAFile, CertFile: good.ClientCertFile, KeyFile: good.ClientKeyFile}, "set tls.server_name"},
		{"mutual tls", "", uplink.TLS{CAFile: good.CAFile, CertFile: good.ClientCertFile, KeyFile: good.ClientKeyFile}, ""},
		{"wrong CA", "", uplink.TLS{CAFile: other.CAFile, CertFile: good.ClientCertFile, KeyFile: good.ClientKeyFile}, "certificate signed by unknown authority"},
		{"no client cert", "", uplink.TLS{CAFile: good.CAFile}, "certificate required"},
		{"client cert of another CA", "", uplink.TLS{CAFile: good.CAFile, CertFile: other.ClientCertFile, KeyFile: other.ClientKeyFile}, "tls: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ob := uplinktest.NewOutbox()
			ob.Append(context.Background(), buffer.LaneAlerts, uplinktest.AlertRecord(t, 1))
			cfg := mqttCfg(addr)
			cfg.URL = "ssl://" + addr
			if tt.host != "" {
				_, port, _ := net.SplitHostPort(addr)
				cfg.URL = "ssl://" + net.JoinHostPort(tt.host, port)
			}
			cfg.TLS = tt.tls
			cfg.DisableStatus = true
			u, err := newUplink(cfg, ob, uplink.Options{Gateway: "gw-1"})
			if err != nil {
				t.Fatal(err)
			}
			stop := uplinktest.Run(t, u)
			if tt.wantErr == "" {
				uplinktest.WaitFor(t, "delivery", func() bool { return ob.Count(buffer.LaneAlerts) == 0 })
				stop()
				return
			}
			uplinktest.WaitFor(t, "failed connects", func() bool { return u.Stats().ConnectFailures >= 2 })
			stop()
			st := u.Stats()
			if st.Connects != 0 || ob.Count(buffer.LaneAlerts) != 1 || !strings.Contains(st.LastError, tt.wantErr) {
				t.Errorf("want error containing %q: %+v", tt.wantErr, st)
			}
			t.Logf("error: %s", st.LastError)
		})
	}
}

// Username and password from the environment or a file reach the broker;
// a wrong one fails with the broker's refusal in LastError.
func TestMQTTCredentials(t *testing.T) {
	leak.Check(t)
	rx := &received{}
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{Ledger: &auth.Ledger{Auth: auth.AuthRules{
		{Username: "gw-1", Password: "s3cret", Allow: true},
	}}})
	b.Subscribe("#", func(m mqtttest.Message) { rx.add(m.Topic, m.Payload) })
	addr := b.Addr()
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
			ob := uplinktest.NewOutbox()
			ob.Append(context.Background(), buffer.LaneAlerts, uplinktest.AlertRecord(t, 1))
			cfg := mqttCfg(addr)
			cfg.Username, cfg.PasswordFile, cfg.PasswordEnv = "gw-1", tc.file, tc.env
			u, err := newUplink(cfg, ob, uplink.Options{Gateway: "gw-1"})
			if err != nil {
				t.Fatal(err)
			}
			stop := uplinktest.Run(t, u)
			if tc.works {
				uplinktest.WaitFor(t, "delivery", func() bool { return ob.Count(buffer.LaneAlerts) == 0 })
				stop()
				return
			}
			uplinktest.WaitFor(t, "refusals", func() bool { return u.Stats().ConnectFailures >= 2 })
			stop()
			if st := u.Stats(); st.Connects != 0 || !(strings.Contains(st.LastError, "not Authorized") || strings.Contains(st.LastError, "password")) ||
				strings.Contains(st.LastError, "guess") {
				t.Errorf("stats %+v", st)
			}
			t.Logf("error: %s", u.Stats().LastError)
		})
	}
}
