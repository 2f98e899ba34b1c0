package mqttsub

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/decode"
	"github.com/sensorgate/sensorgate/internal/mqttnet"
	"github.com/sensorgate/sensorgate/internal/secret"
)

// Defaults applied by [Config.Defaults].
const (
	DefaultKeepAlive            = 30 * time.Second
	DefaultQueueSize            = 16384
	DefaultQueueBytes           = 8 << 20
	DefaultReadCoalesce         = 5 * time.Millisecond
	DefaultMaxPayload           = 64 << 10
	DefaultConnectTimeout       = 10 * time.Second
	DefaultMaxReconnectInterval = 30 * time.Second
	// DefaultInFlight is mosquitto's max_inflight_messages default, the
	// smallest window of the common brokers (EMQX max_inflight: 32).
	DefaultInFlight = 20
)

// Payload formats of [Subscription.Format].
const (
	FormatJSON      = "json"       // JSON objects with a field mapping (json: block)
	FormatSenML     = "senml"      // SenML JSON, RFC 8428 (senml: block)
	FormatSenMLCBOR = "senml_cbor" // SenML CBOR, RFC 8428 section 6 (senml: block)
	FormatMsgpack   = "msgpack"    // ingest.ReadingBatch from another sensorgate (msgpack: block)
	FormatNumber    = "number"     // a bare number, sensor and metric from the topic (number: block)
)

// Config is one entry of the `sources.mqtt:` list: one connection to one
// broker with any number of subscriptions.
type Config struct {
	// Broker is the broker URL: tcp:// (or mqtt://), ssl:// (tls://,
	// mqtts://), ws://, wss://. A missing port defaults to 1883 (8883 for
	// TLS schemes).
	Broker string `yaml:"broker"`
	// ClientID defaults to "sensorgate-<hostname>-<hash of broker and
	// topics>", stable across restarts so that a persistent session
	// (clean_session: false) finds its queued messages again.
	ClientID string `yaml:"client_id"`
	Username string `yaml:"username"`
	// Password in the file itself is accepted but discouraged; prefer
	// PasswordFile (first line of the file, white space trimmed, read again
	// at every connect so a rotated password is used) or PasswordEnv (name
	// of an environment variable). At most one of the three. The password
	// is never logged.
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// TLS for ssl://, tls://, mqtts:// and wss:// brokers: ca_file,
	// cert_file, key_file, server_name, alpn, insecure_skip_verify.
	TLS mqttnet.TLS `yaml:"tls"`
	// KeepAlive is the MQTT keepalive interval (default 30s).
	KeepAlive time.Duration `yaml:"keepalive"`
	// CleanSession false asks the broker to keep the subscriptions, queue
	// QoS 1/2 messages while the gateway is away and, above all, deliver
	// again every message that was not acknowledged when a connection
	// ended: that is what makes a durable subscription lose nothing. The
	// default is false when a subscription is durable at QoS 1 or 2, true
	// otherwise. true with a durable subscription is allowed but logged
	// as a warning at start: a message whose commit was still pending when
	// the connection ended is then lost.
	CleanSession *bool `yaml:"clean_session"`
	// InFlight is how many unacknowledged QoS 1/2 messages the broker
	// sends this client before it waits for PUBACKs (default 20, 1 to
	// 65535). It configures nothing on the broker (MQTT 3.1.1 has no way
	// to ask): set it to the broker's window, so that the gateway commits
	// as soon as that many messages wait for their commit instead of
	// leaving the broker stalled until the next timed commit. mosquitto:
	// max_inflight_messages (default 20; 0 is unlimited); EMQX:
	// mqtt.max_inflight (default 32); HiveMQ: no window for MQTT 3
	// clients (they get the MQTT 5 default receive maximum, 65535), so
	// pick the commit batch you want, e.g. 1024; sensorgate's own broker:
	// see package broker (1024).
	InFlight int `yaml:"inflight"`
	// QueueSize bounds the hand-off queue between paho's network goroutine
	// and Run, in messages (default 16384: at 20k msg/s a 1024-message
	// queue was 51 ms of slack, and the end-to-end benchmark lost QoS 0
	// messages there from 50k msg/s on). See the package documentation for
	// what happens when it is full.
	QueueSize int `yaml:"queue_size"`
	// QueueBytes bounds the payload bytes of the QoS 0 messages waiting in
	// that queue (default 8 MiB), so that large payloads cannot make the
	// queue a memory problem on a Pi; QoS 1/2 are bounded by the broker's
	// in-flight window, since their ack waits for the hand-off.
	QueueBytes int `yaml:"queue_bytes"`
	// ReadCoalesce is how long the source waits before reading the broker
	// connection again after a read that brought in little (default 5ms;
	// "0s" never waits). Messages gather in the socket buffer meanwhile,
	// so one wake-up of the receive path carries many: at 20k msg/s that
	// takes 40% off the gateway's CPU. It adds at most this much latency;
	// under load reads come back full and never wait. With a QoS 1/2
	// subscription, waits that gather nothing more (a broker whose
	// in-flight window waits for our PUBACKs) are given up for a while.
	ReadCoalesce *time.Duration `yaml:"read_coalesce"`
	// MaxPayload is the largest payload decoded, in bytes (default 64 KiB);
	// larger ones are counted under reason too_large and dropped.
	MaxPayload int `yaml:"max_payload"`
	// ConnectTimeout bounds one connection attempt (default 10s).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxReconnectInterval caps the backoff between attempts (default 30s).
	MaxReconnectInterval time.Duration  `yaml:"max_reconnect_interval"`
	Subscriptions        []Subscription `yaml:"subscriptions"`
}

