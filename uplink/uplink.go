package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/internal/backoff"
)

// Outbox is what an uplink needs from the durable outbox; *buffer.Outbox
// satisfies it. Subscribe gives each uplink a wake-up channel of its own
// (with several uplinks on one outbox a shared channel would wake only one
// of them per commit); Append is how records that cannot be delivered for
// good reach buffer.LaneDead.
type Outbox interface {
	Read(lane buffer.Lane, after uint64, max int) ([]buffer.Record, error)
	Ack(lane buffer.Lane, seqs ...uint64) error
	Append(ctx context.Context, lane buffer.Lane, payloads ...[]byte) error
	Subscribe() (<-chan struct{}, func())
}

// Transport is one way of delivering records upstream (uplink/mqttpub,
// uplink/httppost, uplink/stdout). The core owns everything around it:
// reading and decoding the outbox, batching, encoding, topics,
// dead-lettering, acknowledging, the online state, the reconnect backoff
// and the counters, all reached through the [Link].
//
// Session connects once and delivers records from l until the connection
// ends or ctx is done. Records it confirms go to l.Ack; when it returns,
// the core acknowledges them, rewinds to the oldest unacknowledged record
// and, unless ctx is done, waits a backoff (reset when progressed) before
// the next Session. A transport that retries by itself (HTTP) may simply
// not return before ctx is done.
type Transport interface {
	Session(ctx context.Context, l *Link) (progressed bool, err error)
}

// Options are the run-time inputs of an uplink that are not configuration.
type Options struct {
	// Gateway is the gateway id, used in topics, envelopes and presence.
	Gateway string
	// Logger receives connection events and errors; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Version is put into the MQTT birth message.
	Version string
}

// Errors callers may branch on.
var (
	// ErrAckTimeout ends an MQTT connection whose oldest in-flight message
	// saw no PUBACK within Config.AckTimeout.
	ErrAckTimeout = errors.New("uplink: no PUBACK within ack_timeout")
	// ErrConnectionLost is the reason of a session that the broker or the
	// network ended.
	ErrConnectionLost = errors.New("uplink: connection lost")
	// ErrRunning is returned by Run when the uplink is already running.
	ErrRunning = errors.New("uplink: already running")
	// ErrRejected wraps an HTTP status that dead-letters a batch.
	ErrRejected = errors.New("uplink: rejected by upstream")
)

// Stats is a snapshot of an uplink's counters.
type Stats struct {
	// Messages counts MQTT messages / HTTP requests / stdout lines sent,
	// including re-sends.
	Messages uint64
	// Sent counts records sent, including re-sends.
	Sent uint64
	// Bytes counts payload bytes sent (MQTT payloads, HTTP bodies as sent,
	// stdout lines), including re-sends: what the uplink costs on a
	// metered link, before protocol overhead.
	Bytes uint64
	// Acked counts records confirmed upstream and removed from the outbox.
	Acked uint64
	// Retries counts records sent again because an earlier attempt was
	// not confirmed (connection loss, HTTP 5xx/429, timeouts).
	Retries uint64
	// DeadLettered counts records moved to the dead lane (HTTP 4xx, or
	// records that do not decode).
	DeadLettered uint64
	// BadRecords counts records that failed ingest.DecodeRecord (they are
	// also in DeadLettered).
	BadRecords uint64
	// Connects counts successful connections, ConnectFailures failed
	// attempts, Disconnects lost or closed connections.
	Connects        uint64
	ConnectFailures uint64
	Disconnects     uint64
	// Errors counts upstream errors (failed requests, ack failures...).
	Errors uint64
	// InFlight is the number of records sent and not yet confirmed.
	InFlight int64
	// Connected reports whether the uplink is connected (MQTT) or its last
	// request succeeded (HTTP); stdout is always connected while running.
	Connected bool
	// OfflineFor is how long the current outage lasts (0 when connected);
	// OfflineTotal the sum of all outages since Run started.
	OfflineFor   time.Duration
	OfflineTotal time.Duration
	// LastError is the most recent upstream error ("" if none yet), for
	// status pages: a TLS or credentials problem shows up here.
	LastError string
}

type counters struct {
	messages, sent, bytes, acked, retries, dead, bad atomic.Uint64
	connects, connectFailures, disconnects, errors   atomic.Uint64
	inflight                                         atomic.Int64
	connected                                        atomic.Bool
	offlineSince                                     atomic.Int64 // unix ns, 0 when online
	offlineTotal                                     atomic.Int64 // ns
	lastErr                                          atomic.Pointer[string]
}

// setErr records err as the last upstream error.
func (u *Uplink) setErr(err error) {
	if err != nil {
		s := err.Error()
		u.c.lastErr.Store(&s)
	}
}

