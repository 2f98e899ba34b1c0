package mqttsub

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/decode"
	"github.com/sensorgate/sensorgate/internal/mqttnet"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// publisher is a plain paho client for the tests.
func publisher(t *testing.T, url, user, pass string) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("pub-%d", time.Now().UnixNano())).
		SetUsername(user).SetPassword(pass).SetProtocolVersion(4).SetAutoReconnect(false)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publish(t *testing.T, c paho.Client, topic string, qos byte, payload []byte) {
	t.Helper()
	tok := c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// waitSubscribed publishes a probe on topic until the subscriber counts it
// as received: the broker has the subscription.
func waitSubscribed(t *testing.T, s *Subscriber, c paho.Client, topic string) {
	t.Helper()
	before := s.Stats().Received
	mqtttest.WaitFor(t, waitLimit, func() bool {
		publish(t, c, topic, 0, []byte("probe"))
		time.Sleep(20 * time.Millisecond)
		return s.Stats().Received > before
	}, "subscription on "+topic)
}

func TestMosquittoWildcardsAndQoS(t *testing.T) {
	checkNoLeak(t)
	addr := mqtttest.StartMosquitto(t, mqtttest.MosquittoConfig{Conf: "allow_anonymous true"}).Addr()
	cfg := Config{Broker: "tcp://" + addr, Subscriptions: []Subscription{
		{Topic: "q0/+/json", QoS: 0, Format: FormatJSON, JSON: decode.JSONMapping{SensorTopicSegment: intp(1), TimeField: "ts"}},
		{Topic: "q1/#", QoS: 1, Format: FormatSenML},
		{Topic: "q2/+/+", QoS: 2, Format: FormatNumber, Number: decode.NumberMapping{TopicTemplate: "q2/{sensor}/{metric}", Unit: "V"}},
	}}
	s := newSub(t, cfg)
	out := make(chan ingest.Reading, 64)
	running(t, s, out)
	pub := publisher(t, "tcp://"+addr, "", "")
	waitSubscribed(t, s, pub, "q0/probe/json")
	drain(out)

	publish(t, pub, "q0/dev-a/json", 0, payload(1714564800, "temp", 1.5))
	publish(t, pub, "q1/x/y", 1, []byte(`[{"bn":"dev-b:","n":"rh","v":40}]`))
	publish(t, pub, "q2/dev-c/battery", 2, []byte("3.3"))
	publish(t, pub, "q2/dev-c/battery", 1, []byte("3.2")) // downgraded QoS still matches
	got := collect(t, out, 4)
	sort.Slice(got, func(i, j int) bool {
		return got[i].Sensor+fmt.Sprint(got[i].Value) < got[j].Sensor+fmt.Sprint(got[j].Value)
	})
	want := []string{"dev-a/temp=1.5", "dev-b/rh=40", "dev-c/battery=3.2V", "dev-c/battery=3.3V"}
	for i, r := range got {
		if s := fmt.Sprintf("%s/%s=%v%s", r.Sensor, r.Metric, r.Value, r.Unit); s != want[i] {
			t.Errorf("reading %d: %s, want %s", i, s, want[i])
		}
	}
}

// drain discards what is in out now (completing the receipts).
func drain(out chan ingest.Reading) {
	for {
		select {
		case r := <-out:
			r.Receipt.Committed(nil)
		default:
			return
		}
	}
}

func mosquittoPasswd(t *testing.T, user, pass string) string {
	t.Helper()
	bin := mqtttest.NeedTool(t, "mosquitto_passwd", mqtttest.MosquittoPasswdInstall)
	path := filepath.Join(t.TempDir(), "passwd")
	if out, err := exec.Command(bin, "-b", "-c", path, user, pass).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	return path
}

func TestMosquittoWrongPasswordRefused(t *testing.T) {
	checkNoLeak(t)
	pw := mosquittoPasswd(t, "gw", "s3cret")
	addr := mqtttest.StartMosquitto(t, mqtttest.MosquittoConfig{Conf: "allow_anonymous false\npassword_file " + pw}).Addr()
	t.Setenv("SG_TEST_MQTT_PW", "not-it")
	s := newSub(t, Config{Broker: "tcp://" + addr, Username: "gw", PasswordEnv: "SG_TEST_MQTT_PW",
		ConnectTimeout: 2 * time.Second, MaxReconnectInterval: time.Second,
		Subscriptions: []Subscription{jsonSub("a/+", 0, 1)}})
	out := make(chan ingest.Reading, 1)
	stop := running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().ConnectFailures >= 2 }, "a refused connection")
	err := s.LastError()
	if !errors.Is(err, packets.ErrorRefusedNotAuthorised) && !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
		t.Fatalf("LastError = %v, want a credentials refusal", err)
	}
	if strings.Contains(err.Error(), "not-it") {
		t.Fatalf("password in error: %v", err)
	}
	stop()

	t.Setenv("SG_TEST_MQTT_PW", "s3cret")
	s = newSub(t, Config{Broker: "tcp://" + addr, Username: "gw", PasswordEnv: "SG_TEST_MQTT_PW",
		Subscriptions: []Subscription{jsonSub("a/+", 0, 1)}})
	running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Connected }, "connection with the right password")
}

