package mqtttest

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/sensorgate/sensorgate/test/leak"
)

func connect(t *testing.T, url, user, pass string, tc *tls.Config) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("mqtttest-%d", time.Now().UnixNano())).
		SetUsername(user).SetPassword(pass).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	if tc != nil {
		o.SetTLSConfig(tc)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect %s: timeout", url)
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

func mustConnect(t *testing.T, url string, tc *tls.Config) paho.Client {
	t.Helper()
	c, err := connect(t, url, "", "", tc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func publish(t *testing.T, c paho.Client, topic, payload string) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func TestBrokerRecordsAcrossRestart(t *testing.T) {
	leak.Check(t)
	b := StartBroker(t, BrokerOptions{})
	if _, port, _ := net.SplitHostPort(b.Addr()); port == "0" {
		t.Fatalf("address %s: port not resolved", b.Addr())
	}
	rec := b.Record("a/#")
	c := mustConnect(t, b.URL(), nil)
	publish(t, c, "a/1", "one")
	publish(t, c, "b/1", "other")
	got := rec.WaitLen(t, 10*time.Second, 1)
	if got[0].Topic != "a/1" || string(got[0].Payload) != "one" || got[0].QoS != 1 {
		t.Fatalf("got %+v", got)
	}
	if b.Clients() != 1 {
		t.Errorf("clients %d", b.Clients())
	}

	addr := b.Addr()
	b.Stop()
	if b.Running() {
		t.Fatal("running after Stop")
	}
	if _, err := connect(t, b.URL(), "", "", nil); err == nil {
		t.Fatal("connected to a stopped broker")
	}
	b.Start()
	if b.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", b.Addr(), addr)
	}
	c2 := mustConnect(t, b.URL(), nil)
	publish(t, c2, "a/2", "two")
	got = rec.WaitLen(t, 10*time.Second, 2)
	if got[1].Topic != "a/2" {
		t.Fatalf("after restart got %+v", got)
	}
	c.Disconnect(0)
	c2.Disconnect(0)
	b.Stop()
}

func TestBrokerAuth(t *testing.T) {
	b := StartBroker(t, BrokerOptions{Ledger: &auth.Ledger{Auth: auth.AuthRules{{Username: "gw", Password: "right", Allow: true}}}})
	if _, err := connect(t, b.URL(), "gw", "wrong", nil); err == nil {
		t.Fatal("wrong password accepted")
	}
	if _, err := connect(t, b.URL(), "gw", "right", nil); err != nil {
		t.Fatalf("right password: %v", err)
	}
}

func TestBrokerTLSAndWebsocket(t *testing.T) {
	p := NewPKI(t)
	b := StartBroker(t, BrokerOptions{TLS: p.ServerTLS(true)})
	if b.URL()[:6] != "ssl://" {
		t.Fatalf("url %s", b.URL())
	}
	mustConnect(t, b.URL(), p.ClientTLS(true))
	if _, err := connect(t, b.URL(), "", "", p.ClientTLS(false)); err == nil {
		t.Fatal("connected without a client certificate")
	}
	other := NewPKI(t)
	if _, err := connect(t, b.URL(), "", "", other.ClientTLS(true)); err == nil {
		t.Fatal("connected trusting another CA")
	}

	ws := StartBroker(t, BrokerOptions{Websocket: true})
	rec := ws.Record("#")
	wc := mustConnect(t, ws.URL(), nil)
	publish(t, wc, "w", "x")
	rec.WaitLen(t, 10*time.Second, 1)
	wc.Disconnect(0)
	ws.Stop()
	ws.Start()
	publish(t, mustConnect(t, ws.URL(), nil), "w", "y")
	rec.WaitLen(t, 10*time.Second, 2)
}

func TestPKIFiles(t *testing.T) {
	p := NewPKI(t, "127.0.0.1", "broker.test")
	if _, err := tls.LoadX509KeyPair(p.ServerCertFile, p.ServerKeyFile); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(p.ClientCertFile, p.ClientKeyFile); err != nil {
		t.Fatal(err)
	}
	leaf := p.Server.Leaf
	if leaf == nil {
		var err error
		if leaf, err = parseLeaf(p.Server); err != nil {
			t.Fatal(err)
		}
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "broker.test" || len(leaf.IPAddresses) != 1 {
		t.Errorf("SANs %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if err := leaf.VerifyHostname("localhost"); err == nil {
		t.Error("localhost verifies though not asked for")
	}
}

func TestMosquittoStartRestart(t *testing.T) {
	m := StartMosquitto(t, MosquittoConfig{Conf: "allow_anonymous true", Persistence: true})
	c := mustConnect(t, m.URL(), nil)
	publish(t, c, "x", "y")
	port := m.Port()
	m.Stop()
	if m.Running() || m.Pid() != 0 {
		t.Fatal("running after Stop")
	}
	if _, err := connect(t, m.URL(), "", "", nil); err == nil {
		t.Fatal("connected to a stopped mosquitto")
	}
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	if m.Port() != port || !m.Running() {
		t.Fatalf("restart: port %d running %v", m.Port(), m.Running())
	}
	mustConnect(t, m.URL(), nil)
	m.Kill()
	if err := m.WipePersistence(); err != nil {
		t.Fatal(err)
	}
}

func TestMosquittoMutualTLS(t *testing.T) {
	p := NewPKI(t)
	m := StartMosquitto(t, MosquittoConfig{Conf: fmt.Sprintf("allow_anonymous true\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n",
		p.CAFile, p.ServerCertFile, p.ServerKeyFile)})
	url := "ssl://" + m.Addr()
	mustConnect(t, url, p.ClientTLS(true))
	if _, err := connect(t, url, "", "", p.ClientTLS(false)); err == nil {
		t.Fatal("connected without a client certificate")
	}
}

func TestMosquittoBadConfig(t *testing.T) {
	RequireMosquitto(t)
	m, err := LaunchMosquitto(MosquittoConfig{Conf: "no_such_option 1"})
	if err == nil {
		m.Close()
		t.Fatal("started with a bad config")
	}
	if _, err := LaunchMosquitto(MosquittoConfig{Bin: "/nonexistent/mosquitto"}); err == nil {
		t.Fatal("started without a binary")
	}
}

func TestLaunchMosquittoOwnDir(t *testing.T) {
	RequireMosquitto(t)
	m, err := LaunchMosquitto(MosquittoConfig{Conf: "allow_anonymous true"})
	if err != nil {
		t.Fatal(err)
	}
	mustConnect(t, m.URL(), nil).Disconnect(0)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if Poll(0, func() bool { return dirExists(m.Dir()) }) {
		t.Errorf("%s left behind", m.Dir())
	}
}

func TestWaitForAndFreeAddr(t *testing.T) {
	n := 0
	WaitFor(t, 10*time.Second, func() bool { n++; return n == 3 }, "three calls")
	if Poll(20*time.Millisecond, func() bool { return false }) {
		t.Error("Poll of a false condition held")
	}
	ln, err := net.Listen("tcp", FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}

// recordingTB notes Skipf and Fatalf instead of acting on them.
type recordingTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordingTB) Helper()                           {}
func (r *recordingTB) Skipf(format string, args ...any)  { r.skipped = fmt.Sprintf(format, args...) }
func (r *recordingTB) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestMissingMosquittoSkipsOrFailsUnderCI(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		r := &recordingTB{TB: t}
		requireBin(r, "/nonexistent/mosquitto")
		msg := r.skipped
		if ci == "true" {
			msg = r.failed
			if r.skipped != "" {
				t.Errorf("CI=true: skipped (%s)", r.skipped)
			}
		} else if r.failed != "" {
			t.Errorf("outside CI: failed (%s)", r.failed)
		}
		if !strings.Contains(msg, MosquittoInstall) {
			t.Errorf("CI=%q: message %q lacks the install command", ci, msg)
		}
	}
}

func TestNeedToolSkipsOrFailsUnderCI(t *testing.T) {
	const install = "apt-get install no-such-tool"
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		r := &recordingTB{TB: t}
		if p := NeedTool(r, "sensorgate-no-such-tool", install); p != "" {
			t.Errorf("CI=%q: path %q for a missing tool", ci, p)
		}
		got, other := r.skipped, r.failed
		if ci == "true" {
			got, other = r.failed, r.skipped
		}
		if other != "" || !strings.Contains(got, install) || !strings.Contains(got, "sensorgate-no-such-tool") {
			t.Errorf("CI=%q: skipped %q, failed %q; want only the %s one, naming the tool and %q", ci, r.skipped, r.failed, map[string]string{"": "skip", "true": "failure"}[ci], install)
		}
	}
	if p := NeedTool(t, "go", "install Go"); p == "" {
		t.Error("NeedTool(go) returned no path")
	}
}