// Subscription is one topic filter and how to decode what arrives on it.
type Subscription struct {
	// Topic is an MQTT topic filter; + and # wildcards and $share/ are
	// allowed.
	Topic string `yaml:"topic"`
	// QoS is the maximum QoS asked for: 0, 1 or 2.
	QoS byte `yaml:"qos"`
	// Format is the payload format: json (default), senml, senml_cbor,
	// msgpack or number.
	Format string `yaml:"format"`
	// JSON is the mapping for format json.
	JSON decode.JSONMapping `yaml:"json"`
	// SenML is the mapping for formats senml and senml_cbor.
	SenML decode.SenMLMapping `yaml:"senml"`
	// Msgpack is the mapping for format msgpack.
	Msgpack decode.MsgpackMapping `yaml:"msgpack"`
	// Number is the mapping for format number.
	Number decode.NumberMapping `yaml:"number"`
	// Durable (default true for QoS 1 and 2, false for QoS 0) makes the
	// last reading of each message carry an ingest.Receipt, and the
	// message is acknowledged (PUBACK, PUBREC) only when the engine reports
	// that the checkpoint holding its effect is committed, in the order
	// the messages arrived. false acknowledges as soon as the readings
	// were handed to the pipeline: a crash then loses what the pipeline
	// held. A durable QoS 0 subscription has no acknowledgement to hold:
	// its receipts only ask the engine to commit promptly.
	Durable *bool `yaml:"durable"`
}

// IsDurable reports whether s is durable after Defaults (the QoS default
// when Durable is unset).
func (s Subscription) IsDurable() bool {
	if s.Durable != nil {
		return *s.Durable
	}
	return s.QoS > 0
}

// HoldsAcks reports whether the config has a subscription whose
// acknowledgements wait for a commit (durable at QoS 1 or 2): its
// InFlight then matters to the engine's commit trigger.
func (c Config) HoldsAcks() bool {
	for _, s := range c.Subscriptions {
		if s.QoS > 0 && s.IsDurable() {
			return true
		}
	}
	return false
}

// Defaults fills the zero fields of c with the defaults documented on each
// field (and on the subscriptions' mappings).
func (c *Config) Defaults() {
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	for i := range c.Subscriptions {
		if s := &c.Subscriptions[i]; s.Durable == nil {
			d := s.QoS > 0
			s.Durable = &d
		}
	}
	if c.CleanSession == nil {
		clean := !c.HoldsAcks()
		c.CleanSession = &clean
	}
	if c.InFlight == 0 {
		c.InFlight = DefaultInFlight
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	if c.ReadCoalesce == nil {
		d := DefaultReadCoalesce
		c.ReadCoalesce = &d
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = DefaultMaxPayload
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.MaxReconnectInterval == 0 {
		c.MaxReconnectInterval = DefaultMaxReconnectInterval
	}
	for i := range c.Subscriptions {
		s := &c.Subscriptions[i]
		if s.Format == "" {
			s.Format = FormatJSON
		}
		switch s.Format {
		case FormatJSON:
			s.JSON.Defaults()
		case FormatSenML, FormatSenMLCBOR:
			s.SenML.Defaults()
		case FormatNumber:
			s.Number.Defaults()
		}
	}
	if c.ClientID == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "gateway"
		}
		h := fnv.New32a()
		h.Write([]byte(c.Broker))
		for _, s := range c.Subscriptions {
			h.Write([]byte{0})
			h.Write([]byte(s.Topic))
		}
		c.ClientID = fmt.Sprintf("sensorgate-%s-%08x", host, h.Sum32())
	}
}

