package uplink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
)

// Outbox is what an uplink needs from the durable outbox; *buffer.Outbox
// satisfies it. If the value also implements [Appender], records that
// cannot be delivered for good are moved to buffer.LaneDead; otherwise they
// are acknowledged and counted as dropped.
type Outbox interface {
	Read(lane buffer.Lane, after uint64, max int) ([]buffer.Record, error)
	Ack(lane buffer.Lane, seqs ...uint64) error
	Notify() <-chan struct{}
}

// subscriber is implemented by an outbox that can wake each consumer
// separately (*buffer.Outbox does); with several uplinks on one outbox,
// Notify's single channel would wake only one of them per commit.
type subscriber interface {
	Subscribe() (<-chan struct{}, func())
}

// Appender is the optional part of an Outbox used for dead-lettering.
type Appender interface {
	Append(ctx context.Context, lane buffer.Lane, payloads ...[]byte) error
}

// Options are the run-time inputs of an uplink that are not configuration.
type Options struct {
	// Gateway is the gateway id, used in topics, envelopes and presence.
	Gateway string
	// Logger receives connection events and errors; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Stdout is where a stdout uplink writes; nil means os.Stdout.
	Stdout io.Writer
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
	// Dropped counts undeliverable records acknowledged without a dead
	// lane (the outbox does not implement Appender).
	Dropped uint64
	// BadRecords counts records that failed ingest.DecodeRecord (they are
	// also in DeadLettered or Dropped).
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
	messages, sent, bytes, acked, retries, dead, dropped, bad atomic.Uint64
	connects, connectFailures, disconnects, errors            atomic.Uint64
	inflight                                                  atomic.Int64
	connected                                                 atomic.Bool
	offlineSince                                              atomic.Int64 // unix ns, 0 when online
	offlineTotal                                              atomic.Int64 // ns
	lastErr                                                   atomic.Pointer[string]
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
	enc   encoder
	topic topicTmpl
	// laneTopic holds the rendered topic per lane when the template has
	// no per-record placeholders.
	laneTopic [len(buffer.Lanes)]string
	started   time.Time
	running   atomic.Bool
	// wakeup is the outbox's signal of new records: a subscription of
	// this uplink's own when the outbox offers one (see subscriber), else
	// the shared Notify channel.
	wakeup <-chan struct{}
	c      counters
}

// New checks cfg (Defaults is applied to a copy) and returns an uplink
// reading from ob. It does not connect: Run does.
func New(cfg Config, ob Outbox, opts Options) (*Uplink, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("uplink: %s: invalid config: %w", cfg.Name, err)
	}
	if ob == nil {
		return nil, errors.New("uplink: nil outbox")
	}
	u := &Uplink{cfg: cfg, ob: ob, opts: opts, log: opts.Logger, now: opts.Now}
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
	u.enc = encoder{format: cfg.Format, gateway: opts.Gateway, array: cfg.BatchSize > 1 || cfg.Type == TypeHTTP}
	u.topic = compileTopic(cfg.Topic)
	if u.topic.fixed {
		for _, l := range buffer.Lanes {
			u.laneTopic[l] = u.topic.render(opts.Gateway, cfg.Name, &item{rec: buffer.Record{Lane: l}})
		}
	}
	u.started = u.now()
	if cfg.TLS.enabled() {
		if _, err := u.tlsConfig(); err != nil {
			return nil, err
		}
	}
	if err := u.checkSecrets(); err != nil {
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
		Dropped:         u.c.dropped.Load(),
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
	if s, ok := u.ob.(subscriber); ok {
		ch, cancel := s.Subscribe()
		defer cancel()
		u.wakeup = ch
	} else {
		u.wakeup = u.ob.Notify()
	}
	u.setOffline()
	defer u.setOffline()
	switch u.cfg.Type {
	case TypeStdout:
		return u.runStdout(ctx)
	case TypeMQTT:
		return u.runMQTT(ctx)
	case TypeHTTP:
		return u.runHTTP(ctx)
	}
	return fmt.Errorf("uplink: unknown type %q", u.cfg.Type)
}

