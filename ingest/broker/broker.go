package broker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"
)

const (
	publicID   = "public"
	internalID = "internal"
)

// ErrClosed is returned by Run on a Broker that was closed or already ran.
var ErrClosed = errors.New("broker: closed")

// Stats is a snapshot of the broker's counters.
type Stats struct {
	ClientsConnected int64
	MessagesReceived int64
	MessagesSent     int64
	MessagesDropped  int64 // dropped by the broker to slow subscribers (write queue full)
	// InflightDropped counts QoS 1/2 messages dropped because a client
	// already had max_inflight unacknowledged ones.
	InflightDropped int64
	AuthFailures    uint64
	ACLDenied       uint64
}

// Broker is an embedded MQTT broker (mochi-mqtt) that field nodes publish
// to. It listens on the configured address, and on a private loopback
// listener for the gateway's own subscriber (see [Broker.LocalClient]).
type Broker struct {
	cfg      Config
	log      *slog.Logger
	srv      *mochi.Server
	public   *listeners.TCP
	internal *listeners.TCP
	pass     string
	hook     *authHook

	mu      sync.Mutex
	started bool
	closed  bool
}

// New validates cfg (after Defaults on a copy), loads the users file and
// TLS material, and binds the listeners, so that a port already in use is
// reported here. It does not serve until Run.
func New(cfg Config, logger *slog.Logger) (*Broker, error) {
	cfg.Defaults()
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	users := append([]User(nil), cfg.Users...)
	if cfg.UsersFile != "" {
		fu, err := loadUsers(cfg.UsersFile)
		if err != nil {
			return nil, err
		}
		users = append(users, fu...)
	}
	resolved := cfg
	resolved.Users = users
	if err := resolved.validate(true); err != nil {
		return nil, fmt.Errorf("broker: config: %w", err)
	}
	if errs := validateUsers("users", users); len(errs) > 0 {
		return nil, fmt.Errorf("broker: config: %w", errors.Join(errs...))
	}
	anonymous := len(users) == 0
	if cfg.AllowAnonymous != nil {
		anonymous = *cfg.AllowAnonymous
	}

	var secret [24]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, fmt.Errorf("broker: random: %w", err)
	}
	b := &Broker{cfg: cfg, log: logger, pass: hex.EncodeToString(secret[:])}
	b.hook = newAuthHook(users, anonymous, b.pass, logger)

	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(cfg.MaxPacketSize)
	caps.MaximumInflight = uint16(cfg.MaxInflight)
	caps.ReceiveMaximum = uint16(cfg.ReceiveMaximum)
	caps.MaximumClientWritesPending = int32(cfg.MaxWritesPending)
	b.srv = mochi.New(&mochi.Options{
		Capabilities:           caps,
		Logger:                 logger.With("component", "mochi"),
		SysTopicResendInterval: 0,
	})
	if err := b.srv.AddHook(b.hook, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}

	var tc *tls.Config
	if cfg.TLS.CertFile != "" {
		var err error
		if tc, err = cfg.TLS.build(); err != nil {
			return nil, err
		}
	}
	b.public = listeners.NewTCP(listeners.Config{ID: publicID, Address: cfg.Listen, TLSConfig: tc})
	if err := b.srv.AddListener(b.public); err != nil {
		return nil, fmt.Errorf("broker: listen %s: %w", cfg.Listen, err)
	}
	b.internal = listeners.NewTCP(listeners.Config{ID: internalID, Address: "127.0.0.1:0"})
	if err := b.srv.AddListener(b.internal); err != nil {
		b.public.Close(func(string) {})
		return nil, fmt.Errorf("broker: internal listener: %w", err)
	}
	logger.Info("broker: listening", "addr", b.Addr(), "tls", tc != nil, "users", len(users), "anonymous", anonymous)
	return b, nil
}

