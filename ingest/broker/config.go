package broker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/internal/mqttnet"
)

// Defaults of Config.
const (
	DefaultListen        = "127.0.0.1:1883"
	DefaultMaxPacketSize = 1 << 20
	// DefaultMaxInflight is mochi's own default: the unacknowledged QoS
	// 1/2 messages the broker holds per client before it drops more.
	DefaultMaxInflight = 8192
	// DefaultReceiveMaximum is mochi's default for the QoS 1/2 messages a
	// client may have unacknowledged towards the broker.
	DefaultReceiveMaximum = 1024
	// DefaultMaxWritesPending is mochi's default write queue per client.
	DefaultMaxWritesPending = 8192
)

// Access values of an ACL rule.
const (
	AccessRead      = "read"      // subscribe
	AccessWrite     = "write"     // publish
	AccessReadWrite = "readwrite" // both
)

// internalUser is the user of the gateway's own loopback connection; names
// starting with '$' are refused in the users file so that nobody else can
// claim it.
const internalUser = "$sensorgate"

// Config is the top-level `broker:` section.
type Config struct {
	// Enabled turns the local broker on.
	Enabled bool `yaml:"enabled"`
	// Listen is the address field nodes connect to (default
	// 127.0.0.1:1883). On any address that is not loopback the broker
	// refuses to start without users (authentication).
	Listen string `yaml:"listen"`
	// UsersFile is a YAML file with the users, their bcrypt password hashes
	// and topic ACLs (see [UsersFile]). Users may also be given inline.
	UsersFile string `yaml:"users_file"`
	Users     []User `yaml:"users"`
	// AllowAnonymous lets clients connect without a username. Default: true
	// on loopback when no users are configured, false otherwise; true on a
	// non-loopback address is refused.
	AllowAnonymous *bool `yaml:"allow_anonymous"`
	// TLS serves the listener over TLS.
	TLS TLSConfig `yaml:"tls"`
	// MaxPacketSize bounds an MQTT packet in bytes (default 1 MiB).
	MaxPacketSize int `yaml:"max_packet_size"`
	// MaxInflight bounds the QoS 1/2 messages the broker keeps per client
	// while they wait for the client's PUBACK, and those it queues for a
	// disconnected persistent session (default 8192, at most 65535).
	// Beyond it the broker drops the message (Stats.InflightDropped). It
	// is not a window: mochi sends an MQTT 3.1.1 client everything at
	// once. The gateway's own durable source holds its PUBACKs until a
	// commit, so this must stay well above what arrives during one commit
	// (see Broker.LocalInFlight). 0 is the default.
	MaxInflight int `yaml:"max_inflight"`
	// ReceiveMaximum is how many QoS 1/2 messages a client may have sent
	// without the broker's acknowledgement (default 1024, at most 65535);
	// a client over it is disconnected. The broker acknowledges at once, so
	// only a publisher that floods over a slow link comes near it.
	ReceiveMaximum int `yaml:"receive_maximum"`
	// MaxWritesPending bounds the packets queued for writing to one
	// client (default 8192); beyond it the broker drops messages to that
	// client (Stats.MessagesDropped).
	MaxWritesPending int `yaml:"max_client_writes_pending"`
}

// TLSConfig is the listener's TLS material (PEM files).
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, requires every client to present a
	// certificate signed by one of these CAs (mutual TLS).
	ClientCAFile string `yaml:"client_ca_file"`
}

// User is one account of the local broker.
type User struct {
	Username string `yaml:"username"`
	// PasswordHash is a bcrypt hash ("$2a$10$..."); make one with
	// [HashPassword].
	PasswordHash string `yaml:"password_hash"`
	// ACL lists what the user may do. Empty means everything. %u in a topic
	// stands for the username, %c for the client id.
	ACL []ACLRule `yaml:"acl"`
}

// ACLRule grants access to the topics matching a filter.
type ACLRule struct {
	Topic  string `yaml:"topic"`
	Access string `yaml:"access"` // read, write or readwrite
}

// UsersFile is the layout of Config.UsersFile.
type UsersFile struct {
	Users []User `yaml:"users"`
}

// HashPassword returns a bcrypt hash of password for a users file.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("broker: hash password: %w", err)
	}
	return string(h), nil
}