// topicFor returns the MQTT topic of a message starting with it.
func (u *Uplink) topicFor(it *item) string {
	if u.topic.fixed {
		return u.laneTopic[it.rec.Lane]
	}
	return u.topic.render(u.opts.Gateway, u.cfg.Name, it)
}

// ---- reading the outbox ----

// feeder hands out the records of the served lanes in priority order,
// remembering per lane how far it has read.
type feeder struct {
	u     *Uplink
	after [len(buffer.Lanes)]uint64
	queue []item // read, decoded, not yet handed out; all of one lane
	buf   []item // queue's backing array, reused once the queue is empty
	chunk int
}

func newFeeder(u *Uplink) *feeder {
	chunk := max(u.cfg.BatchSize*4, 256)
	if u.cfg.Type == TypeMQTT {
		chunk = max(chunk, u.cfg.MaxInflight*u.cfg.BatchSize)
	}
	return &feeder{u: u, chunk: min(chunk, 8192)}
}

// rewind makes the feeder start again from the oldest record of every
// lane that is still in the outbox (everything not acknowledged).
func (f *feeder) rewind() {
	f.after = [len(buffer.Lanes)]uint64{}
	f.queue = nil
}

// fill makes sure the queue holds records if the outbox has any, reading
// from the highest-priority lane that has some. Undecodable records are
// dead-lettered here. It reports whether the queue is non-empty.
func (f *feeder) fill(ctx context.Context) (bool, error) {
	if len(f.queue) > 0 {
		return true, nil
	}
	// Every batch handed out before has been encoded by now: reuse.
	clear(f.buf)
	f.queue = f.buf[:0]
	for _, l := range f.u.lanes {
		recs, err := f.u.ob.Read(l, f.after[l], f.chunk)
		if err != nil {
			return false, fmt.Errorf("uplink: read %s: %w", l, err)
		}
		if len(recs) == 0 {
			continue
		}
		var bad []buffer.Record
		for _, r := range recs {
			dec, err := ingest.DecodeRecord(r.Payload)
			if err != nil {
				f.u.log.Warn("undecodable outbox record", "lane", l.String(), "seq", r.Seq, "id", r.ID, "err", err)
				bad = append(bad, r)
				continue
			}
			f.queue = append(f.queue, item{rec: r, dec: dec})
		}
		if len(bad) > 0 {
			f.u.c.bad.Add(uint64(len(bad)))
			if err := f.u.deadLetter(ctx, l, bad); err != nil {
				f.queue = f.queue[:0]
				return false, err
			}
		}
		f.after[l] = recs[len(recs)-1].Seq
		if cap(f.queue) > cap(f.buf) {
			f.buf = f.queue[:cap(f.queue)]
		}
		if len(f.queue) > 0 {
			return true, nil
		}
	}
	return false, nil
}

// next removes and returns the next batch: consecutive records of one lane
// with the same topic, at most BatchSize of them and (unless a single one
// is larger) at most BatchBytes.
func (f *feeder) next() []item {
	if len(f.queue) == 0 {
		return nil
	}
	n, size := 1, itemSize(&f.queue[0])
	var topic0 string
	perRecord := f.u.cfg.Type == TypeMQTT && !f.u.topic.fixed
	if perRecord {
		topic0 = f.u.topic.render(f.u.opts.Gateway, f.u.cfg.Name, &f.queue[0])
	}
	for n < len(f.queue) && n < f.u.cfg.BatchSize {
		s := itemSize(&f.queue[n])
		if size+s > f.u.cfg.BatchBytes {
			break
		}
		if perRecord && f.u.topic.render(f.u.opts.Gateway, f.u.cfg.Name, &f.queue[n]) != topic0 {
			break
		}
		size += s
		n++
	}
	batch := f.queue[:n:n]
	f.queue = f.queue[n:]
	return batch
}

// unread puts items back at the front of the queue.
func (f *feeder) unread(items []item) {
	f.queue = append(append(make([]item, 0, len(items)+len(f.queue)), items...), f.queue...)
}

