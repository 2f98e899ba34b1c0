package mqttpub

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/internal/mqttnet"
	"github.com/sensorgate/sensorgate/uplink"
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

// Transport publishes to an MQTT broker at QoS 1.
type Transport struct {
	cfg  uplink.Config
	host string // of the URL: the name the server certificate must have
}

var _ uplink.Transport = (*Transport)(nil)

// New returns a transport for cfg (Defaults applied to a copy); it does
// not connect, Session does.
func New(cfg uplink.Config) (*Transport, error) {
	cfg.Defaults()
	if cfg.Type != uplink.TypeMQTT {
		return nil, fmt.Errorf("mqttpub: %s: type %q is not %q", cfg.Name, cfg.Type, uplink.TypeMQTT)
	}
	// TLS files and the password are read at every connect (uplink.New
	// has checked them once already), so there is nothing to build here.
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("mqttpub: %s: url: %w", cfg.Name, err)
	}
	return &Transport{cfg: cfg, host: u.Hostname()}, nil
}

// session is one MQTT connection.
type session struct {
	cfg    uplink.Config
	l      *uplink.Link
	store  *pubackStore
	slots  chan struct{} // one token per message in flight
	acked  chan struct{} // wakes the sender after a PUBACK
	lost   chan struct{}
	once   sync.Once
	reason error

	progressed atomic.Bool
	conn       mqttnet.LastConn
}

func (s *session) end(err error) {
	s.once.Do(func() {
		s.reason = err
		close(s.lost)
	})
}

// closeConn cuts the newest connection (an attempt waiting for a CONNACK,
// or one the watchdog found dead).
func (s *session) closeConn() { s.conn.Abort() }

type presence struct {
	State   string `json:"state"`
	Gateway string `json:"gateway"`
	Uplink  string `json:"uplink"`
	Version string `json:"version,omitempty"`
	Started string `json:"started,omitempty"`
	Time    string `json:"time,omitempty"`
}

func (s *session) presence(state string) []byte {
	p := presence{State: state, Gateway: s.l.Gateway(), Uplink: s.cfg.Name, Version: s.l.Version()}
	if state == "online" {
		p.Started = s.l.Started().UTC().Format(time.RFC3339)
		p.Time = s.l.Now().UTC().Format(time.RFC3339)
	}
	b, _ := json.Marshal(p)
	return b
}

// Session connects once and publishes until the connection ends or ctx
// is done. progressed reports whether any PUBACK arrived.
func (t *Transport) Session(ctx context.Context, l *uplink.Link) (progressed bool, err error) {
	cfg := t.cfg
	s := &session{
		cfg:   cfg,
		l:     l,
		slots: make(chan struct{}, cfg.MaxInflight),
		acked: make(chan struct{}, 1),
		lost:  make(chan struct{}),
	}
	s.store = newPubackStore(func(m *mqttMsg) {
		l.Ack(m.lane, m.seqs...)
		l.InFlight(-len(m.seqs))
		<-s.slots
		s.progressed.Store(true)
		select {
		case s.acked <- struct{}{}:
		default:
		}
	})
	client, statusTopic, err := t.connect(ctx, s)
	if err != nil {
		return false, err
	}

	wdDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.watchdog(wdDone)
	}()

	defer func() {
		close(wdDone)
		wg.Wait()
		unacked := s.store.shutdown()
		n := 0
		for _, m := range unacked {
			n += len(m.seqs)
		}
		l.InFlight(-n)
		if ctx.Err() == nil {
			l.Retried(n) // sent again on the next connection
		}
		l.Disconnected()
		client.Disconnect(250)
		s.closeConn()
		progressed = s.progressed.Load()
	}()

	if statusTopic != "" {
		client.Publish(statusTopic, 1, true, s.presence("online"))
	}
	array := cfg.BatchSize > 1
	for {
		select {
		case <-s.lost:
			return false, s.reason
		case <-ctx.Done():
			s.goodbye(client, statusTopic)
			return false, ctx.Err()
		default:
		}
		ok, err := l.Fill(ctx)
		if err != nil {
			l.CountError()
			l.Logger().Error("outbox read failed", "err", err)
			s.wait(ctx, cfg.PollInterval, false)
			continue
		}
		if !ok {
			s.wait(ctx, cfg.PollInterval, true)
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
		s.send(ctx, client, l.Next(), array)
	}
}

