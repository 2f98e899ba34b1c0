package mqtttest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// BrokerOptions configures StartBroker. The zero value is an anonymous
// plain-TCP broker on 127.0.0.1 with a port the kernel picks.
type BrokerOptions struct {
	// Addr is the listen address; "" is 127.0.0.1:0 (a websocket listener
	// cannot report the port it bound, so there "" picks a free port first).
	Addr string
	// Ledger, when set, authenticates and authorises clients; nil allows all.
	Ledger *auth.Ledger
	// TLS, when set, makes the listener TLS (URL scheme ssl://).
	TLS *tls.Config
	// Websocket makes the listener MQTT over websocket (ws://, or wss://
	// with TLS).
	Websocket bool
	// Logger receives mochi's log; nil discards it.
	Logger *slog.Logger
	// Options, when set, is passed to mochi (InlineClient and Logger are
	// forced); use it for capabilities such as a maximum inflight.
	Options *mochi.Options
}

// Message is one publish the broker received, as an inline subscriber saw it.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
}

// Broker is an in-process mochi broker that can be stopped and started
// again on the same address.
type Broker struct {
	tb   testing.TB
	opts BrokerOptions
	addr string // fixed after the first start

	mu   sync.Mutex
	srv  *mochi.Server
	subs []inlineSub // re-made at every start, before the listener opens
}

type inlineSub struct {
	filter string
	fn     func(Message)
}

// StartBroker starts a broker and stops it when the test ends.
func StartBroker(tb testing.TB, o BrokerOptions) *Broker {
	tb.Helper()
	b := &Broker{tb: tb, opts: o, addr: o.Addr}
	if b.addr == "" {
		b.addr = "127.0.0.1:0"
		if o.Websocket {
			b.addr = FreeAddr(tb)
		}
	}
	if err := b.start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(b.Stop)
	return b
}

// Addr is the broker's host:port (the same across restarts).
func (b *Broker) Addr() string { return b.addr }

// URL is the address with the scheme a client needs: tcp, ssl, ws or wss.
func (b *Broker) URL() string {
	switch {
	case b.opts.Websocket && b.opts.TLS != nil:
		return "wss://" + b.addr
	case b.opts.Websocket:
		return "ws://" + b.addr
	case b.opts.TLS != nil:
		return "ssl://" + b.addr
	}
	return "tcp://" + b.addr
}

// Server is the running mochi server (nil while stopped), for tests that
// need its Info or inline client directly.
func (b *Broker) Server() *mochi.Server {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.srv
}

// Running reports whether the broker is started.
func (b *Broker) Running() bool { return b.Server() != nil }

// Start starts a stopped broker again on the same address; it is a no-op
// while running.
func (b *Broker) Start() {
	b.tb.Helper()
	if err := b.start(); err != nil {
		b.tb.Fatal(err)
	}
}

// Stop closes the broker and every client connection; it is a no-op when
// stopped.
func (b *Broker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		_ = b.srv.Close()
		b.srv = nil
	}
}

func (b *Broker) start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		return nil
	}
	var mo mochi.Options
	if b.opts.Options != nil {
		mo = *b.opts.Options
	}
	mo.InlineClient = true
	mo.Logger = b.opts.Logger
	if mo.Logger == nil {
		mo.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv := mochi.New(&mo)
	var err error
	if b.opts.Ledger == nil {
		err = srv.AddHook(new(auth.AllowHook), nil)
	} else {
		err = srv.AddHook(new(auth.Hook), &auth.Options{Ledger: b.opts.Ledger})
	}
	if err != nil {
		return fmt.Errorf("mqtttest: broker hook: %w", err)
	}
	for i, s := range b.subs {
		if err := subscribeInline(srv, s, i+1); err != nil {
			return err
		}
	}
	if err := b.listen(srv); err != nil {
		return err
	}
	if err := srv.Serve(); err != nil {
		return fmt.Errorf("mqtttest: broker serve: %w", err)
	}
	if b.opts.Websocket {
		// The websocket listener binds inside Serve's goroutine and has no
		// ready signal: wait until it accepts.
		if !Poll(10*time.Second, func() bool { return dialOK(b.addr) }) {
			_ = srv.Close()
			return fmt.Errorf("mqtttest: websocket broker on %s does not accept connections", b.addr)
		}
	}
	b.srv = srv
	return nil
}

