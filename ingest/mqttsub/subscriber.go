package mqttsub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/decode"
	"github.com/sensorgate/sensorgate/internal/backoff"
	"github.com/sensorgate/sensorgate/internal/lograte"
	"github.com/sensorgate/sensorgate/internal/mqttnet"
	"github.com/sensorgate/sensorgate/internal/secret"
)

// ErrRunning is returned by Run when the Subscriber is already running.
var ErrRunning = errors.New("mqttsub: already running")

// ReasonNoSubscription counts messages whose topic matched none of the
// configured filters (the broker sent something we did not ask for).
const ReasonNoSubscription = "no_subscription"

// Options are the run-time dependencies of a Subscriber.
type Options struct {
	// Logger receives connection events and rate-limited decode errors;
	// nil discards.
	Logger *slog.Logger
	// Now is the clock for arrival times; nil means time.Now.
	Now func() time.Time
	// State, when set, is where New finds which messages were already
	// committed (the Key/Value of earlier receipts: StatePrefix(client_id)
	// followed by a packet id); cmd passes buffer.Outbox.LoadState. nil
	// starts with none: a redelivery of a message committed by an earlier
	// process is then counted again.
	State func(prefix []byte, fn func(key, value []byte) error) error
}

// Stats is a snapshot of a Subscriber's counters.
type Stats struct {
	Received uint64 // messages handed to us by paho
	Readings uint64 // readings sent on out
	// DecodeErrors counts messages (not readings) by reason: the
	// decode.Reasons (too_large included) and no_subscription.
	DecodeErrors map[string]uint64
	// Dropped counts QoS 0 messages dropped because the hand-off queue was
	// full: the one place this source drops data.
	Dropped uint64
	// Held counts QoS 1/2 messages for which paho's goroutine had to wait
	// for room in the queue (back-pressure, nothing lost).
	Held uint64
	// DurableAcked counts durable QoS 1/2 messages acknowledged after the
	// commit of their receipt.
	DurableAcked uint64
	// PendingAcks is the number of durable messages waiting for the commit
	// of their receipt now (a gauge).
	PendingAcks int64
	// AckFailures counts receipts completed with an error (the engine gave
	// up committing): the message and those after it are left
	// unacknowledged and the connection is cut, so that the broker
	// delivers them again.
	AckFailures uint64
	// Redelivered counts messages the broker delivered again (DUP) that
	// were recognised as already committed: acknowledged, not handed on.
	Redelivered       uint64
	Queued            int  // messages waiting in the hand-off queue now
	Connected         bool // connected to the broker now
	Connects          uint64
	Reconnects        uint64 // connections after the first
	ConnectFailures   uint64
	SubscribeFailures uint64 // filters the broker refused
	Subscribed        uint64 // SUBACKs received: one per connection that subscribed
	LastError         string // last connection or subscription error, "" if none
}

type decoder interface {
	Decode(topic string, payload []byte, arrival int64, out []ingest.Reading) ([]ingest.Reading, error)
}

// senmlCBOR adapts the SenML decoder's CBOR entry point to decoder.
type senmlCBOR struct{ *decode.SenMLDecoder }

func (s senmlCBOR) Decode(topic string, payload []byte, arrival int64, out []ingest.Reading) ([]ingest.Reading, error) {
	return s.DecodeCBOR(topic, payload, arrival, out)
}

type subscription struct {
	filter  string
	qos     byte
	dec     decoder
	durable bool
}

type item struct {
	msg     mqtt.Message
	arrival int64
}