func TestMosquittoRestartMidStream(t *testing.T) {
	checkNoLeak(t)
	m := mqtttest.StartMosquitto(t, mqtttest.MosquittoConfig{Conf: "allow_anonymous true"})
	addr := m.Addr()
	s := newSub(t, Config{Broker: "tcp://" + addr, KeepAlive: 2 * time.Second, MaxReconnectInterval: time.Second,
		Subscriptions: []Subscription{jsonSub("st/+", 1, 1)}})
	out := make(chan ingest.Reading, 256)
	running(t, s, out)
	pub := publisher(t, "tcp://"+addr, "", "")
	waitSubscribed(t, s, pub, "st/probe")
	drain(out)
	for i := range 50 {
		publish(t, pub, "st/before", 1, payload(1714564800, "seq", i))
	}
	collect(t, out, 50)

	m.Kill() // the broker goes away mid-stream...
	mqtttest.WaitFor(t, waitLimit, func() bool { return !s.Stats().Connected }, "the subscriber to notice")
	if err := m.Restart(); err != nil { // ...and comes back empty: no session, no subscriptions
		t.Fatal(err)
	}
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Connected }, "reconnection")
	pub2 := publisher(t, "tcp://"+addr, "", "")
	waitSubscribed(t, s, pub2, "st/probe")
	drain(out)
	for i := range 50 {
		publish(t, pub2, "st/after", 1, payload(1714564900, "seq", i))
	}
	got := collect(t, out, 50)
	for i, r := range got {
		if r.Sensor != "after" || r.Value != float64(i) {
			t.Fatalf("reading %d after restart: %+v", i, r)
		}
	}
	if st := s.Stats(); st.Reconnects < 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestMosquittoMutualTLS(t *testing.T) {
	checkNoLeak(t)
	p := newPKI(t)
	addr := mqtttest.StartMosquitto(t, mqtttest.MosquittoConfig{Conf: fmt.Sprintf("allow_anonymous true\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n",
		p.CAFile, p.ServerCertFile, p.ServerKeyFile)}).Addr()
	s := newSub(t, Config{Broker: "ssl://" + addr,
		TLS:           mqttnet.TLS{CAFile: p.CAFile, CertFile: p.ClientCertFile, KeyFile: p.ClientKeyFile},
		Subscriptions: []Subscription{jsonSub("m/+", 1, 1)}})
	out := make(chan ingest.Reading, 4)
	running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Connected }, "TLS connection with a client certificate")

	// Without a client certificate the broker refuses the handshake.
	s2 := newSub(t, Config{Broker: "ssl://" + addr, TLS: mqttnet.TLS{CAFile: p.CAFile}, ConnectTimeout: 2 * time.Second,
		Subscriptions: []Subscription{jsonSub("m/+", 1, 1)}})
	running(t, s2, make(chan ingest.Reading))
	mqtttest.WaitFor(t, waitLimit, func() bool { return s2.Stats().ConnectFailures > 0 }, "refusal without client certificate")
	if s2.Stats().Connected {
		t.Fatal("connected without a client certificate")
	}
}

