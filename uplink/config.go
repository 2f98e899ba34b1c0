package uplink

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/internal/mqttnet"
	"github.com/sensorgate/sensorgate/internal/secret"
)

// Uplink types.
const (
	TypeMQTT   = "mqtt"
	TypeHTTP   = "http"
	TypeStdout = "stdout"
)

// Payload formats.
const (
	FormatJSON    = "json"
	FormatMsgpack = "msgpack"
	FormatSenML   = "senml"
)

// Defaults applied by [Config.Defaults].
const (
	DefaultTopic       = "sensorgate/{gateway}/{lane}"
	DefaultStatusTopic = "sensorgate/{gateway}/status"
	DefaultMaxInflight = 64
	DefaultBatchBytes  = 128 << 10
	DefaultHTTPBatch   = 100
)

// Backoff bounds the delay between reconnects (MQTT) or retries (HTTP). The
// delay starts at Min, doubles after each failure up to Max, and is jittered
// (a random value in [d/2, d]).
type Backoff struct {
	Min time.Duration `yaml:"min"`
	Max time.Duration `yaml:"max"`
}

// TLS configures the client side of a TLS connection (ssl://, tls://,
// mqtts://, wss:// and https:// URLs): the one type the MQTT sources and
// the uplinks share for the YAML `tls:` block.
type TLS = mqttnet.TLS

// Config is one entry of the YAML `uplinks:` list.
type Config struct {
	// Name identifies the uplink in logs and metrics. Default: the type.
	Name string `yaml:"name"`
	// Type is mqtt, http or stdout.
	Type string `yaml:"type"`
	// URL is the upstream: tcp://host:1883, ssl://host:8883 (also tls://,
	// mqtts://), ws://host/mqtt or wss:// for MQTT; http(s)://... for HTTP.
	URL string `yaml:"url"`
	// Lanes this uplink serves, in any order (they are always served in
	// priority order: alerts, summaries, raw). Default: all three.
	Lanes []string `yaml:"lanes"`

	// Topic is the MQTT topic template. Placeholders: {gateway}, {name},
	// {lane}, {kind}, {sensor}, {metric}. Default "sensorgate/{gateway}/{lane}".
	Topic string `yaml:"topic"`
	// ClientID is the MQTT client id (template like Topic, {gateway} and
	// {name} only). Default "sensorgate-{gateway}-{name}".
	ClientID string `yaml:"client_id"`
	// Username and password for MQTT. At most one of Password,
	// PasswordFile (read at every connect, so rotated tokens work) and
	// PasswordEnv (name of an environment variable) may be set.
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// QoS of data messages. Only 1 is supported (0 means 1): a record is
	// deleted from the outbox only after the broker's PUBACK.
	QoS byte `yaml:"qos"`
	// KeepAlive is the MQTT keepalive interval (whole seconds). Default 30s.
	KeepAlive time.Duration `yaml:"keepalive"`
	// StatusTopic receives the retained birth ("online") and last-will
	// ("offline") messages. Template like Topic. Default
	// "sensorgate/{gateway}/status"; DisableStatus turns presence off.
	StatusTopic   string `yaml:"status_topic"`
	DisableStatus bool   `yaml:"disable_status"`

	// Format of message payloads: json, msgpack or senml. Default json.
	Format string `yaml:"format"`
	// MaxInflight bounds the MQTT messages published but not yet
	// acknowledged (PUBACK). Default 64.
	MaxInflight int `yaml:"max_inflight"`
	// BatchSize is the most records in one message (MQTT) or request
	// (HTTP). 1 sends one record per message, as a bare JSON object;
	// above 1 every message is an array. Default 1 for mqtt and stdout,
	// 100 for http.
	BatchSize int `yaml:"batch_size"`
	// BatchBytes bounds the encoded size of a batch (a single larger
	// record is still sent alone). Default 128 KiB.
	BatchBytes int `yaml:"batch_bytes"`
	// MaxMessageBytes (MQTT) is the largest payload the broker accepts
	// (AWS IoT Core: 131072). A batch that encodes larger is split; a
	// single record that is still too large is moved to the dead lane,
	// counted, instead of being refused (and the connection dropped)
	// again and again. 0, the default, means no limit.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// Backoff between reconnects / retries. Default 1s to 60s.
	Backoff Backoff `yaml:"backoff"`
	// ConnectTimeout bounds dialing and the MQTT handshake. Default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// AckTimeout: if the oldest unacknowledged message waits longer than
	// this for its PUBACK, the connection is considered dead and is
	// re-established (catches black-holed links). Default 30s.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// PollInterval is how often the outbox is checked for new records when
	// no notification arrived. Default 1s.
	PollInterval time.Duration `yaml:"poll_interval"`

	// TLS settings.
	TLS TLS `yaml:"tls"`

	// HTTP only: extra request headers, a bearer token (TokenFile is read
	// at every request; TokenEnv names an environment variable), gzip
	// request bodies, and the per-request timeout (default 10s).
	Headers   map[string]string `yaml:"headers"`
	TokenFile string            `yaml:"token_file"`
	TokenEnv  string            `yaml:"token_env"`
	Gzip      bool              `yaml:"gzip"`
	Timeout   time.Duration     `yaml:"timeout"`
}

