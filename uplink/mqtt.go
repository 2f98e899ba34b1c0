package uplink

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/internal/mqttnet"
)

// mqttMsg is one published message: the records it carries.
type mqttMsg struct {
	lane buffer.Lane
	seqs []uint64
	sent int64 // unix ns
}

// pubackStore is the paho Store of one connection. paho puts every
// outgoing QoS 1 PUBLISH into its store and deletes it from there when,
// and only when, the matching PUBACK is read from the network
// (persistInbound in paho's store.go). That Del is the one signal that
// really means "the broker has it": unlike the publish token it is never
// completed by a connection loss or a resume (paho v1.5.1 completes the
// old token without an error when it re-queues an in-flight message).
//
// The sender arms the store with the message it is about to publish; paho
// calls Put synchronously inside Publish, which binds the message to its
// store key. Del of a bound key calls onAck unless the store was shut down.
type pubackStore struct {
	mu     sync.Mutex
	pkts   map[string]packets.ControlPacket
	bound  map[string]*mqttMsg
	next   *mqttMsg
	closed bool
	onAck  func(*mqttMsg)
}

func newPubackStore(onAck func(*mqttMsg)) *pubackStore {
	return &pubackStore{
		pkts:  map[string]packets.ControlPacket{},
		bound: map[string]*mqttMsg{},
		onAck: onAck,
	}
}

func (s *pubackStore) Open()  {}
func (s *pubackStore) Close() {}

func (s *pubackStore) Put(key string, p packets.ControlPacket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pkts[key] = p
	if _, ok := p.(*packets.PublishPacket); ok && s.next != nil && len(key) > 2 && key[:2] == "o." {
		s.bound[key] = s.next
		s.next = nil
	}
}

func (s *pubackStore) Get(key string) packets.ControlPacket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pkts[key]
}

func (s *pubackStore) All() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.pkts))
	for k := range s.pkts {
		keys = append(keys, k)
	}
	return keys
}

func (s *pubackStore) Del(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pkts, key)
	m := s.bound[key]
	if m == nil {
		return
	}
	delete(s.bound, key)
	if !s.closed {
		s.onAck(m)
	}
}

// Reset forgets stored packets (paho calls it when a clean session
// connects, before anything is published). Bound messages stay bound.
func (s *pubackStore) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.pkts)
}

// arm binds the next stored PUBLISH to m.
func (s *pubackStore) arm(m *mqttMsg) {
	s.mu.Lock()
	s.next = m
	s.mu.Unlock()
}

// disarm reports whether the armed message was stored (bound).
func (s *pubackStore) disarm() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	stored := s.next == nil
	s.next = nil
	return stored
}

// shutdown stops acknowledgements and returns the messages still waiting
// for their PUBACK.
func (s *pubackStore) shutdown() []*mqttMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	out := make([]*mqttMsg, 0, len(s.bound))
	for _, m := range s.bound {
		out = append(out, m)
	}
	clear(s.bound)
	return out
}

// oldest returns the send time of the oldest unacknowledged message, 0 if
// there is none.
func (s *pubackStore) oldest() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var o int64
	for _, m := range s.bound {
		if o == 0 || m.sent < o {
			o = m.sent
		}
	}
	return o
}

func (s *pubackStore) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bound)
}

// runMQTT runs connections one after the other until ctx is done.
func (u *Uplink) runMQTT(ctx context.Context) error {
	f := newFeeder(u)
	ak := newAcker(u)
	ackCtx, stopAcker := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); ak.run(ackCtx) }()
	defer func() { stopAcker(); wg.Wait() }()

	bo := backoff{min: u.cfg.Backoff.Min, max: u.cfg.Backoff.Max}
	for {
		progressed, err := u.mqttSession(ctx, f, ak)
		if ctx.Err() == nil {
			u.setErr(err)
		}
		// Everything confirmed so far leaves the outbox before we read it
		// again from the oldest unacknowledged record.
		ak.flush()
		f.rewind()
		if ctx.Err() != nil {
			return nil
		}
		if progressed {
			bo.reset()
		}
		d := bo.next()
		u.log.Warn("mqtt connection ended, reconnecting", "err", err, "in", d.Round(time.Millisecond))
		if !sleep(ctx, d) {
			return nil
		}
	}
}

// session is one MQTT connection.
type session struct {
	u      *Uplink
	store  *pubackStore
	slots  chan struct{} // one token per message in flight
	acked  chan struct{} // wakes the sender after a PUBACK
	lost   chan struct{}
	once   sync.Once
	reason error

	progressed atomic.Bool
	connMu     sync.Mutex
	conn       *mqttnet.Conn
}

func (s *session) end(err error) {
	s.once.Do(func() {
		s.reason = err
		close(s.lost)
	})
}

func (s *session) closeConn() {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.conn != nil {
		s.conn.Abort()
	}
}