// TestMosquittoPersistentSessionRedeliversUnacked checks the held ack end
// to end: a QoS 1 message whose readings never reached out is not
// acknowledged, so with a persistent session the broker delivers it again
// to the next run, together with what was published while the gateway was
// away.
func TestMosquittoPersistentSessionRedeliversUnacked(t *testing.T) {
	checkNoLeak(t)
	addr := mqtttest.StartMosquitto(t, mqtttest.MosquittoConfig{Conf: "allow_anonymous true"}).Addr()
	no := false
	cfg := Config{Broker: "tcp://" + addr, ClientID: "gw-persistent", CleanSession: &no,
		Subscriptions: []Subscription{jsonSub("p/+", 1, 1)}}
	s := newSub(t, cfg)
	stuck := make(chan ingest.Reading) // nobody reads: the first message cannot be handed on
	stop := running(t, s, stuck)
	pub := publisher(t, "tcp://"+addr, "", "")
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "the SUBACK")
	publish(t, pub, "p/first", 1, payload(1714564800, "v", 1))
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Received > 0 }, "the first message")
	stop() // Run ends while the reading is still waiting for out: no PUBACK

	for i := range 5 {
		publish(t, pub, "p/away", 1, payload(1714564800, "v", 10+i))
	}
	s2 := newSub(t, cfg)
	out := make(chan ingest.Reading, 64)
	running(t, s2, out)
	var first, away int
	var got []ingest.Reading
	for away < 5 || first < 1 {
		r := collect(t, out, 1)[0]
		got = append(got, r)
		switch r.Sensor {
		case "first":
			first++
		case "away":
			away++
		}
	}
	if first < 1 || away != 5 {
		t.Fatalf("after restart: %d first, %d away: %+v", first, away, got)
	}
}

// TestMosquittoHeldAckThrottlesBroker shows the QoS 1 back-pressure: while
// the pipeline does not take readings, the broker stops at its in-flight
// window (max_inflight_messages) instead of flooding the gateway's queue,
// and everything arrives once the pipeline drains.
func TestMosquittoHeldAckThrottlesBroker(t *testing.T) {
	checkNoLeak(t)
	addr := mqtttest.StartMosquitto(t, mqtttest.MosquittoConfig{Conf: "allow_anonymous true\nmax_inflight_messages 10\nmax_queued_messages 1000"}).Addr()
	s := newSub(t, Config{Broker: "tcp://" + addr, QueueSize: 500, Subscriptions: []Subscription{jsonSub("h/+", 1, 1)}})
	out := make(chan ingest.Reading) // not read yet
	running(t, s, out)
	pub := publisher(t, "tcp://"+addr, "", "")
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "the SUBACK")
	const n = 200
	for i := range n {
		publish(t, pub, "h/x", 1, payload(1714564800, "v", i))
	}
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Received >= 10 }, "the in-flight window to fill")
	time.Sleep(300 * time.Millisecond)
	if st := s.Stats(); st.Received > 10 {
		t.Fatalf("broker sent %d unacknowledged messages, window is 10: %+v", st.Received, st)
	}
	got := collect(t, out, n)
	for i, r := range got {
		if r.Value != float64(i) {
			t.Fatalf("reading %d has value %v: order or loss", i, r.Value)
		}
	}
	if st := s.Stats(); st.Dropped != 0 || st.Received != n {
		t.Errorf("stats %+v", st)
	}
}