// Defaults fills the zero fields of c with the defaults documented on each
// field. It is idempotent.
func (c *Config) Defaults() {
	if c.Name == "" {
		c.Name = c.Type
	}
	if len(c.Lanes) == 0 {
		c.Lanes = []string{"alerts", "summaries", "raw"}
	}
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.ClientID == "" {
		c.ClientID = "sensorgate-{gateway}-{name}"
	}
	if c.QoS == 0 {
		c.QoS = 1
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 30 * time.Second
	}
	if c.StatusTopic == "" {
		c.StatusTopic = DefaultStatusTopic
	}
	if c.Format == "" {
		c.Format = FormatJSON
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.BatchSize == 0 {
		c.BatchSize = 1
		if c.Type == TypeHTTP {
			c.BatchSize = DefaultHTTPBatch
		}
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	if c.Backoff.Min == 0 {
		c.Backoff.Min = time.Second
	}
	if c.Backoff.Max == 0 {
		c.Backoff.Max = 60 * time.Second
		if c.Backoff.Max < c.Backoff.Min {
			c.Backoff.Max = c.Backoff.Min
		}
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = 30 * time.Second
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
}

var placeholders = []string{"{gateway}", "{name}", "{lane}", "{kind}", "{sensor}", "{metric}"}

// Validate checks c (after Defaults) and returns every problem as an
// ingest.FieldError with a path relative to the uplink entry.
func (c Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, ingest.FieldErrorf(path, format, args...))
	}
	if c.Name == "" {
		add("name", "must not be empty")
	}
	switch c.Type {
	case TypeMQTT:
		validateURL(c.URL, add, "tcp", "ssl", "tls", "mqtt", "mqtts", "ws", "wss")
	case TypeHTTP:
		validateURL(c.URL, add, "http", "https")
	case TypeStdout:
	case "":
		add("type", "must be set (mqtt, http or stdout)")
	default:
		add("type", "unknown type %q (want mqtt, http or stdout)", c.Type)
	}
	if len(c.Lanes) == 0 {
		add("lanes", "must name at least one lane")
	}
	seen := map[buffer.Lane]bool{}
	for i, s := range c.Lanes {
		l, err := buffer.ParseLane(s)
		switch {
		case err != nil || l == buffer.LaneDead:
			add(fmt.Sprintf("lanes[%d]", i), "unknown lane %q (want alerts, summaries or raw)", s)
		case seen[l]:
			add(fmt.Sprintf("lanes[%d]", i), "lane %q listed twice", s)
		}
		seen[l] = true
	}
	if c.Type == TypeMQTT {
		if err := validateTemplate(c.Topic, placeholders); err != nil {
			add("topic", "%v", err)
		}
		if err := validateTemplate(c.ClientID, placeholders[:2]); err != nil {
			add("client_id", "%v", err)
		}
		if !c.DisableStatus {
			if err := validateTemplate(c.StatusTopic, placeholders[:2]); err != nil {
				add("status_topic", "%v", err)
			}
		}
		if c.QoS != 1 {
			add("qos", "must be 1 (QoS 1 is what lets a record leave the outbox only after PUBACK)")
		}
		if c.KeepAlive < time.Second {
			add("keepalive", "must be >= 1s")
		}
		if c.MaxInflight < 1 || c.MaxInflight > 65000 {
			add("max_inflight", "must be between 1 and 65000")
		}
		n := 0
		for _, s := range []string{c.Password, c.PasswordFile, c.PasswordEnv} {
			if s != "" {
				n++
			}
		}
		if n > 1 {
			add("password", "set at most one of password, password_file and password_env")
		}
		if c.AckTimeout <= 0 {
			add("ack_timeout", "must be > 0")
		}
	}
	if c.Type == TypeHTTP {
		if c.TokenFile != "" && c.TokenEnv != "" {
			add("token_file", "set at most one of token_file and token_env")
		}
		if c.Timeout <= 0 {
			add("timeout", "must be > 0")
		}
		for k := range c.Headers {
			if k == "" || strings.ContainsAny(k, " :\r\n") {
				add("headers", "invalid header name %q", k)
			}
		}
	}
	switch c.Format {
	case FormatJSON, FormatMsgpack, FormatSenML:
	default:
		add("format", "unknown format %q (want json, msgpack or senml)", c.Format)
	}
	if c.BatchSize < 1 {
		add("batch_size", "must be >= 1")
	}
	if c.MaxMessageBytes < 0 {
		add("max_message_bytes", "must be >= 0")
	}
	if c.BatchBytes < 1 {
		add("batch_bytes", "must be > 0")
	}
	if c.Backoff.Min <= 0 {
		add("backoff.min", "must be > 0")
	}
	if c.Backoff.Max < c.Backoff.Min {
		add("backoff.max", "must be >= backoff.min")
	}
	if c.ConnectTimeout <= 0 {
		add("connect_timeout", "must be > 0")
	}
	if c.PollInterval <= 0 {
		add("poll_interval", "must be > 0")
	}
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, ingest.PrefixErrors("tls", err))
	}
	return errors.Join(errs...)
}