// Defaults fills zero fields (Listen, MaxPacketSize). AllowAnonymous is
// resolved by Validate and New, since it depends on the users file.
func (c *Config) Defaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.MaxPacketSize == 0 {
		c.MaxPacketSize = DefaultMaxPacketSize
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.ReceiveMaximum == 0 {
		c.ReceiveMaximum = DefaultReceiveMaximum
	}
	if c.MaxWritesPending == 0 {
		c.MaxWritesPending = DefaultMaxWritesPending
	}
}

// Validate checks c without reading files (New reads the users file and
// checks it again with its users).
func (c Config) Validate() error {
	return c.validate(false)
}

func (c Config) validate(usersKnown bool) error {
	var errs []error
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		errs = append(errs, ingest.FieldErrorf("listen", "%v", err))
	}
	if c.MaxPacketSize < 0 {
		errs = append(errs, ingest.FieldErrorf("max_packet_size", "must be >= 0"))
	}
	// 0 is the default (Validate may run before Defaults).
	if c.MaxInflight < 0 || c.MaxInflight > 65535 {
		errs = append(errs, ingest.FieldErrorf("max_inflight", "must be between 1 and 65535, got %d", c.MaxInflight))
	}
	if c.ReceiveMaximum < 0 || c.ReceiveMaximum > 65535 {
		errs = append(errs, ingest.FieldErrorf("receive_maximum", "must be between 1 and 65535, got %d", c.ReceiveMaximum))
	}
	if c.MaxWritesPending < 0 || c.MaxWritesPending > 1<<20 {
		errs = append(errs, ingest.FieldErrorf("max_client_writes_pending", "must be between 1 and 1048576, got %d", c.MaxWritesPending))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, ingest.FieldErrorf("tls", "cert_file and key_file go together"))
	}
	if c.TLS.ClientCAFile != "" && c.TLS.CertFile == "" {
		errs = append(errs, ingest.FieldErrorf("tls.client_ca_file", "needs cert_file and key_file"))
	}
	errs = append(errs, validateUsers("users", c.Users)...)
	hasUsers := len(c.Users) > 0 || c.UsersFile != ""
	if usersKnown {
		hasUsers = len(c.Users) > 0
	}
	if err == nil && !isLoopback(host) {
		if c.AllowAnonymous != nil && *c.AllowAnonymous {
			errs = append(errs, ingest.FieldErrorf("allow_anonymous", "refused on the non-loopback address %s: field nodes must authenticate", c.Listen))
		}
		if !hasUsers {
			errs = append(errs, ingest.FieldErrorf("users", "required when listening on the non-loopback address %s (or listen on 127.0.0.1)", c.Listen))
		}
	}
	return errors.Join(errs...)
}

func validateUsers(path string, users []User) []error {
	var errs []error
	seen := map[string]bool{}
	for i, u := range users {
		p := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case u.Username == "":
			errs = append(errs, ingest.FieldErrorf(p+".username", "required"))
		case strings.HasPrefix(u.Username, "$"):
			errs = append(errs, ingest.FieldErrorf(p+".username", "must not start with $"))
		case seen[u.Username]:
			errs = append(errs, ingest.FieldErrorf(p+".username", "duplicate user %q", u.Username))
		}
		seen[u.Username] = true
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			errs = append(errs, ingest.FieldErrorf(p+".password_hash", "not a bcrypt hash (make one with HashPassword / `sensorgate passwd`)"))
		}
		for j, r := range u.ACL {
			rp := fmt.Sprintf("%s.acl[%d]", p, j)
			if err := mqttnet.ValidFilter(r.Topic); err != nil {
				errs = append(errs, ingest.FieldErrorf(rp+".topic", "%v", err))
			}
			switch r.Access {
			case AccessRead, AccessWrite, AccessReadWrite:
			default:
				errs = append(errs, ingest.FieldErrorf(rp+".access", "must be read, write or readwrite, not %q", r.Access))
			}
		}
	}
	return errs
}

// loadUsers reads the users file.
func loadUsers(path string) ([]User, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("broker: users_file: %w", err)
	}
	var f UsersFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("broker: users_file %s: %w", path, err)
	}
	if errs := validateUsers("users", f.Users); len(errs) > 0 {
		return nil, fmt.Errorf("broker: users_file %s: %w", path, errors.Join(errs...))
	}
	return f.Users, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