// Subscriber is an MQTT source: it connects to one broker, subscribes to
// the configured filters and turns messages into readings.
type Subscriber struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	url      *url.URL
	secret   secret.Source
	password atomic.Pointer[string] // the last password read
	tls      *tls.Config
	subs     []subscription

	running atomic.Bool
	queue   atomic.Pointer[chan item] // the current Run's queue, for Stats

	received, readings, dropped, held atomic.Uint64
	// queuedBytes is the payload bytes in the hand-off queue (QueueBytes).
	queuedBytes               atomic.Int64
	durableAcked, ackFailures atomic.Uint64
	redelivered               atomic.Uint64
	connects, connectFailures atomic.Uint64
	subscribeFailures         atomic.Uint64
	subscribed                atomic.Uint64
	connected                 atomic.Bool
	refuse                    atomic.Bool                          // stopping: QoS 1/2 messages are left to the broker
	reasons                   [decode.NumReasons + 1]atomic.Uint64 // + no_subscription
	lastErr                   atomic.Pointer[string]
	lastErrVal                atomic.Pointer[error]

	// The durable path (acks.go): receipts out now, and a signal when
	// that falls to zero; the committed messages by packet id; the state
	// key prefix; the receipt of durable QoS 0 messages (nothing to
	// acknowledge, so one for all).
	pending     atomic.Int64
	settled     chan struct{}
	seen        seenTable
	keyPrefix   []byte
	qos0Receipt ingest.Receipt
	// settleLogEvery replaces settleLogAfter in tests.
	settleLogEvery time.Duration

	dropLog, decodeLog, connLog, secretLog, ackFailLog lograte.Limiter
}