// dial opens the network connection for paho (tcp, tls, ws, wss), keeping
// it so that the watchdog can close it.
func (s *session) dial(tlsc *tls.Config) paho.OpenConnectionFunc {
	return func(uri *url.URL, _ paho.ClientOptions) (net.Conn, error) {
		timeout := s.u.cfg.ConnectTimeout
		host := uri.Host
		var conn net.Conn
		var err error
		switch uri.Scheme {
		case "ws", "wss":
			d := *uri
			d.User = nil
			var tc *tls.Config
			if uri.Scheme == "wss" {
				tc = tlsc
			}
			conn, err = paho.NewWebsocket(d.String(), tc, timeout, nil, nil)
		case "ssl", "tls", "mqtts":
			if uri.Port() == "" {
				host = net.JoinHostPort(uri.Hostname(), "8883")
			}
			tc := tlsc
			if tc == nil {
				tc = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: tc}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			conn, err = d.DialContext(ctx, "tcp", host)
			cancel()
		default: // tcp, mqtt
			if uri.Port() == "" {
				host = net.JoinHostPort(uri.Hostname(), "1883")
			}
			conn, err = net.DialTimeout("tcp", host, timeout)
		}
		if err != nil {
			return nil, err
		}
		bc := mqttnet.NewConn(conn, 0, false)
		s.connMu.Lock()
		s.conn = bc
		s.connMu.Unlock()
		return bc, nil
	}
}

type presence struct {
	State   string `json:"state"`
	Gateway string `json:"gateway"`
	Uplink  string `json:"uplink"`
	Version string `json:"version,omitempty"`
	Started string `json:"started,omitempty"`
	Time    string `json:"time,omitempty"`
}

func (u *Uplink) presence(state string) []byte {
	p := presence{State: state, Gateway: u.opts.Gateway, Uplink: u.cfg.Name, Version: u.opts.Version}
	if state == "online" {
		p.Started = u.started.UTC().Format(time.RFC3339)
		p.Time = u.now().UTC().Format(time.RFC3339)
	}
	b, _ := json.Marshal(p)
	return b
}