// Uplink forwards records from an outbox to one upstream.
type Uplink struct {
	cfg   Config
	ob    Outbox
	opts  Options
	log   *slog.Logger
	now   func() time.Time
	lanes []buffer.Lane // served lanes in priority order
	tr    Transport
	enc   encoder
	topic topicTmpl
	// laneTopic holds the rendered topic per lane when the template has
	// no per-record placeholders.
	laneTopic [len(buffer.Lanes)]string
	started   time.Time
	running   atomic.Bool
	// wakeup is this uplink's own subscription to new outbox records.
	wakeup <-chan struct{}
	c      counters
}

// New checks cfg (Defaults is applied to a copy) and returns an uplink
// reading from ob and delivering through tr. It does not connect: Run does.
func New(cfg Config, ob Outbox, tr Transport, opts Options) (*Uplink, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("uplink: %s: invalid config: %w", cfg.Name, err)
	}
	if ob == nil {
		return nil, errors.New("uplink: nil outbox")
	}
	if tr == nil {
		return nil, fmt.Errorf("uplink: %s: nil transport", cfg.Name)
	}
	u := &Uplink{cfg: cfg, ob: ob, tr: tr, opts: opts, log: opts.Logger, now: opts.Now}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	u.log = u.log.With("uplink", cfg.Name)
	if u.now == nil {
		u.now = time.Now
	}
	for _, s := range cfg.Lanes {
		l, _ := buffer.ParseLane(s) // validated
		u.lanes = append(u.lanes, l)
	}
	sort.Slice(u.lanes, func(i, j int) bool { return u.lanes[i] < u.lanes[j] })
	u.enc = encoder{format: cfg.Format, gateway: opts.Gateway} // array is per call: Link.AppendPayload
	u.topic = compileTopic(cfg.Topic)
	if u.topic.fixed {
		for _, l := range buffer.Lanes {
			u.laneTopic[l] = u.topic.render(opts.Gateway, cfg.Name, &Record{Record: buffer.Record{Lane: l}})
		}
	}
	u.started = u.now()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return u, nil
}

// Name returns the configured name.
func (u *Uplink) Name() string { return u.cfg.Name }

// Stats returns a snapshot of the counters.
func (u *Uplink) Stats() Stats {
	s := Stats{
		Messages:        u.c.messages.Load(),
		Sent:            u.c.sent.Load(),
		Bytes:           u.c.bytes.Load(),
		Acked:           u.c.acked.Load(),
		Retries:         u.c.retries.Load(),
		DeadLettered:    u.c.dead.Load(),
		BadRecords:      u.c.bad.Load(),
		Connects:        u.c.connects.Load(),
		ConnectFailures: u.c.connectFailures.Load(),
		Disconnects:     u.c.disconnects.Load(),
		Errors:          u.c.errors.Load(),
		InFlight:        u.c.inflight.Load(),
		Connected:       u.c.connected.Load(),
		OfflineTotal:    time.Duration(u.c.offlineTotal.Load()),
	}
	if e := u.c.lastErr.Load(); e != nil {
		s.LastError = *e
	}
	if since := u.c.offlineSince.Load(); since != 0 {
		s.OfflineFor = time.Duration(u.now().UnixNano() - since)
		if s.OfflineFor < 0 {
			s.OfflineFor = 0
		}
		s.OfflineTotal += s.OfflineFor
	}
	return s
}

func (u *Uplink) setOnline() {
	u.c.connected.Store(true)
	if since := u.c.offlineSince.Swap(0); since != 0 {
		if d := u.now().UnixNano() - since; d > 0 {
			u.c.offlineTotal.Add(d)
		}
	}
}

func (u *Uplink) setOffline() {
	u.c.connected.Store(false)
	u.c.offlineSince.CompareAndSwap(0, u.now().UnixNano())
}

// Run forwards records until ctx is cancelled, then returns nil. Upstream
// failures are retried inside Run, never returned; Run returns an error
// only if it cannot run at all.
func (u *Uplink) Run(ctx context.Context) error {
	if !u.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer u.running.Store(false)
	ch, unsubscribe := u.ob.Subscribe()
	defer unsubscribe()
	u.wakeup = ch
	u.setOffline()
	defer u.setOffline()

	l := &Link{u: u, f: newFeeder(u), ak: newAcker(u)}
	// Acknowledging (an fsync in the outbox) runs beside the sending.
	ackCtx, stopAcker := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); l.ak.run(ackCtx) }()
	defer func() { stopAcker(); wg.Wait() }()

	bo := backoff.Backoff{Min: u.cfg.Backoff.Min, Max: u.cfg.Backoff.Max}
	for {
		progressed, err := u.tr.Session(ctx, l)
		if ctx.Err() == nil {
			u.setErr(err)
		}
		// Everything confirmed so far leaves the outbox before we read it
		// again from the oldest unacknowledged record.
		l.ak.flush()
		l.f.rewind()
		if ctx.Err() != nil {
			return nil
		}
		if progressed {
			bo.Reset()
		}
		d := bo.Next()
		u.log.Warn(u.cfg.Type+" connection ended, reconnecting", "err", err, "in", d.Round(time.Millisecond))
		if !sleep(ctx, d) {
			return nil
		}
	}
}