// New checks cfg (after applying Defaults to a copy), reads the password
// (again at every connect: see password) and the TLS material, compiles
// the decoders and, with a durable QoS 1/2 subscription and Options.State,
// loads the messages committed by earlier runs. It does not connect.
func New(cfg Config, opts Options) (*Subscriber, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mqttsub: config: %w", err)
	}
	s := &Subscriber{cfg: cfg, log: opts.Logger, now: opts.Now,
		settled: make(chan struct{}, 1), keyPrefix: StatePrefix(cfg.ClientID)}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.url, _ = brokerURL(cfg.Broker)
	s.secret = cfg.password()
	pw, err := s.secret.Read()
	if err != nil {
		return nil, fmt.Errorf("mqttsub: %w", err)
	}
	s.password.Store(&pw)
	if mqttnet.TLSScheme(s.url.Scheme) || cfg.TLS.IsSet() {
		tc, err := cfg.TLS.Build(s.url.Hostname())
		if err != nil {
			return nil, fmt.Errorf("mqttsub: %w", err)
		}
		s.tls = tc
	}
	for i, sub := range cfg.Subscriptions {
		var d decoder
		switch sub.Format {
		case FormatJSON:
			jd, err := decode.NewJSON(sub.JSON)
			if err != nil {
				return nil, fmt.Errorf("mqttsub: subscriptions[%d]: %w", i, err)
			}
			d = jd
		case FormatSenML:
			sd, err := decode.NewSenML(sub.SenML)
			if err != nil {
				return nil, fmt.Errorf("mqttsub: subscriptions[%d]: %w", i, err)
			}
			d = sd
		case FormatSenMLCBOR:
			sd, err := decode.NewSenML(sub.SenML)
			if err != nil {
				return nil, fmt.Errorf("mqttsub: subscriptions[%d]: %w", i, err)
			}
			d = senmlCBOR{sd}
		case FormatMsgpack:
			d = decode.NewMsgpack(sub.Msgpack)
		case FormatNumber:
			nd, err := decode.NewNumber(sub.Number)
			if err != nil {
				return nil, fmt.Errorf("mqttsub: subscriptions[%d]: %w", i, err)
			}
			d = nd
		}
		s.subs = append(s.subs, subscription{filter: sub.Topic, qos: sub.QoS, dec: d, durable: sub.IsDurable()})
	}
	if opts.State != nil && cfg.HoldsAcks() {
		if err := s.loadSeen(opts.State); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// currentPassword re-reads the password for a connection attempt, so that
// a rotated password file or variable is used without a restart. When it
// cannot be read the last one read is used, and the failure is recorded
// and logged (rate-limited; the error never holds the password).
func (s *Subscriber) currentPassword() string {
	pw, err := s.secret.Read()
	if err != nil {
		s.setErr(fmt.Errorf("mqttsub: %w", err))
		if s.secretLog.Allow() {
			s.log.Error("mqttsub: cannot read the password, using the last one read", "broker", s.cfg.Broker, "err", err)
		}
		return *s.password.Load()
	}
	s.password.Store(&pw)
	return pw
}

// Stats returns a snapshot of the counters.
func (s *Subscriber) Stats() Stats {
	st := Stats{
		Received:          s.received.Load(),
		Readings:          s.readings.Load(),
		Dropped:           s.dropped.Load(),
		Held:              s.held.Load(),
		DurableAcked:      s.durableAcked.Load(),
		PendingAcks:       s.pending.Load(),
		AckFailures:       s.ackFailures.Load(),
		Redelivered:       s.redelivered.Load(),
		Connected:         s.connected.Load(),
		Connects:          s.connects.Load(),
		ConnectFailures:   s.connectFailures.Load(),
		SubscribeFailures: s.subscribeFailures.Load(),
		Subscribed:        s.subscribed.Load(),
		DecodeErrors:      make(map[string]uint64, len(s.reasons)),
	}
	if st.Connects > 1 {
		st.Reconnects = st.Connects - 1
	}
	for i, r := range decode.Reasons() {
		st.DecodeErrors[r] = s.reasons[i].Load()
	}
	st.DecodeErrors[ReasonNoSubscription] = s.reasons[decode.NumReasons].Load()
	if q := s.queue.Load(); q != nil {
		st.Queued = len(*q)
	}
	if e := s.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	return st
}

// LastError returns the last connection or subscription error (wrapping
// paho's error values, e.g. packets.ErrorRefusedBadUsernameOrPassword), or
// nil.
func (s *Subscriber) LastError() error {
	if e := s.lastErrVal.Load(); e != nil {
		return *e
	}
	return nil
}

func (s *Subscriber) setErr(err error) {
	msg := err.Error()
	s.lastErr.Store(&msg)
	s.lastErrVal.Store(&err)
}

func (s *Subscriber) count(reason string) {
	if i := decode.ReasonIndex(reason); i >= 0 {
		s.reasons[i].Add(1)
		return
	}
	s.reasons[decode.NumReasons].Add(1)
}

// Run connects (retrying until the broker answers), subscribes on every
// (re)connection, and sends readings on out until ctx is cancelled; then it
// disconnects and returns nil. Connection problems are logged, counted and
// retried with jittered exponential backoff (1s doubling up to
// max_reconnect_interval), never returned. With a persistent session it
// connects again only once every receipt it handed out was settled (see
// the package documentation, Redelivery); a stop does not wait for them:
// what is committed when Run returns is acknowledged, the rest is left to
// the broker's redelivery.
//
// Reconnection is driven here rather than by paho's AutoReconnect and
// ConnectRetry, whose backoff sleeps cannot be interrupted: this way Run
// stops promptly and leaves no paho goroutine behind.
func (s *Subscriber) Run(ctx context.Context, out chan<- ingest.Reading) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.running.Store(false)

	queue := make(chan item, s.cfg.QueueSize)
	s.queue.Store(&queue)
	stop := make(chan struct{})
	lost := make(chan struct{}, 1)
	// The acknowledgements of the current connection (a new queue per
	// connection: paho drops an Ack for a message of an earlier one). The
	// acker goroutine flushes when a receipt is settled, so that neither
	// the engine nor this loop waits for paho to take an Ack.
	wake, kick := make(chan struct{}, 1), make(chan struct{}, 1)
	acks := newAckQueue(s, wake, kick)
	var current atomic.Pointer[ackQueue]
	current.Store(acks)
	ackerStop, ackerDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ackerDone)
		for {
			select {
			case <-wake:
				current.Load().flush()
			case <-ackerStop:
				return
			}
		}
	}()
	var hooks hookGroup
	dialCtx, cancelDial := context.WithCancel(ctx)
	defer cancelDial()
	var conn mqttnet.LastConn
	client := mqtt.NewClient(s.clientOptions(dialCtx, &conn, queue, stop, lost, &hooks))
	s.log.Info("mqttsub: connecting", "config", s.cfg)
	if *s.cfg.CleanSession && s.cfg.HoldsAcks() {
		s.log.Warn("mqttsub: durable subscriptions with clean_session: true: a message whose commit is pending when a connection ends is lost (the broker forgets it)",
			"broker", s.cfg.Broker, "client_id", s.cfg.ClientID)
	}

	var (
		tok        mqtt.Token
		connecting <-chan struct{}
		retry      *time.Timer
		retryC     <-chan time.Time
		bo         = backoff.Backoff{Min: time.Second, Max: s.cfg.MaxReconnectInterval}
	)
	connect := func() {
		tok = client.Connect()
		connecting = tok.Done()
	}
	schedule := func() {
		retry = time.NewTimer(bo.Next())
		retryC = retry.C
	}
	defer func() {
		// Acknowledge what is committed; what is not stays unacknowledged
		// (a persistent session's broker delivers it again, and what was
		// committed by then is recognised).
		close(ackerStop)
		<-ackerDone
		current.Load().flush()
		close(stop) // unblock a paho handler waiting for queue room
		if retry != nil {
			retry.Stop()
		}
		client.Disconnect(250)
		if connecting != nil { // an attempt in flight: cut it, or it ends within connect_timeout
			conn.Abort()
			// The Disconnect above already turned the attempt into an
			// abort; a second Disconnect here could hit a paho race
			// (Disconnecting reads a nil actionCompleted) and hang.
			select {
			case <-connecting:
			case <-time.After(s.cfg.ConnectTimeout + time.Second):
			}
		}
		hooks.closeAndWait()
		s.connected.Store(false)
		s.log.Info("mqttsub: disconnected", "broker", s.cfg.Broker)
	}()

	// Sends to out outlive ctx by up to drainMax: a stop must not strand a
	// message whose readings are half handed on, nor what is queued (see
	// drain). sendCtx ends drainMax after ctx, or when Run returns.
	sendCtx, cancelSend := context.WithCancel(context.Background())
	defer cancelSend()
	hardStop := time.AfterFunc(time.Duration(math.MaxInt64), cancelSend)
	defer hardStop.Stop()
	defer context.AfterFunc(ctx, func() { hardStop.Reset(drainMax) })()

	buf := make([]ingest.Reading, 0, 64)
	if !s.waitSettled(ctx) { // receipts of an earlier Run
		return nil
	}
	connect()
	for {
		select {
		case <-ctx.Done():
			if s.cfg.HoldsAcks() && !*s.cfg.CleanSession { // see drainQueued
				s.refuse.Store(true)
				s.drainQueued(sendCtx, queue, out, buf, acks)
				return nil
			}
			s.drain(sendCtx, queue, out, buf, acks)
			return nil
		case <-connecting:
			connecting = nil
			if err := tok.Error(); err != nil {
				// Counted and logged by the connection notification handler.
				schedule()
				continue
			}
			bo.Reset()
			if !client.IsConnectionOpen() {
				// Lost again before we got here; its signal may have been
				// ignored while connecting was pending.
				schedule()
			}
		case <-retryC:
			retryC = nil
			// The broker of a persistent session delivers again what was
			// not acknowledged. What the last connection brought must be
			// handed on and its commits settled first, or a redelivery
			// could overtake the commit of its first delivery and count
			// twice.
			var ok bool
			if buf, ok = s.handleQueued(sendCtx, queue, out, buf, acks); !ok || !s.waitSettled(ctx) {
				return nil
			}
			acks.dead.Store(true)
			acks = newAckQueue(s, wake, kick)
			current.Store(acks)
			connect()
		case <-kick:
			// A commit failed: nothing after it may be acknowledged on this
			// connection, and the broker must deliver it again. paho
			// reports the cut as a lost connection.
			conn.Cut()
		case <-lost:
			if connecting == nil && retryC == nil {
				schedule()
			}
		case it := <-queue:
			var ok bool
			if buf, ok = s.handle(sendCtx, it, buf[:0], out, acks); !ok {
				return nil
			}
		}
	}
}

