package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"golang.org/x/crypto/bcrypt"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/decode"
	"github.com/sensorgate/sensorgate/ingest/mqttsub"
	"github.com/sensorgate/sensorgate/test/leak"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

func checkNoLeak(t *testing.T) {
	t.Helper()
	leak.Check(t)
}

// start runs a broker until the test ends.
func start(t *testing.T, cfg Config) *Broker {
	t.Helper()
	b, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return b
}

type client struct {
	paho.Client
	msgs chan paho.Message
}

// connect connects a paho client; it returns the connect error.
func connect(t *testing.T, url, user, pass string, tc *tls.Config) (*client, error) {
	t.Helper()
	msgs := make(chan paho.Message, 100)
	o := paho.NewClientOptions().AddBroker(url).SetUsername(user).SetPassword(pass).
		SetClientID(user + "-" + t.Name()).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { msgs <- m })
	if tc != nil {
		o.SetTLSConfig(tc)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(20 * time.Second) {
		t.Fatal("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return &client{c, msgs}, nil
}

func mustConnect(t *testing.T, url, user, pass string, tc *tls.Config) *client {
	t.Helper()
	c, err := connect(t, url, user, pass, tc)
	if err != nil {
		t.Fatalf("connect %s as %q: %v", url, user, err)
	}
	return c
}

func (c *client) sub(t *testing.T, filter string, qos byte) byte {
	t.Helper()
	tok := c.Subscribe(filter, qos, nil)
	if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return tok.(*paho.SubscribeToken).Result()[filter]
}

func (c *client) pub(t *testing.T, topic string, qos byte, payload string) error {
	t.Helper()
	tok := c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(20 * time.Second) {
		t.Fatalf("publish %s timed out", topic)
	}
	return tok.Error()
}

// expect waits for one message, or fails after 20 s.
func (c *client) expect(t *testing.T, topic, payload string) {
	t.Helper()
	select {
	case m := <-c.msgs:
		if m.Topic() != topic || string(m.Payload()) != payload {
			t.Fatalf("got %s %q, want %s %q", m.Topic(), m.Payload(), topic, payload)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no message on %s", topic)
	}
}

func hash(t *testing.T, pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestLoopbackAnonymousAndLocalClient(t *testing.T) {
	checkNoLeak(t)
	b := start(t, Config{Listen: "127.0.0.1:0"})
	url, user, pass := b.LocalClient()
	gw := mustConnect(t, url, user, pass, nil)
	gw.sub(t, "sensors/#", 1)
	node := mustConnect(t, "tcp://"+b.Addr(), "", "", nil)
	if err := node.pub(t, "sensors/n1/temp", 1, "21.5"); err != nil {
		t.Fatal(err)
	}
	gw.expect(t, "sensors/n1/temp", "21.5")
	// The internal credentials do not work on the public listener, nor
	// anonymous access on the internal one.
	if _, err := connect(t, "tcp://"+b.Addr(), user, pass, nil); err == nil {
		t.Error("internal credentials accepted on the public listener")
	}
	if _, err := connect(t, url, "", "", nil); err == nil {
		t.Error("anonymous client accepted on the internal listener")
	}
	if st := b.Stats(); st.AuthFailures != 2 || st.MessagesReceived < 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestRefusesNonLoopbackWithoutAuth(t *testing.T) {
	yes := true
	for _, cfg := range []Config{
		{Listen: "0.0.0.0:0"},
		{Listen: "[::]:0", AllowAnonymous: &yes, Users: []User{{Username: "a", PasswordHash: hash(t, "x")}}},
	} {
		_, err := New(cfg, nil)
		var fe *ingest.FieldError
		if err == nil || !errors.As(err, &fe) {
			t.Errorf("%+v: err = %v, want a field error", cfg, err)
		}
	}
	c := Config{Listen: "0.0.0.0:1883", UsersFile: "/etc/users.yaml"}
	if err := c.Validate(); err != nil {
		t.Errorf("users file counts as authentication: %v", err)
	}
}

func TestAuthenticationAndACL(t *testing.T) {
	checkNoLeak(t)
	dir := t.TempDir()
	users := "users:\n" +
		"  - username: node-1\n    password_hash: \"" + hash(t, "pw1") + "\"\n" +
		"    acl:\n      - {topic: \"sensors/%u/#\", access: write}\n      - {topic: \"cmd/%u\", access: read}\n" +
		"  - username: ops\n    password_hash: \"" + hash(t, "pw2") + "\"\n"
	if err := os.WriteFile(filepath.Join(dir, "users.yaml"), []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	// Bound to all interfaces: allowed because users are configured.
	b := start(t, Config{Listen: "0.0.0.0:0", UsersFile: filepath.Join(dir, "users.yaml")})
	_, port, _ := net.SplitHostPort(b.Addr())
	pub := "tcp://127.0.0.1:" + port

	url, user, pass := b.LocalClient()
	gw := mustConnect(t, url, user, pass, nil)
	gw.sub(t, "#", 1)

	// Wrong password, unknown user, no user: refused with a clear error.
	for _, c := range [][2]string{{"node-1", "wrong"}, {"nobody", "pw1"}, {"", ""}} {
		_, err := connect(t, pub, c[0], c[1], nil)
		if !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) && !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
			t.Errorf("%q/%q: err = %v, want a refusal", c[0], c[1], err)
		}
	}

	node := mustConnect(t, pub, "node-1", "pw1", nil)
	if err := node.pub(t, "sensors/node-1/temp", 0, "1"); err != nil {
		t.Fatal(err)
	}
	gw.expect(t, "sensors/node-1/temp", "1")
	// Outside its ACL: QoS 0 is dropped by the broker...
	if err := node.pub(t, "sensors/node-2/temp", 0, "2"); err != nil {
		t.Fatal(err)
	}
	// ...and subscribing outside the ACL is refused.
	if code := node.sub(t, "sensors/#", 0); code != 0x80 {
		t.Errorf("subscribe outside ACL: code %#x, want 0x80", code)
	}
	if code := node.sub(t, "cmd/node-1", 0); code != 0 {
		t.Errorf("subscribe inside ACL: code %#x", code)
	}
	// A marker published after the denied message proves it was dropped,
	// not delayed.
	if err := node.pub(t, "sensors/node-1/marker", 0, "m"); err != nil {
		t.Fatal(err)
	}
	gw.expect(t, "sensors/node-1/marker", "m")

	// A user without ACL may do everything.
	ops := mustConnect(t, pub, "ops", "pw2", nil)
	if err := ops.pub(t, "anything/at/all", 1, "x"); err != nil {
		t.Fatal(err)
	}
	gw.expect(t, "anything/at/all", "x")
	ops.sub(t, "cmd/#", 0)
	if st := b.Stats(); st.ACLDenied != 2 || st.AuthFailures != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestTLSListener(t *testing.T) {
	checkNoLeak(t)
	p := mqtttest.NewPKI(t)
	b := start(t, Config{Listen: "127.0.0.1:0", TLS: TLSConfig{CertFile: p.ServerCertFile, KeyFile: p.ServerKeyFile}})
	c := mustConnect(t, "ssl://"+b.Addr(), "", "", &tls.Config{RootCAs: p.Pool, ServerName: "localhost"})
	url, user, pass := b.LocalClient()
	gw := mustConnect(t, url, user, pass, nil)
	gw.sub(t, "t", 0)
	if err := c.pub(t, "t", 1, "over tls"); err != nil {
		t.Fatal(err)
	}
	gw.expect(t, "t", "over tls")
	// A client that does not trust the test CA fails the handshake.
	if _, err := connect(t, "ssl://"+b.Addr(), "", "", &tls.Config{ServerName: "localhost"}); err == nil {
		t.Error("untrusted certificate accepted")
	}
}

func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := New(Config{Listen: l.Addr().String()}, nil); err == nil {
		t.Fatal("New succeeded on a port in use")
	}
}

func TestCloseWithoutRun(t *testing.T) {
	checkNoLeak(t)
	b, err := New(Config{Listen: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addr()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v", err)
	}
	l, err := net.Listen("tcp", addr) // the port was released
	if err != nil {
		t.Fatalf("port not released: %v", err)
	}
	l.Close()
}

func TestCovers(t *testing.T) {
	tests := []struct {
		rule, sub string
		want      bool
	}{
		{"sensors/#", "sensors/a/b", true},
		{"sensors/#", "sensors", true},
		{"sensors/#", "sensors/+/t", true},
		{"sensors/#", "#", false},
		{"sensors/+/t", "sensors/a/t", true},
		{"sensors/+/t", "sensors/+/t", true},
		{"sensors/+/t", "sensors/#", false},
		{"sensors/a/t", "sensors/+/t", false},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"#", "x/y", true},
	}
	for _, tt := range tests {
		if got := covers(tt.rule, tt.sub); got != tt.want {
			t.Errorf("covers(%q, %q) = %v", tt.rule, tt.sub, got)
		}
	}
	acl := []ACLRule{{Topic: "s/%u/#", Access: AccessWrite}}
	if allowed(acl, "a/b", "c", "s/a/b/x", true) || allowed(acl, "+", "c", "s/x/y", true) {
		t.Error("a username with / or + widened a pattern rule")
	}
	if !allowed(acl, "n1", "c", "s/n1/t", true) || allowed(acl, "n1", "c", "s/n1/t", false) {
		t.Error("pattern rule access")
	}
}

func TestConfigValidateUsers(t *testing.T) {
	c := Config{Listen: "127.0.0.1:1883", Users: []User{
		{Username: "$sensorgate", PasswordHash: "x"},
		{Username: "a", PasswordHash: hash(t, "p"), ACL: []ACLRule{{Topic: "a/#/b", Access: "all"}}},
		{Username: "a", PasswordHash: hash(t, "p")},
	}}
	var paths []string
	for _, e := range ingest.FlattenErrors(c.Validate()) {
		var fe *ingest.FieldError
		if errors.As(e, &fe) {
			paths = append(paths, fe.Path)
		}
	}
	want := "users[0].username users[0].password_hash users[1].acl[0].topic users[1].acl[0].access users[2].username"
	if strings.Join(paths, " ") != want {
		t.Errorf("paths %v\nwant  %s", paths, want)
	}
	h, err := HashPassword("secret")
	if err != nil || bcrypt.CompareHashAndPassword([]byte(h), []byte("secret")) != nil {
		t.Errorf("HashPassword: %v", err)
	}
}

// TestGatewayReadsFromLocalBroker wires the gateway's own MQTT source to the
// local broker through LocalClient, as cmd does: a field node publishes with
// its credentials, the readings come out of the subscriber.
func TestGatewayReadsFromLocalBroker(t *testing.T) {
	checkNoLeak(t)
	b := start(t, Config{Listen: "127.0.0.1:0", Users: []User{{Username: "node-1", PasswordHash: hash(t, "pw"),
		ACL: []ACLRule{{Topic: "sensors/%u/#", Access: AccessWrite}}}}})
	url, user, pass := b.LocalClient()
	seg := 1
	sub, err := mqttsub.New(mqttsub.Config{Broker: url, Username: user, Password: pass, Subscriptions: []mqttsub.Subscription{
		{Topic: "sensors/+/telemetry", QoS: 1, JSON: decode.JSONMapping{SensorTopicSegment: &seg}},
	}}, mqttsub.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan ingest.Reading, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx, out) }()
	defer func() { cancel(); <-done }()
	mqtttest.WaitFor(t, 20*time.Second, func() bool { return sub.Stats().Connected && b.srv.Info.Clone().Subscriptions > 0 },
		"the gateway subscriber connected and subscribed")
	node := mustConnect(t, "tcp://"+b.Addr(), "node-1", "pw", nil)
	if err := node.pub(t, "sensors/node-1/telemetry", 1, `{"temp":21.5}`); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-out:
		if r.Sensor != "node-1" || r.Metric != "temp" || r.Value != 21.5 {
			t.Fatalf("reading %+v", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no reading")
	}
}

func TestReloadUsers(t *testing.T) {
	checkNoLeak(t)
	path := filepath.Join(t.TempDir(), "users.yaml")
	write := func(user, pw string) {
		if err := os.WriteFile(path, []byte("users:\n  - username: "+user+"\n    password_hash: \""+hash(t, pw)+"\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a", "pa")
	b := start(t, Config{Listen: "127.0.0.1:0", UsersFile: path})
	mustConnect(t, "tcp://"+b.Addr(), "a", "pa", nil)
	write("b", "pb")
	if err := b.ReloadUsers(); err != nil {
		t.Fatal(err)
	}
	if _, err := connect(t, "tcp://"+b.Addr(), "a", "pa", nil); err == nil {
		t.Error("removed user still accepted")
	}
	mustConnect(t, "tcp://"+b.Addr(), "b", "pb", nil)
	if err := os.WriteFile(path, []byte("users: [{username: c, password_hash: plain}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.ReloadUsers(); err == nil {
		t.Error("bad users file accepted")
	}
	mustConnect(t, "tcp://"+b.Addr(), "b", "pb", nil) // old users still in force
}
