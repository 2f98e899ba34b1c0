package mqttsub

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/decode"
	"go.yaml.in/yaml/v3"
)

func TestConfigYAMLAndDefaults(t *testing.T) {
	const doc = `
broker: tcp://127.0.0.1:1883
keepalive: 15s
queue_size: 10
subscriptions:
  - {topic: "sensors/+/telemetry", qos: 1, format: json,
     json: {sensor_topic_segment: 1, time_field: ts, time_format: unix_ms,
            metrics: {temperature: {field: env.temp, unit: "°C"}}}}
`
	var c Config
	dec := yaml.NewDecoder(stringsReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// A QoS 1 subscription is durable by default, which asks for a
	// persistent session (the broker must redeliver what was not acked).
	if c.KeepAlive != 15*time.Second || c.QueueSize != 10 || *c.CleanSession || c.MaxPayload != DefaultMaxPayload || c.ClientID == "" ||
		c.InFlight != DefaultInFlight || !*c.Subscriptions[0].Durable {
		t.Errorf("defaults: %+v", c)
	}
	s := c.Subscriptions[0]
	if s.QoS != 1 || *s.JSON.SensorTopicSegment != 1 || s.JSON.Metrics["temperature"].Unit != "°C" || s.JSON.TimeFormat != decode.TimeUnixMS {
		t.Errorf("subscription: %+v", s)
	}
	c2 := Config{Broker: c.Broker, Subscriptions: c.Subscriptions}
	c2.Defaults()
	if c2.ClientID != c.ClientID {
		t.Errorf("client id not stable: %s vs %s", c2.ClientID, c.ClientID)
	}
}

func TestConfigValidate(t *testing.T) {
	good := func() Config {
		c := Config{Broker: "tcp://h:1883", Subscriptions: []Subscription{jsonSub("a/+", 0, 1)}}
		c.Defaults()
		return c
	}
	f := false
	tests := []struct {
		mod   func(*Config)
		paths []string
	}{
		{func(*Config) {}, nil},
		{func(c *Config) { c.Broker = "http://h" }, []string{"broker"}},
		{func(c *Config) { c.Broker = "tcp://u:p@h" }, []string{"broker"}},
		{func(c *Config) { c.Broker = "" }, []string{"broker"}},
		{func(c *Config) { c.Password, c.PasswordFile = "x", "/f" }, []string{"password"}},
		{func(c *Config) { c.TLS.CertFile = "c.pem" }, []string{"tls", "tls.cert_file"}},
		{func(c *Config) { c.Broker, c.TLS.CAFile = "ssl://h", "ca.pem" }, nil},
		{func(c *Config) { c.KeepAlive = time.Millisecond }, []string{"keepalive"}},
		{func(c *Config) { c.QueueSize, c.MaxPayload = -1, -1 }, []string{"queue_size", "max_payload"}},
		{func(c *Config) { c.ClientID, c.CleanSession = "", &f }, []string{"client_id"}},
		{func(c *Config) { d := -time.Millisecond; c.ReadCoalesce = &d }, []string{"read_coalesce"}},
		{func(c *Config) { d := time.Duration(0); c.ReadCoalesce = &d }, nil},
		{func(c *Config) { c.Subscriptions = nil }, []string{"subscriptions"}},
		{func(c *Config) {
			c.Subscriptions = append(c.Subscriptions, Subscription{Topic: "a/#/b", QoS: 3, Format: "xml"}, jsonSub("a/+", 0, 1))
		}, []string{"subscriptions[1].topic", "subscriptions[1].qos", "subscriptions[1].format", "subscriptions[2].topic"}},
		{func(c *Config) { c.Subscriptions[0].JSON.TimeFormat = "days" }, []string{"subscriptions[0].json.time_format"}},
		{func(c *Config) { c.Subscriptions[0].Topic = "$share/g/x/+" }, nil},
		{func(c *Config) { c.Subscriptions[0].Topic = "$share//x" }, []string{"subscriptions[0].topic"}},
		{func(c *Config) { c.InFlight = 0 }, []string{"inflight"}},
		{func(c *Config) { c.InFlight = 65536 }, []string{"inflight"}},
		{func(c *Config) { c.InFlight = 65535 }, nil},
		{func(c *Config) { t := true; c.Subscriptions[0].Durable = &t }, nil}, // QoS 0 may opt in
	}
	for i, tt := range tests {
		c := good()
		tt.mod(&c)
		var got []string
		for _, e := range ingest.FlattenErrors(c.Validate()) {
			var fe *ingest.FieldError
			if !errors.As(e, &fe) {
				t.Fatalf("%d: not a FieldError: %v", i, e)
			}
			got = append(got, fe.Path)
		}
		if !slices.Equal(got, tt.paths) {
			t.Errorf("%d: paths %v, want %v", i, got, tt.paths)
		}
	}
}

// Durable follows the QoS unless set; the session is persistent exactly
// when some acknowledgement waits for a commit, unless set.
func TestConfigDurableDefaults(t *testing.T) {
	yes, no := true, false
	with := func(s Subscription, d *bool) Subscription { s.Durable = d; return s }
	tests := []struct {
		subs      []Subscription
		clean     *bool
		durable   []bool
		wantClean bool
	}{
		{[]Subscription{jsonSub("a", 0, 1)}, nil, []bool{false}, true},
		{[]Subscription{jsonSub("a", 1, 1)}, nil, []bool{true}, false},
		{[]Subscription{jsonSub("a", 2, 1), jsonSub("b", 0, 1)}, nil, []bool{true, false}, false},
		{[]Subscription{with(jsonSub("a", 1, 1), &no)}, nil, []bool{false}, true},
		{[]Subscription{with(jsonSub("a", 0, 1), &yes)}, nil, []bool{true}, true}, // no ack to hold
		{[]Subscription{jsonSub("a", 1, 1)}, &yes, []bool{true}, true},            // allowed, warned at start
	}
	for i, tt := range tests {
		c := Config{Broker: "tcp://h", Subscriptions: tt.subs, CleanSession: tt.clean}
		c.Defaults()
		if err := c.Validate(); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		for j, want := range tt.durable {
			if got := c.Subscriptions[j].IsDurable(); got != want || *c.Subscriptions[j].Durable != want {
				t.Errorf("%d: subscriptions[%d] durable %v, want %v", i, j, got, want)
			}
		}
		if *c.CleanSession != tt.wantClean {
			t.Errorf("%d: clean_session %v, want %v", i, *c.CleanSession, tt.wantClean)
		}
	}
}

func TestLogValueHidesPassword(t *testing.T) {
	c := Config{Broker: "tcp://h", Username: "u", Password: "s3cret"}
	if s := fmt.Sprint(c.LogValue()); containsStr(s, "s3cret") {
		t.Errorf("LogValue shows the password: %s", s)
	}
}

// The tls: block takes the keys of the uplink's, alpn included: one type.
func TestTLSBlockKeys(t *testing.T) {
	const doc = `
broker: ssl://broker.example
tls: {ca_file: ca.pem, cert_file: c.pem, key_file: c.key, server_name: b, alpn: [x-amzn-mqtt-ca], insecure_skip_verify: true}
subscriptions: [{topic: a/+, json: {sensor_field: id}}]
`
	dec := yaml.NewDecoder(stringsReader(doc))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if c.TLS.CAFile != "ca.pem" || c.TLS.KeyFile != "c.key" || c.TLS.ServerName != "b" ||
		!slices.Equal(c.TLS.ALPN, []string{"x-amzn-mqtt-ca"}) || !c.TLS.InsecureSkipVerify {
		t.Errorf("tls = %+v", c.TLS)
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}