// handleQueued hands on what is in the queue now.
func (s *Subscriber) handleQueued(ctx context.Context, queue chan item, out chan<- ingest.Reading, buf []ingest.Reading, acks *ackQueue) ([]ingest.Reading, bool) {
	for {
		select {
		case it := <-queue:
			var ok bool
			if buf, ok = s.handle(ctx, it, buf[:0], out, acks); !ok {
				return buf, false
			}
		default:
			return buf, true
		}
	}
}

// handle decodes one message and sends its readings. A QoS 1/2 message
// takes its place in acks first (receive order); it is acknowledged in its
// turn once its readings were handed on, or, durable, once the receipt on
// its last reading is settled; a message with nothing to hand on at once.
// handle returns false when ctx ended first (the message then stays
// unacknowledged, and so does everything after it).
func (s *Subscriber) handle(ctx context.Context, it item, buf []ingest.Reading, out chan<- ingest.Reading, acks *ackQueue) ([]ingest.Reading, bool) {
	m := it.msg
	topic, payload := m.Topic(), m.Payload()
	s.queuedBytes.Add(-int64(len(payload)))
	var slot *ackSlot
	if m.Qos() > 0 {
		slot = acks.push(m)
	}
	sub := s.match(topic)
	durable := sub != nil && sub.durable
	var hash uint64
	if durable && slot != nil {
		hash = hashOf(topic, payload)
		if !m.Duplicate() {
			s.seen.forget(m.MessageID())
		} else if s.seen.has(m.MessageID(), hash) {
			// Committed before, its PUBACK lost with the connection.
			s.redelivered.Add(1)
			acks.done(slot)
			return buf, true
		}
	}
	var err error
	switch {
	case len(payload) > s.cfg.MaxPayload:
		err = &decode.Error{Format: "mqtt", Reason: decode.ReasonTooLarge, Offset: -1, Skipped: 1,
			Msg: fmt.Sprintf("payload of %d bytes over max_payload %d", len(payload), s.cfg.MaxPayload)}
	case sub == nil:
		s.count(ReasonNoSubscription)
		if s.decodeLog.Allow() {
			s.log.Warn("mqttsub: message on a topic no subscription matches", "topic", topic)
		}
	default:
		buf, err = sub.dec.Decode(topic, payload, it.arrival, buf)
	}
	if err != nil {
		var de *decode.Error
		reason := decode.ReasonMalformed
		if errors.As(err, &de) {
			reason = de.Reason
		}
		s.count(reason)
		if s.decodeLog.Allow() {
			s.log.Warn("mqttsub: bad payload", "topic", topic, "reason", reason, "err", err, "suppressed", s.decodeLog.TakeSuppressed())
		}
	}
	held := durable && len(buf) > 0 // the ack waits for the commit
	if held {
		last := &buf[len(buf)-1]
		if slot != nil {
			last.Receipt = acks.receipt(slot, hash)
		} else {
			last.Receipt = &s.qos0Receipt // nothing to acknowledge: only "commit soon"
		}
		// The engine does not checkpoint inside one message: a message
		// redelivered after a crash is then wholly committed or not at all.
		for i := range len(buf) - 1 {
			buf[i].More = true
		}
	}
	for i := range buf {
		select {
		case out <- buf[i]:
		case <-ctx.Done():
			if held && i > 0 && s.finishMessage(out, buf[i:]) {
				// The pipeline had part of the message: it got the rest, so
				// its last checkpoint holds all of it or none.
				s.readings.Add(uint64(len(buf)))
				clearHeld(buf)
				return buf, false
			}
			s.readings.Add(uint64(i))
			clearHeld(buf)
			if slot != nil {
				acks.abandon(slot)
			}
			return buf, false
		}
	}
	s.readings.Add(uint64(len(buf)))
	if held {
		clearHeld(buf) // buf is reused; the receipt went with the copy
	} else if slot != nil {
		acks.done(slot)
	}
	return buf, true
}