// Validate checks c (after Defaults). Paths are relative to the list entry.
func (c Config) Validate() error {
	var errs []error
	if _, err := brokerURL(c.Broker); err != nil {
		errs = append(errs, ingest.FieldErrorf("broker", "%v", err))
	}
	if err := c.password().Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(c.ClientID) > 65535 {
		errs = append(errs, ingest.FieldErrorf("client_id", "too long"))
	}
	if c.CleanSession != nil && !*c.CleanSession && c.ClientID == "" {
		errs = append(errs, ingest.FieldErrorf("client_id", "required when clean_session is false"))
	}
	if u, err := brokerURL(c.Broker); err == nil && c.TLS.IsSet() && !mqttnet.TLSScheme(u.Scheme) {
		errs = append(errs, ingest.FieldErrorf("tls", "set for a %s:// broker; use ssl://, tls://, mqtts:// or wss://", u.Scheme))
	}
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, ingest.PrefixErrors("tls", err))
	}
	if c.KeepAlive < 0 || (c.KeepAlive > 0 && c.KeepAlive < time.Second) || c.KeepAlive > 65535*time.Second {
		errs = append(errs, ingest.FieldErrorf("keepalive", "must be 0 or between 1s and 18h12m15s"))
	}
	if c.InFlight < 1 || c.InFlight > 65535 {
		errs = append(errs, ingest.FieldErrorf("inflight", "must be between 1 and 65535, got %d", c.InFlight))
	}
	if c.QueueBytes <= 0 {
		errs = append(errs, ingest.FieldErrorf("queue_bytes", "must be > 0"))
	}
	if c.QueueSize <= 0 {
		errs = append(errs, ingest.FieldErrorf("queue_size", "must be > 0"))
	}
	if c.ReadCoalesce != nil && (*c.ReadCoalesce < 0 || *c.ReadCoalesce > time.Second) {
		errs = append(errs, ingest.FieldErrorf("read_coalesce", "must be between 0s and 1s, got %s", *c.ReadCoalesce))
	}
	if c.MaxPayload <= 0 {
		errs = append(errs, ingest.FieldErrorf("max_payload", "must be > 0"))
	}
	if c.ConnectTimeout <= 0 {
		errs = append(errs, ingest.FieldErrorf("connect_timeout", "must be > 0"))
	}
	if c.MaxReconnectInterval <= 0 {
		errs = append(errs, ingest.FieldErrorf("max_reconnect_interval", "must be > 0"))
	}
	if len(c.Subscriptions) == 0 {
		errs = append(errs, ingest.FieldErrorf("subscriptions", "at least one subscription is required"))
	}
	seen := map[string]int{}
	for i, s := range c.Subscriptions {
		p := fmt.Sprintf("subscriptions[%d]", i)
		if err := mqttnet.ValidFilter(s.Topic); err != nil {
			errs = append(errs, ingest.FieldErrorf(p+".topic", "%v", err))
		} else if j, dup := seen[s.Topic]; dup {
			errs = append(errs, ingest.FieldErrorf(p+".topic", "same filter as subscriptions[%d]", j))
		} else {
			seen[s.Topic] = i
		}
		if s.QoS > 2 {
			errs = append(errs, ingest.FieldErrorf(p+".qos", "must be 0, 1 or 2"))
		}
		switch s.Format {
		case FormatJSON, "":
			m := s.JSON
			if err := m.Validate(); err != nil {
				errs = append(errs, ingest.PrefixErrors(p+".json", err))
			}
		case FormatSenML, FormatSenMLCBOR:
			m := s.SenML
			if err := m.Validate(); err != nil {
				errs = append(errs, ingest.PrefixErrors(p+".senml", err))
			}
		case FormatNumber:
			m := s.Number
			if err := m.Validate(); err != nil {
				errs = append(errs, ingest.PrefixErrors(p+".number", err))
			}
		case FormatMsgpack:
		default:
			errs = append(errs, ingest.FieldErrorf(p+".format", "unknown format %q (want json, senml, senml_cbor, msgpack or number)", s.Format))
		}
	}
	return errors.Join(errs...)
}

// LogValue makes a Config safe to log: the password never appears.
func (c Config) LogValue() slog.Value {
	topics := make([]string, len(c.Subscriptions))
	for i, s := range c.Subscriptions {
		topics[i] = s.Topic
	}
	return slog.GroupValue(
		slog.String("broker", c.Broker),
		slog.String("client_id", c.ClientID),
		slog.String("username", c.Username),
		slog.Bool("password_set", c.password().IsSet()),
		slog.Any("topics", topics),
	)
}

// brokerURL parses and checks a broker URL.
func brokerURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid URL: %w", err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return nil, fmt.Errorf("unsupported scheme %q (want tcp, ssl, tls, mqtts, ws or wss)", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New("no host")
	}
	if u.User != nil {
		return nil, errors.New("credentials in the URL are not allowed; use username and password_file")
	}
	return u, nil
}

// password is where the password comes from.
func (c Config) password() secret.Source {
	return secret.Source{Key: "password", Inline: c.Password, File: c.PasswordFile, Env: c.PasswordEnv}
}

// String renders c without its password, so that printing a Config by
// accident cannot leak it.
func (c Config) String() string { return c.LogValue().String() }