// listen adds the listener; after a Stop the port can still be held for a
// moment by connections being torn down, so an address in use is retried.
func (b *Broker) listen(srv *mochi.Server) error {
	var err error
	for attempt := 0; attempt < 100; attempt++ {
		cfg := listeners.Config{ID: fmt.Sprintf("mqtttest-%d", attempt), Address: b.addr, TLSConfig: b.opts.TLS}
		if b.opts.Websocket {
			// Binds later, in Serve: start waits until it accepts.
			err = srv.AddListener(listeners.NewWebsocket(cfg))
			break
		}
		l := listeners.NewTCP(cfg)
		if err = srv.AddListener(l); err == nil {
			b.addr = l.Address()
			return nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("mqtttest: broker listen on %s: %w", b.addr, err)
	}
	return nil
}

func dialOK(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func subscribeInline(srv *mochi.Server, s inlineSub, id int) error {
	fn := s.fn
	err := srv.Subscribe(s.filter, id, func(_ *mochi.Client, sub packets.Subscription, pk packets.Packet) {
		fn(Message{Topic: pk.TopicName, Payload: append([]byte(nil), pk.Payload...), QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain})
	})
	if err != nil {
		return fmt.Errorf("mqtttest: inline subscribe %q: %w", s.filter, err)
	}
	return nil
}

// Subscribe calls fn for every message published on filter from now on,
// including after restarts. fn runs on the publishing client's goroutine:
// it must not block.
func (b *Broker) Subscribe(filter string, fn func(Message)) {
	b.tb.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	s := inlineSub{filter, fn}
	b.subs = append(b.subs, s)
	if b.srv != nil {
		if err := subscribeInline(b.srv, s, len(b.subs)); err != nil {
			b.tb.Fatal(err)
		}
	}
}

// Record keeps every message published on filter from now on (across
// restarts).
func (b *Broker) Record(filter string) *Recorder {
	b.tb.Helper()
	r := &Recorder{changed: make(chan struct{})}
	b.Subscribe(filter, r.add)
	return r
}

// Clients is the number of connected clients (0 while stopped).
func (b *Broker) Clients() int64 {
	srv := b.Server()
	if srv == nil {
		return 0
	}
	return srv.Info.Clone().ClientsConnected
}

// Subscriptions is the number of client subscriptions, inline ones
// excluded (0 while stopped).
func (b *Broker) Subscriptions() int64 {
	srv := b.Server()
	if srv == nil {
		return 0
	}
	return srv.Info.Clone().Subscriptions
}

// Publish publishes from the broker's inline client.
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	srv := b.Server()
	if srv == nil {
		return errors.New("mqtttest: publish: broker stopped")
	}
	if err := srv.Publish(topic, payload, retain, qos); err != nil {
		return fmt.Errorf("mqtttest: publish %s: %w", topic, err)
	}
	return nil
}

// Recorder keeps the messages of one inline subscription.
type Recorder struct {
	mu      sync.Mutex
	msgs    []Message
	changed chan struct{} // closed and replaced at every message
}

func (r *Recorder) add(m Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// Messages returns a copy of what was received so far, in arrival order.
func (r *Recorder) Messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...)
}

// Len is the number of messages received so far.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// Changed returns a channel that is closed when the next message arrives.
func (r *Recorder) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// WaitLen waits until at least n messages arrived and returns them; it
// fails tb after timeout.
func (r *Recorder) WaitLen(tb testing.TB, timeout time.Duration, n int) []Message {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		msgs, ch := r.msgs, r.changed
		r.mu.Unlock()
		if len(msgs) >= n {
			return append([]Message(nil), msgs...)
		}
		select {
		case <-ch:
		case <-deadline.C:
			tb.Fatalf("mqtttest: timed out after %v waiting for %d messages, have %d", timeout, n, len(msgs))
		}
	}
}