// match returns the first subscription (in config order) whose filter
// matches topic.
func (s *Subscriber) match(topic string) *subscription {
	if len(s.subs) == 1 {
		return &s.subs[0] // the broker only sends what we subscribed to
	}
	for i := range s.subs {
		if mqttnet.MatchFilter(s.subs[i].filter, topic) {
			return &s.subs[i]
		}
	}
	return nil
}

func (s *Subscriber) clientOptions(ctx context.Context, conn *mqttnet.LastConn, queue chan item, stop, lost chan struct{}, hooks *hookGroup) *mqtt.ClientOptions {
	o := mqtt.NewClientOptions()
	o.AddBroker(mqttnet.DefaultPort(s.url).String())
	// With a QoS 1/2 subscription the broker's in-flight window may hold
	// messages back until our PUBACKs arrive; the connection then gives
	// up waiting when waiting does not pay (see mqttnet.Conn.Read).
	windowed := false
	for _, sub := range s.cfg.Subscriptions {
		windowed = windowed || sub.QoS > 0
	}
	// The dialer honours the proxy environment variables like paho's own,
	// wraps the connection in an mqttnet.Conn (buffered, coalesced reads
	// and writes), and aborts a TCP dial when ctx ends, so that Run stops
	// promptly even while an attempt hangs. The TLS files are read again
	// at every attempt, like the password, so renewed certificates are used.
	dial := mqttnet.DialOptions{ReadWait: *s.cfg.ReadCoalesce, Windowed: windowed}
	if s.tls != nil {
		dial.NewTLS = func() (*tls.Config, error) { return s.cfg.TLS.Build(s.url.Hostname()) }
	}
	o.SetCustomOpenConnectionFn(mqttnet.OpenConnection(ctx, dial, conn))
	o.SetClientID(s.cfg.ClientID)
	o.SetCredentialsProvider(func() (string, string) { return s.cfg.Username, s.currentPassword() })
	if s.tls != nil {
		o.SetTLSConfig(s.tls)
	}
	o.SetKeepAlive(s.cfg.KeepAlive)
	o.SetCleanSession(*s.cfg.CleanSession)
	o.SetConnectTimeout(s.cfg.ConnectTimeout)
	o.SetMaxReconnectInterval(s.cfg.MaxReconnectInterval)
	o.SetAutoReconnect(false) // Run reconnects, see there
	o.SetConnectRetry(false)
	o.SetResumeSubs(false) // we subscribe in OnConnect, every time
	o.SetAutoAckDisabled(true)
	o.SetOrderMatters(true) // handler runs on paho's router goroutine and never blocks for long
	o.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { s.onMessage(m, queue, stop) })
	o.SetOnConnectHandler(func(c mqtt.Client) {
		if hooks.enter() {
			defer hooks.leave()
			s.onConnect(c)
		}
	})
	o.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		s.connected.Store(false)
		select {
		case lost <- struct{}{}:
		default:
		}
		s.setErr(fmt.Errorf("mqttsub: connection lost: %w", err))
		s.log.Warn("mqttsub: connection lost, reconnecting", "broker", s.cfg.Broker, "err", err)
	})
	o.SetConnectionNotificationHandler(func(_ mqtt.Client, n mqtt.ConnectionNotification) {
		if f, ok := n.(mqtt.ConnectionNotificationFailed); ok {
			s.connectFailures.Add(1)
			err := fmt.Errorf("mqttsub: connect %s: %w", s.cfg.Broker, f.Reason)
			s.setErr(err)
			if s.connLog.Allow() {
				s.log.Error("mqttsub: cannot connect, retrying", "broker", s.cfg.Broker, "client_id", s.cfg.ClientID,
					"err", f.Reason, "failures", s.connectFailures.Load())
			}
		}
	})
	return o
}