func (t TLSConfig) build() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("broker: tls: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("broker: tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("broker: tls.client_ca_file: no PEM certificates in %s", t.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// Addr returns the address field nodes connect to (host:port, with the
// actual port when the configured one was 0).
func (b *Broker) Addr() string { return b.public.Address() }

// LocalClient returns what the gateway's own MQTT subscriber uses to read
// from this broker: a plain-TCP URL on a private loopback listener (random
// port) and credentials that are generated at start, valid only on that
// listener, and allowed everything. Field nodes cannot use that listener.
func (b *Broker) LocalClient() (url, username, password string) {
	return "tcp://" + b.internal.Address(), internalUser, b.pass
}

// LocalInFlight is the InFlight the gateway's own source (LocalClient)
// should declare: 1024, or a quarter of max_inflight when that is less.
// mochi sets no in-flight window for an MQTT 3.1.1 subscriber, so the
// value is only the engine's commit trigger: a commit every 1024 waiting
// messages keeps their PUBACKs flowing, and the quarter leaves room for
// what arrives while a commit runs before the broker would drop.
func (b *Broker) LocalInFlight() int {
	return min(1024, max(1, b.cfg.MaxInflight/4))
}

// ReloadUsers reads the users file again (and the inline users) and
// replaces the accounts and ACLs without dropping connections: new logins
// and every later publish or subscribe use the new rules. On error the old
// users stay in force. Meant for SIGHUP.
func (b *Broker) ReloadUsers() error {
	users := append([]User(nil), b.cfg.Users...)
	if b.cfg.UsersFile != "" {
		fu, err := loadUsers(b.cfg.UsersFile)
		if err != nil {
			return err
		}
		users = append(users, fu...)
	}
	if errs := validateUsers("users", users); len(errs) > 0 {
		return fmt.Errorf("broker: users: %w", errors.Join(errs...))
	}
	resolved := b.cfg
	resolved.Users = users
	if err := resolved.validate(true); err != nil {
		return fmt.Errorf("broker: users: %w", err)
	}
	b.hook.setUsers(users)
	b.log.Info("broker: users reloaded", "users", len(users))
	return nil
}

// Stats returns a snapshot of the counters.
func (b *Broker) Stats() Stats {
	info := b.srv.Info.Clone()
	return Stats{
		ClientsConnected: info.ClientsConnected,
		MessagesReceived: info.MessagesReceived,
		MessagesSent:     info.MessagesSent,
		MessagesDropped:  info.MessagesDropped,
		InflightDropped:  info.InflightDropped,
		AuthFailures:     b.hook.authFailures.Load(),
		ACLDenied:        b.hook.aclDenied.Load(),
	}
}

// Run serves until ctx is cancelled, then disconnects every client, closes
// the listeners and returns nil.
func (b *Broker) Run(ctx context.Context) error {
	b.mu.Lock()
	if b.started || b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	b.started = true
	b.mu.Unlock()
	if err := b.srv.Serve(); err != nil {
		b.Close()
		return fmt.Errorf("broker: serve: %w", err)
	}
	<-ctx.Done()
	return b.Close()
}

// Close stops the broker (if Run has not already) and releases the
// listeners. It is safe to call more than once.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if b.started {
		return b.srv.Close()
	}
	// Never served: close the bound listeners ourselves.
	b.public.Close(func(string) {})
	b.internal.Close(func(string) {})
	return nil
}

// authHook authenticates clients and checks topic ACLs.
type authHook struct {
	mochi.HookBase
	users     atomic.Pointer[map[string]*account]
	anonymous bool
	pass      []byte
	log       *slog.Logger
	dummy     []byte // bcrypt hash compared for unknown users (timing)

	authFailures, aclDenied atomic.Uint64
}

type account struct {
	hash []byte
	acl  []ACLRule
	mu   sync.Mutex
	good [sha256.Size]byte // sha256 of the last password that matched: skip bcrypt on reconnects
	ok   bool
}

func newAuthHook(users []User, anonymous bool, pass string, log *slog.Logger) *authHook {
	h := &authHook{anonymous: anonymous, pass: []byte(pass), log: log}
	h.setUsers(users)
	h.dummy, _ = bcrypt.GenerateFromPassword([]byte("no such user"), bcrypt.MinCost)
	return h
}