// connect opens s's connection: credentials and TLS files are read anew,
// the last will is the offline presence. It returns the client and the
// status topic ("" when disabled).
func (t *Transport) connect(ctx context.Context, s *session) (paho.Client, string, error) {
	cfg, l := t.cfg, s.l
	// Read at every connect: a rotated password file or renewed
	// certificate is picked up without a restart.
	pw, err := cfg.PasswordSource().Read()
	if err != nil {
		l.ConnectFailed()
		return nil, "", fmt.Errorf("mqttpub: %s: %w", cfg.Name, err)
	}
	var tlsc *tls.Config
	if cfg.TLS.IsSet() {
		if tlsc, err = cfg.TLS.Build(t.host); err != nil {
			l.ConnectFailed()
			return nil, "", fmt.Errorf("mqttpub: %s: %w", cfg.Name, err)
		}
	}
	statusTopic := ""
	if !cfg.DisableStatus {
		statusTopic = l.Render(cfg.StatusTopic)
	}
	writeTimeout := min(cfg.AckTimeout, 10*time.Second)
	o := paho.NewClientOptions().
		AddBroker(cfg.URL).
		SetClientID(l.Render(cfg.ClientID)).
		SetUsername(cfg.Username).
		SetPassword(pw).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(cfg.KeepAlive).
		SetPingTimeout(min(cfg.KeepAlive, cfg.AckTimeout)).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetWriteTimeout(writeTimeout).
		SetStore(s.store).
		SetCustomOpenConnectionFn(mqttnet.OpenConnection(ctx, mqttnet.DialOptions{TLS: tlsc, Timeout: cfg.ConnectTimeout}, &s.conn)).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			s.end(fmt.Errorf("%w: %w", uplink.ErrConnectionLost, err))
		})
	if statusTopic != "" {
		o.SetBinaryWill(statusTopic, s.presence("offline"), 1, true)
	}
	client := paho.NewClient(o)
	tok := client.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		s.closeConn()
		<-tok.Done()
		client.Disconnect(0)
		return nil, "", ctx.Err()
	}
	if err := tok.Error(); err != nil {
		l.ConnectFailed()
		client.Disconnect(0)
		return nil, "", fmt.Errorf("mqttpub: %s: connect %s: %w%s", cfg.Name, redactURL(cfg.URL), err, cfg.TLS.Hint(err))
	}
	l.Connected()
	l.Logger().Info("mqtt connected", "url", redactURL(cfg.URL))
	return client, statusTopic, nil
}

// watchdog ends the session when the oldest PUBACK is overdue (a
// black-holed link can look healthy to TCP for many minutes), until done
// is closed or the session ends.
func (s *session) watchdog(done <-chan struct{}) {
	cfg := s.cfg
	tick := time.NewTicker(max(min(cfg.AckTimeout/4, time.Second), 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-s.lost:
			return
		case <-tick.C:
			if o := s.store.oldest(); o != 0 && time.Now().UnixNano()-o > int64(cfg.AckTimeout) {
				s.end(uplink.ErrAckTimeout)
				s.closeConn()
				return
			}
		}
	}
}

// send publishes batch as one message, holding the in-flight slot the
// caller took: split in halves while it is over max_message_bytes, a single
// record still over it dead-lettered; a failed publish ends the session.
func (s *session) send(ctx context.Context, client paho.Client, batch []uplink.Record, array bool) {
	cfg, l := s.cfg, s.l
	payload := encodeMessage(l, batch, array)
	for cfg.MaxMessageBytes > 0 && len(payload) > cfg.MaxMessageBytes && len(batch) > 1 {
		h := len(batch) / 2
		l.Unread(batch[h:])
		batch = batch[:h]
		payload = encodeMessage(l, batch, array)
	}
	if cfg.MaxMessageBytes > 0 && len(payload) > cfg.MaxMessageBytes {
		<-s.slots
		l.Logger().Warn("record larger than max_message_bytes", "id", batch[0].ID, "bytes", len(payload))
		if err := l.DeadLetter(ctx, &batch[0]); err != nil {
			l.CountError()
			s.end(err) // start over from the oldest unacknowledged record
		}
		return
	}
	m := &mqttMsg{lane: batch[0].Lane, seqs: uplink.Seqs(batch), sent: time.Now().UnixNano()}
	topic := l.Topic(&batch[0])
	l.InFlight(len(batch))
	s.store.arm(m)
	t := client.Publish(topic, 1, false, payload)
	if !s.store.disarm() {
		// Never stored, so never sent: the connection is gone.
		<-s.slots
		l.InFlight(-len(batch))
		<-t.Done()
		s.end(fmt.Errorf("%w: publish: %w", uplink.ErrConnectionLost, t.Error()))
		return
	}
	l.Sent(len(batch), len(payload))
	select {
	case <-t.Done():
		if err := t.Error(); err != nil {
			// Stored but maybe not written (write timeout): only a
			// new connection can tell.
			s.end(fmt.Errorf("%w: publish: %w", uplink.ErrConnectionLost, err))
			s.closeConn()
		}
	default:
	}
}

// encodeMessage encodes batch into a new payload (paho keeps the payload
// until the PUBACK, so it cannot be reused).
func encodeMessage(l *uplink.Link, batch []uplink.Record, array bool) []byte {
	size := 16
	for i := range batch {
		size += 2*len(batch[i].Payload) + 160
	}
	return l.AppendPayload(make([]byte, 0, size), batch, array)
}

// wait waits for new records (when idle), a PUBACK, the end of the
// session, ctx, or d. It reports whether the session and ctx are live.
func (s *session) wait(ctx context.Context, d time.Duration, idle bool) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	var notify <-chan struct{}
	if idle {
		notify = s.l.Wakeup()
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
func (s *session) goodbye(client paho.Client, statusTopic string) {
	deadline := time.NewTimer(min(s.cfg.AckTimeout, 2*time.Second))
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
		t := client.Publish(statusTopic, 1, true, s.presence("offline"))
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