// onMessage runs on paho's router goroutine. QoS 0 messages are dropped
// (and counted) when the queue is full: the one declared drop point. For
// QoS 1/2 the message is not acknowledged until Run has handed its
// readings on, so the broker's in-flight window throttles it; should the
// queue still be full, the handler waits for room (or for Run to stop).
func (s *Subscriber) onMessage(m mqtt.Message, queue chan item, stop chan struct{}) {
	if s.refuse.Load() && m.Qos() > 0 {
		return // stopping: left unacknowledged for the next connect
	}
	s.received.Add(1)
	it := item{msg: m, arrival: s.now().UnixNano()}
	n := int64(len(m.Payload()))
	if m.Qos() == 0 && s.queuedBytes.Load()+n > int64(s.cfg.QueueBytes) {
		s.drop()
		return
	}
	s.queuedBytes.Add(n)
	select {
	case queue <- it:
		return
	default:
	}
	if m.Qos() == 0 {
		s.queuedBytes.Add(-n)
		s.drop()
		return
	}
	s.held.Add(1)
	select {
	case queue <- it:
	case <-stop:
		s.queuedBytes.Add(-n)
	}
}

// drop counts and logs (rate-limited) a QoS 0 message refused by a full
// queue: the one declared drop point of this source.
func (s *Subscriber) drop() {
	s.dropped.Add(1)
	if s.dropLog.Allow() {
		s.log.Warn("mqttsub: queue full, dropping QoS 0 messages", "broker", s.cfg.Broker, "dropped", s.dropped.Load())
	}
}