// mqttSession connects once and publishes until the connection ends or ctx
// is done. progressed reports whether any PUBACK arrived.
func (u *Uplink) mqttSession(ctx context.Context, f *feeder, ak *acker) (progressed bool, err error) {
	s := &session{
		u:     u,
		slots: make(chan struct{}, u.cfg.MaxInflight),
		acked: make(chan struct{}, 1),
		lost:  make(chan struct{}),
	}
	s.store = newPubackStore(func(m *mqttMsg) {
		ak.add(m.lane, m.seqs...)
		u.c.inflight.Add(-int64(len(m.seqs)))
		<-s.slots
		s.progressed.Store(true)
		select {
		case s.acked <- struct{}{}:
		default:
		}
	})
	pw, err := u.password()
	if err != nil {
		u.c.connectFailures.Add(1)
		return false, fmt.Errorf("uplink: %s: %w", u.cfg.Name, err)
	}
	tlsc, err := u.tlsConfig()
	if err != nil {
		u.c.connectFailures.Add(1)
		return false, err
	}
	statusTopic := ""
	if !u.cfg.DisableStatus {
		statusTopic = compileTopic(u.cfg.StatusTopic).render(u.opts.Gateway, u.cfg.Name, nil)
	}
	writeTimeout := min(u.cfg.AckTimeout, 10*time.Second)
	o := paho.NewClientOptions().
		AddBroker(u.cfg.URL).
		SetClientID(compileTopic(u.cfg.ClientID).render(u.opts.Gateway, u.cfg.Name, nil)).
		SetUsername(u.cfg.Username).
		SetPassword(pw).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(u.cfg.KeepAlive).
		SetPingTimeout(min(u.cfg.KeepAlive, u.cfg.AckTimeout)).
		SetConnectTimeout(u.cfg.ConnectTimeout).
		SetWriteTimeout(writeTimeout).
		SetStore(s.store).
		SetCustomOpenConnectionFn(s.dial(tlsc)).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			s.end(fmt.Errorf("%w: %w", ErrConnectionLost, err))
		})
	if statusTopic != "" {
		o.SetBinaryWill(statusTopic, u.presence("offline"), 1, true)
	}
	client := paho.NewClient(o)
	tok := client.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		s.closeConn()
		<-tok.Done()
		client.Disconnect(0)
		return false, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		u.c.connectFailures.Add(1)
		client.Disconnect(0)
		return false, fmt.Errorf("uplink: %s: connect %s: %w%s", u.cfg.Name, redactURL(u.cfg.URL), err, u.tlsHint(err))
	}
	u.c.connects.Add(1)
	u.setOnline()
	u.log.Info("mqtt connected", "url", redactURL(u.cfg.URL))

	// The watchdog closes the connection when a PUBACK is overdue (a
	// black-holed link can look healthy to TCP for many minutes).
	wdDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(max(min(u.cfg.AckTimeout/4, time.Second), 10*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-wdDone:
				return
			case <-s.lost:
				return
			case <-tick.C:
				if o := s.store.oldest(); o != 0 && time.Now().UnixNano()-o > int64(u.cfg.AckTimeout) {
					s.end(ErrAckTimeout)
					s.closeConn()
					return
				}
			}
		}
	}()

	defer func() {
		close(wdDone)
		wg.Wait()
		unacked := s.store.shutdown()
		n := 0
		for _, m := range unacked {
			n += len(m.seqs)
		}
		u.c.inflight.Add(-int64(n))
		if ctx.Err() == nil {
			u.c.retries.Add(uint64(n)) // sent again on the next connection
		}
		u.c.disconnects.Add(1)
		u.setOffline()
		client.Disconnect(250)
		s.closeConn()
		progressed = s.progressed.Load()
	}()

	if statusTopic != "" {
		client.Publish(statusTopic, 1, true, u.presence("online"))
	}
	enc := u.enc
	for {
		select {
		case <-s.lost:
			return false, s.reason
		case <-ctx.Done():
			u.mqttGoodbye(s, client, statusTopic)
			return false, ctx.Err()
		default:
		}
		ok, err := f.fill(ctx)
		if err != nil {
			u.c.errors.Add(1)
			u.log.Error("outbox read failed", "err", err)
			if !u.waitSession(ctx, s, u.cfg.PollInterval, false) {
				continue
			}
			continue
		}
		if !ok {
			u.waitSession(ctx, s, u.cfg.PollInterval, true)
			continue
		}
		select {
		case s.slots <- struct{}{}:
		default:
			// Window full: wait for a PUBACK (or the end).
			select {
			case <-s.acked:
			case <-s.lost:
			case <-ctx.Done():
			}
			continue
		}
		batch := f.next()
		payload := u.encodeMessage(&enc, batch)
		for u.cfg.MaxMessageBytes > 0 && len(payload) > u.cfg.MaxMessageBytes && len(batch) > 1 {
			h := len(batch) / 2
			f.unread(batch[h:])
			batch = batch[:h]
			payload = u.encodeMessage(&enc, batch)
		}
		if u.cfg.MaxMessageBytes > 0 && len(payload) > u.cfg.MaxMessageBytes {
			<-s.slots
			u.log.Warn("record larger than max_message_bytes", "id", batch[0].rec.ID, "bytes", len(payload))
			if err := u.deadLetter(ctx, batch[0].rec.Lane, []buffer.Record{batch[0].rec}); err != nil {
				u.c.errors.Add(1)
				s.end(err) // start over from the oldest unacknowledged record
			}
			continue
		}
		m := &mqttMsg{lane: batch[0].rec.Lane, seqs: seqsOf(batch), sent: time.Now().UnixNano()}
		topic := u.topicFor(&batch[0])
		u.c.inflight.Add(int64(len(batch)))
		s.store.arm(m)
		t := client.Publish(topic, 1, false, payload)
		if !s.store.disarm() {
			// Never stored, so never sent: the connection is gone.
			<-s.slots
			u.c.inflight.Add(-int64(len(batch)))
			<-t.Done()
			s.end(fmt.Errorf("%w: publish: %w", ErrConnectionLost, t.Error()))
			continue
		}
		u.c.messages.Add(1)
		u.c.sent.Add(uint64(len(batch)))
		u.c.bytes.Add(uint64(len(payload)))
		select {
		case <-t.Done():
			if err := t.Error(); err != nil {
				// Stored but maybe not written (write timeout): only a
				// new connection can tell.
				s.end(fmt.Errorf("%w: publish: %w", ErrConnectionLost, err))
				s.closeConn()
			}
		default:
		}
	}
}

// encodeMessage encodes batch into a new payload (paho keeps the payload
// until the PUBACK, so it cannot be reused).
func (u *Uplink) encodeMessage(enc *encoder, batch []item) []byte {
	size := 16
	for i := range batch {
		size += itemSize(&batch[i])
	}
	return enc.appendPayload(make([]byte, 0, size), batch)
}

// waitSession waits for new records (when idle), a PUBACK, the end of the
// session, ctx, or d. It reports whether the session and ctx are live.
func (u *Uplink) waitSession(ctx context.Context, s *session, d time.Duration, idle bool) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	var notify <-chan struct{}
	if idle {
		notify = u.wakeup
	}
	select {
	case <-ctx.Done():
		return false
	case <-s.lost:
		return false
	case <-notify:
	case <-s.acked:
	case <-t.C:
	}
	return true
}

// mqttGoodbye runs on shutdown: it waits briefly for outstanding PUBACKs
// (fewer duplicates next time) and clears the presence to offline.
func (u *Uplink) mqttGoodbye(s *session, client paho.Client, statusTopic string) {
	deadline := time.NewTimer(min(u.cfg.AckTimeout, 2*time.Second))
	defer deadline.Stop()
	for s.store.pending() > 0 {
		select {
		case <-s.acked:
		case <-s.lost:
			return
		case <-deadline.C:
			return
		}
	}
	if statusTopic != "" {
		t := client.Publish(statusTopic, 1, true, u.presence("offline"))
		t.WaitTimeout(time.Second)
	}
}

// redactURL drops the password from a URL for logs and errors.
func redactURL(raw string) string {
	pu, err := url.Parse(raw)
	if err != nil {
		return "(invalid url)"
	}
	return pu.Redacted()
}