func validateURL(raw string, add func(string, string, ...any), schemes ...string) {
	if raw == "" {
		add("url", "must be set")
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the URL, token and all: validate prints it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		add("url", "invalid URL: %v", err)
		return
	}
	for _, s := range schemes {
		if u.Scheme == s {
			if u.Host == "" {
				add("url", "missing host in %q", secret.RedactURL(raw))
			}
			return
		}
	}
	add("url", "scheme %q not supported (want %s)", u.Scheme, strings.Join(schemes, ", "))
}

// validateTemplate checks that t is a non-empty MQTT topic without
// wildcards whose {placeholders} are all in allowed.
func validateTemplate(t string, allowed []string) error {
	if t == "" {
		return errors.New("must not be empty")
	}
	if strings.ContainsAny(t, "+#\x00") {
		return errors.New("must not contain the wildcards + or #")
	}
	rest := t
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return fmt.Errorf("unclosed placeholder in %q", t)
		}
		p := rest[i : i+j+1]
		ok := false
		for _, a := range allowed {
			if a == p {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("unknown placeholder %s (want one of %s)", p, strings.Join(allowed, " "))
		}
		rest = rest[i+j+1:]
	}
	return nil
}

// AssignDefaultLanes gives every entry of cfgs that lists no lanes the
// lanes (alerts, summaries, raw) that no other entry lists explicitly, so
// that for example an MQTT uplink for [alerts, summaries] next to a stdout
// uplink without lanes gives the stdout uplink [raw]. Call it before
// Defaults. Entries that end up with nothing keep an empty list (and then
// get all lanes from Defaults, which ValidateRouting reports).
func AssignDefaultLanes(cfgs []Config) {
	claimed := map[string]bool{}
	for _, c := range cfgs {
		for _, l := range c.Lanes {
			claimed[l] = true
		}
	}
	var free []string
	for _, l := range []string{"alerts", "summaries", "raw"} {
		if !claimed[l] {
			free = append(free, l)
		}
	}
	for i := range cfgs {
		if len(cfgs[i].Lanes) == 0 && len(free) > 0 {
			cfgs[i].Lanes = append([]string(nil), free...)
		}
	}
}

// ValidateRouting checks a whole `uplinks:` list (after Defaults): names
// are unique and every lane is served by at most one uplink (two uplinks
// acknowledging the same lane would each get only part of it). Paths are
// relative to the list: "[1].lanes".
func ValidateRouting(cfgs []Config) error {
	var errs []error
	names := map[string]int{}
	owner := map[string]int{}
	for i, c := range cfgs {
		if j, ok := names[c.Name]; ok && c.Name != "" {
			errs = append(errs, ingest.FieldErrorf(fmt.Sprintf("[%d].name", i), "duplicate uplink name %q (also [%d])", c.Name, j))
		} else {
			names[c.Name] = i
		}
		for _, l := range c.Lanes {
			if j, ok := owner[l]; ok {
				errs = append(errs, ingest.FieldErrorf(fmt.Sprintf("[%d].lanes", i),
					"lane %q is already served by [%d] (%q): a lane may be served by one uplink only", l, j, cfgs[j].Name))
				continue
			}
			owner[l] = i
		}
	}
	return errors.Join(errs...)
}