// onConnect subscribes to every filter. It runs on each connection, so a
// reconnect that lost the session gets its subscriptions back.
func (s *Subscriber) onConnect(c mqtt.Client) {
	s.connects.Add(1)
	s.connected.Store(true)
	filters := make(map[string]byte, len(s.subs))
	for _, sub := range s.subs {
		filters[sub.filter] = sub.qos
	}
	// mochi (the embedded broker, and the tests' broker) refuses a
	// SUBSCRIBE whose packet id equals one of its own in-flight PUBLISHes
	// to us (0x91), which happens on every reconnect of a persistent
	// session while it redelivers: paho's next id is free once those are
	// acknowledged, so try again a few times.
	for attempt := 0; len(filters) > 0; attempt++ {
		tok := c.SubscribeMultiple(filters, nil)
		if !tok.WaitTimeout(s.cfg.ConnectTimeout) {
			s.subscribeFailures.Add(1)
			s.setErr(fmt.Errorf("mqttsub: subscribe: no answer within %s", s.cfg.ConnectTimeout))
			s.log.Error("mqttsub: subscribe timed out", "broker", s.cfg.Broker)
			return
		}
		if err := tok.Error(); err != nil {
			s.subscribeFailures.Add(1)
			s.setErr(fmt.Errorf("mqttsub: subscribe: %w", err))
			s.log.Error("mqttsub: subscribe failed", "broker", s.cfg.Broker, "err", err)
			return
		}
		st, ok := tok.(*mqtt.SubscribeToken)
		if !ok {
			break
		}
		retry := map[string]byte{}
		for topic, code := range st.Result() {
			switch {
			case code == codeIDInUse && attempt < 10 && c.IsConnectionOpen():
				retry[topic] = filters[topic]
			case code >= 0x80:
				s.subscribeFailures.Add(1)
				s.setErr(fmt.Errorf("mqttsub: subscribe %q: refused by broker (code %#x)", topic, code))
				s.log.Error("mqttsub: broker refused subscription", "topic", topic, "code", code)
			}
		}
		filters = retry
		if len(retry) > 0 {
			time.Sleep(100 * time.Millisecond << min(attempt, 4))
		}
	}
	s.subscribed.Add(1)
	s.log.Info("mqttsub: connected and subscribed", "broker", s.cfg.Broker, "topics", len(s.subs), "connects", s.connects.Load())
}

var _ ingest.Source = (*Subscriber)(nil)