func (h *authHook) setUsers(users []User) {
	m := make(map[string]*account, len(users))
	for _, u := range users {
		m[u.Username] = &account{hash: []byte(u.PasswordHash), acl: u.ACL}
	}
	h.users.Store(&m)
}

func (h *authHook) user(name string) *account { return (*h.users.Load())[name] }

func (h *authHook) ID() string { return "sensorgate-auth" }

func (h *authHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

func (h *authHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	ok := h.authenticate(cl.Net.Listener, string(pk.Connect.Username), pk.Connect.Password)
	if !ok {
		h.authFailures.Add(1)
		h.log.Warn("broker: authentication failed", "remote", cl.Net.Remote, "username", string(pk.Connect.Username), "client_id", cl.ID)
	}
	return ok
}

func (h *authHook) authenticate(listener, user string, pass []byte) bool {
	if listener == internalID {
		return user == internalUser && subtle.ConstantTimeCompare(pass, h.pass) == 1
	}
	if user == internalUser {
		return false
	}
	if user == "" {
		return h.anonymous
	}
	a := h.user(user)
	if a == nil {
		_ = bcrypt.CompareHashAndPassword(h.dummy, pass)
		return false
	}
	sum := sha256.Sum256(pass)
	a.mu.Lock()
	cached := a.ok && subtle.ConstantTimeCompare(sum[:], a.good[:]) == 1
	a.mu.Unlock()
	if cached {
		return true
	}
	if bcrypt.CompareHashAndPassword(a.hash, pass) != nil {
		return false
	}
	a.mu.Lock()
	a.good, a.ok = sum, true
	a.mu.Unlock()
	return true
}

func (h *authHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	if cl.Net.Listener == internalID || cl.Net.Inline {
		return true
	}
	user := string(cl.Properties.Username)
	a := h.user(user)
	if a == nil {
		// Anonymous (only possible when allowed): no restrictions.
		return user == "" && h.anonymous
	}
	if allowed(a.acl, user, cl.ID, topic, write) {
		return true
	}
	h.aclDenied.Add(1)
	op := "subscribe"
	if write {
		op = "publish"
	}
	h.log.Warn("broker: ACL denied", "username", user, "client_id", cl.ID, "op", op, "topic", topic)
	return false
}

// allowed applies acl: empty allows everything; otherwise a publish topic
// must match a write rule, and a subscription filter must be covered by a
// read rule.
func allowed(acl []ACLRule, user, clientID, topic string, write bool) bool {
	if len(acl) == 0 {
		return true
	}
	for _, r := range acl {
		if write && r.Access == AccessRead || !write && r.Access == AccessWrite {
			continue
		}
		f := r.Topic
		if strings.Contains(f, "%") {
			// A username or client id containing wildcards or slashes must
			// not widen the rule: such identities never match a pattern.
			if strings.ContainsAny(user, "+#/") || strings.ContainsAny(clientID, "+#/") {
				continue
			}
			f = strings.NewReplacer("%u", user, "%c", clientID).Replace(f)
		}
		if covers(f, topic) {
			return true
		}
	}
	return false
}

// covers reports whether every topic matched by filter sub (or the topic
// itself) is matched by filter f.
func covers(f, sub string) bool {
	if strings.HasPrefix(sub, "$share/") {
		if _, rest, ok := strings.Cut(sub[len("$share/"):], "/"); ok {
			sub = rest
		}
	}
	for {
		fl, frest, fmore := strings.Cut(f, "/")
		if fl == "#" {
			return true
		}
		sl, srest, smore := strings.Cut(sub, "/")
		switch {
		case sl == "#":
			return false
		case fl == "+":
			// any single level, including a + in sub
		case fl != sl:
			return false
		}
		if !fmore || !smore {
			return fmore == smore || (!smore && frest == "#")
		}
		f, sub = frest, srest
	}
}