// deadLetter moves recs of lane l to the dead lane (or, without an
// Appender, drops them), acknowledging them in l. Counted.
func (u *Uplink) deadLetter(ctx context.Context, l buffer.Lane, recs []buffer.Record) error {
	seqs := make([]uint64, len(recs))
	for i, r := range recs {
		seqs[i] = r.Seq
	}
	if a, ok := u.ob.(Appender); ok {
		payloads := make([][]byte, len(recs))
		for i, r := range recs {
			payloads[i] = r.Payload
		}
		if err := a.Append(ctx, buffer.LaneDead, payloads...); err != nil {
			u.c.errors.Add(1)
			return fmt.Errorf("uplink: dead-letter %d records of %s: %w", len(recs), l, err)
		}
		if err := u.ob.Ack(l, seqs...); err != nil {
			u.c.errors.Add(1)
			return fmt.Errorf("uplink: ack dead-lettered records of %s: %w", l, err)
		}
		u.c.dead.Add(uint64(len(recs)))
		u.log.Warn("records moved to the dead lane", "lane", l.String(), "count", len(recs), "first_id", recs[0].ID)
		return nil
	}
	if err := u.ob.Ack(l, seqs...); err != nil {
		u.c.errors.Add(1)
		return fmt.Errorf("uplink: ack dropped records of %s: %w", l, err)
	}
	u.c.dropped.Add(uint64(len(recs)))
	u.log.Warn("undeliverable records dropped (outbox has no dead lane)", "lane", l.String(), "count", len(recs), "first_id", recs[0].ID)
	return nil
}

// ---- acknowledging ----

// acker collects confirmed records and acknowledges them in the outbox in
// groups, off the sending path.
type acker struct {
	u       *Uplink
	mu      sync.Mutex
	pending [len(buffer.Lanes)][]uint64
	wake    chan struct{}
	ackMu   sync.Mutex // serialises flushes
	spare   [len(buffer.Lanes)][]uint64
}

func newAcker(u *Uplink) *acker {
	return &acker{u: u, wake: make(chan struct{}, 1)}
}

// add queues seqs of lane l for acknowledgement. It never blocks.
func (a *acker) add(l buffer.Lane, seqs ...uint64) {
	a.mu.Lock()
	a.pending[l] = append(a.pending[l], seqs...)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// backlog returns how many records wait for acknowledgement.
func (a *acker) backlog() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, p := range a.pending {
		n += len(p)
	}
	return n
}

// flush acknowledges everything queued so far; when it returns, every
// record passed to add before the call is acknowledged (or failed).
func (a *acker) flush() {
	a.ackMu.Lock()
	defer a.ackMu.Unlock()
	a.mu.Lock()
	a.pending, a.spare = a.spare, a.pending
	a.mu.Unlock()
	for l := range a.spare {
		seqs := a.spare[l]
		if len(seqs) == 0 {
			continue
		}
		if err := a.u.ob.Ack(buffer.Lane(l), seqs...); err != nil {
			// The records stay in the outbox and are sent again later:
			// a duplicate, never a loss.
			a.u.c.errors.Add(1)
			a.u.log.Error("outbox ack failed", "lane", buffer.Lane(l).String(), "count", len(seqs), "err", err)
		} else {
			a.u.c.acked.Add(uint64(len(seqs)))
		}
		a.spare[l] = seqs[:0]
	}
}

// run flushes whenever records are added, until ctx is done; then it
// flushes one last time.
func (a *acker) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			a.flush()
			return
		case <-a.wake:
			a.flush()
		}
	}
}

// ---- waiting and backoff ----

type backoff struct {
	min, max, cur time.Duration
}

// next returns the next delay: doubling from min to max, jittered to a
// random value in [d/2, d].
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur *= 2
		if b.cur > b.max {
			b.cur = b.max
		}
	}
	half := b.cur / 2
	return half + rand.N(b.cur-half+1)
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// waitData blocks until the outbox signals new records, PollInterval
// passes, or ctx is done; it reports whether ctx is still live.
func (u *Uplink) waitData(ctx context.Context) bool {
	t := time.NewTimer(u.cfg.PollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-u.wakeup:
	case <-t.C:
	}
	return true
}

func seqsOf(items []item) []uint64 {
	s := make([]uint64, len(items))
	for i := range items {
		s[i] = items[i].rec.Seq
	}
	return s
}
