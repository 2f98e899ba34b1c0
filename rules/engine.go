package rules

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/rules/window"
)

// DefaultTick is how often Run advances the watermarks of idle keys when
// Options.Tick is nil.
const DefaultTick = 500 * time.Millisecond

// ErrRunning is returned by Run when the engine is already running.
var ErrRunning = errors.New("rules: engine already running")

// Options are the run-time inputs of an Engine that are not configuration.
type Options struct {
	// Now is the wall clock; nil means time.Now.
	Now func() time.Time
	// Tick drives the idle watermark advance, the emission of revisions
	// and the clean-up; nil means an internal ticker every DefaultTick.
	// The value received is ignored: Run reads Now on every tick.
	Tick <-chan time.Time
	// Meta returns the static metadata of a sensor (location, tags),
	// attached to its summaries and alerts and used by window group_by. It
	// is called once per sensor and metric, not per reading; the map must
	// not be modified afterwards. nil means none.
	Meta func(sensor string) map[string]string
	// Logger; nil discards.
	Logger *slog.Logger
	// Door builds the engine's door, its first stage (see Door); nil keeps
	// only the finiteness and time-bounds checks.
	Door *Door
	// Commit turns checkpoints on (see Committer, Restore); nil keeps no
	// state store: receipts are completed as soon as their reading is
	// processed, and Run flushes every open window when its input closes.
	// With Tick set, the triggers are checked on ticks and input only.
	Commit *CommitPolicy
}

// Sink receives what the engine emits. Implemented by cmd: it encodes and
// enqueues into the outbox. The pointer is only valid during the call: a
// Sink must not retain it (or its Quantiles, Sketch and Meta).
type Sink interface {
	Summary(ctx context.Context, s *ingest.Summary) error
	Alert(ctx context.Context, a *ingest.Alert) error
}

// Stats are the engine's counters since New.
type Stats struct {
	Readings  uint64 // readings received by Run
	Rejected  uint64 // readings refused by the door (DoorStats) and by range stages
	Filtered  uint64 // dropped by filter, deadband and dedup stages
	Derived   uint64 // readings made by rate and derive stages
	Late      uint64 // late readings dropped (late: drop, or past retention)
	Revised   uint64 // late readings folded into a revised summary
	Summaries uint64 // summaries emitted, revisions included
	Revisions uint64 // summaries emitted with Revision > 0
	Alerts    uint64 // alerts emitted (fire, re-notify and clear)
	// ExprErrors counts expression evaluations that failed at run time
	// (the reading is dropped by a filter, no derived reading is made).
	ExprErrors uint64
	// Overflow counts readings dropped because they would have needed a
	// new route while the engine held Config.MaxRoutes of them (a flood of
	// unknown sensor ids). The only place the engine drops data besides
	// the declared stage, late and validation policies.
	Overflow uint64
	// Capped counts summaries emitted without twa, delta and rate because
	// their window held more than MaxSamples readings.
	Capped uint64

	OpenWindows int64 // open window instances (hopping windows: open panes)
	Keys        int64 // window keys (window rule x sensor or group x metric)
	Routes      int64 // distinct (sensor, metric) routes cached

	// Checkpoints (Options.Commit).
	Checkpoints    uint64 // committed
	CommitErrors   uint64 // Commit calls that failed (retried)
	StateKeys      int64  // keys in the state store, as far as the engine wrote or restored them
	CheckpointKeys int64  // state changes in the last committed checkpoint
	Restored       uint64 // keys loaded by Restore
	StateDropped   uint64 // keys Restore dropped (their rule, stage or alert is gone or changed)
	Pending        int64  // receipts waiting for a checkpoint
}

// Engine runs the stages, alerts and windows of a Config over a stream of
// readings. Create it with New; Run it once at a time.
type Engine struct {
	cfg     Config
	now     func() time.Time
	tickC   <-chan time.Time
	door    *door
	meta    func(string) map[string]string
	log     *slog.Logger
	alerts  *alertSet
	chain   *stageChain // the stages and their state
	windows []*window.Rule
	win     *window.Keyed // the keyed windows and their state
	ck      *checkpointer // nil: no checkpoints

	running  atomic.Bool
	handover atomic.Bool // PrepareHandover: no flush when the input closes

	// State owned by the Run goroutine.
	routes    map[routeKey]*route
	flushHook func(Sink) // tests: called when the flush begins
	lastTick  int64
	lastSweep int64
	pinUntil  int64 // restored window keys are pinned until then (window.Keyed.Unpin)

	readings atomic.Uint64
	rejected atomic.Uint64
	overflow atomic.Uint64
	nroutes  atomic.Int64
}

// New compiles cfg (which must have been defaulted and validated; New
// validates again and returns that error).
func New(cfg Config, opts Options) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("rules: invalid config: %w", err)
	}
	if cfg.MaxRoutes == 0 {
		cfg.MaxRoutes = DefaultMaxRoutes
	}
	if cfg.KeyTTL == 0 {
		cfg.KeyTTL = DefaultKeyTTL
	}
	e := &Engine{
		cfg:    cfg,
		now:    opts.Now,
		tickC:  opts.Tick,
		meta:   opts.Meta,
		log:    opts.Logger,
		routes: map[routeKey]*route{},
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d, err := newDoor(opts.Door, e.log)
	if err != nil {
		return nil, err
	}
	e.door = d
	e.alerts = newAlertSet(cfg.Alerts)
	if e.chain, err = newStageChain(cfg.Stages, e, e.log); err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	for i, w := range cfg.Windows {
		e.windows = append(e.windows, window.Compile(i, w))
	}
	e.win = window.NewKeyed(e.now)
	if opts.Commit != nil {
		e.ck = newCheckpointer(*opts.Commit)
		e.win.Track()
		e.chain.routeCk.On, e.chain.deriveCk.On, e.alerts.ck.On = true, true, true
	}
	return e, nil
}

// emitter is where a Run (or an Adopt) sends what the engine emits: the
// context and the sink of that call, passed down the path of a reading
// rather than kept in the Engine.
type emitter struct {
	ctx     context.Context
	sink    Sink
	summary window.Emit // sink.Summary with ctx, made once per Run
}

func newEmitter(ctx context.Context, sink Sink) *emitter {
	return &emitter{ctx: ctx, sink: sink, summary: func(s *ingest.Summary) error { return sink.Summary(ctx, s) }}
}

// Stats returns the counters. Safe to call from any goroutine.
func (e *Engine) Stats() Stats {
	ws := e.win.Stats()
	s := Stats{
		Readings:    e.readings.Load(),
		Rejected:    e.rejected.Load(),
		Filtered:    e.chain.filtered.Load(),
		Derived:     e.chain.derived.Load(),
		Late:        ws.Late,
		Revised:     ws.Revised,
		Summaries:   ws.Summaries,
		Revisions:   ws.Revisions,
		Alerts:      e.alerts.sent.Load(),
		ExprErrors:  e.chain.exprErrors.Load(),
		Overflow:    e.overflow.Load(),
		Capped:      ws.Capped,
		OpenWindows: ws.OpenWindows,
		Keys:        ws.Keys,
		Routes:      e.nroutes.Load(),
	}
	if ck := e.ck; ck != nil {
		s.Checkpoints, s.CommitErrors, s.Restored, s.StateDropped = ck.checkpoints.Load(), ck.commitErrors.Load(), ck.restored.Load(), ck.dropped.Load()
		s.StateKeys, s.CheckpointKeys, s.Pending = ck.stateKeys.Load(), ck.lastKeys.Load(), ck.npending.Load()
	}
	return s
}

// DoorStats returns the door's counters. Safe to call from any goroutine.
func (e *Engine) DoorStats() DoorStats { return e.door.stats() }

// Run processes readings until in is closed, then flushes every open window
// (and pending revision) to sink and returns nil. Cancelling ctx is a hard
// stop: Run returns ctx.Err() without flushing. An error from sink stops Run
// and is returned (wrapped). The engine keeps its state between runs.
//
// With Options.Commit, Run checkpoints by the policy (see Committer) and,
// when in closes, makes a Final checkpoint (flushing first only with
// FlushOnClose); the sink must be a Committer. Receipts not yet committed
// when Run returns are completed with its error.
func (e *Engine) Run(ctx context.Context, in <-chan ingest.Reading, sink Sink) (err error) {
	if !e.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer e.running.Store(false)
	if _, ok := sink.(Committer); e.ck != nil && !ok {
		return ErrNoCommitter
	}
	defer func() {
		if e.ck != nil && len(e.ck.pending) > 0 {
			cause := err
			if cause == nil {
				cause = errors.New("rules: Run ended before a checkpoint")
			}
			e.abandon(cause)
		}
	}()
	em := newEmitter(ctx, sink)
	if e.door.clock != nil {
		wctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); e.door.watch(wctx) }()
		defer func() { stop(); <-done }()
	}
	tick := e.tickC
	if tick == nil {
		t := time.NewTicker(DefaultTick)
		defer t.Stop()
		tick = t.C
	}
	if e.lastTick == 0 {
		e.lastTick = e.now().UnixNano()
	}
	var timer *time.Timer // checkpoint triggers between ticks (not with Options.Tick)
	var timerC <-chan time.Time
	var armed int64
	if e.ck != nil {
		e.ck.backlog = func() int { return len(in) }
	}
	if e.ck != nil && e.tickC == nil {
		timer = time.NewTimer(time.Hour)
		timer.Stop()
		defer timer.Stop()
		timerC = timer.C
	}
	check := func() error {
		if e.ck == nil {
			return nil
		}
		next, err := e.maybeCheckpoint(em)
		if timer != nil && next != 0 && (armed == 0 || next < armed) {
			armed = next
			timer.Reset(time.Duration(next - e.now().UnixNano()))
		}
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timerC:
			armed = 0
			if err := check(); err != nil {
				return err
			}
		case _, ok := <-tick:
			if !ok {
				tick = nil // a closed Options.Tick: no more ticks
				continue
			}
			if err := e.tick(em); err != nil {
				return err
			}
			if err := check(); err != nil {
				return err
			}
		case r, ok := <-in:
			if !ok {
				return e.closed(em)
			}
			if err := e.processReceipt(em, &r); err != nil {
				return err
			}
			// Drain what is queued without going through the full select
			// every time; ctx and tick are seen at the next round.
		drain:
			for range 64 {
				select {
				case r, ok := <-in:
					if !ok {
						return e.closed(em)
					}
					if err := e.processReceipt(em, &r); err != nil {
						return err
					}
				default:
					break drain
				}
			}
			if err := check(); err != nil {
				return err
			}
		}
	}
}

// processReceipt processes r and takes care of its receipt.
func (e *Engine) processReceipt(em *emitter, r *ingest.Reading) error {
	rc, more := r.Receipt, r.More
	err := e.process(em, r)
	if rc != nil {
		e.receipt(rc, err)
	}
	if e.ck == nil {
		return err
	}
	e.ck.midInput = more
	if !more && e.ck.trig.Full(len(e.ck.pending)) && err == nil {
		_, err = e.maybeCheckpoint(em)
		if e.ck.backlog != nil && e.ck.backlog() > 0 {
			e.ck.trig.Backlog()
		}
	}
	return err
}

func (e *Engine) wrapSink(em *emitter, err error) error {
	if err == nil || errors.Is(err, context.Canceled) && em.ctx.Err() != nil {
		return err
	}
	return fmt.Errorf("rules: sink: %w", err)
}

// process runs one reading through the pipeline: route, door, stages,
// alerts, windows.
func (e *Engine) process(em *emitter, r *ingest.Reading) error {
	e.readings.Add(1)
	rt, ok := e.routes[routeKey{r.Sensor, r.Metric, 0}]
	if ok {
		rt.used = e.lastTick
	} else {
		// A new route: the allowlist is asked before anything is kept for
		// the sensor, so unknown ids cannot fill the route cache.
		if !e.door.allows(r.Sensor) {
			e.door.refuse(r)
			e.rejected.Add(1)
			return nil
		}
		if rt = e.routeFor(r.Sensor, r.Metric, 0); rt == nil {
			return nil // over MaxRoutes: counted by routeFor
		}
	}
	if !e.door.check(rt.rng, r) {
		e.reject(rt)
		return nil
	}
	return e.wrapSink(em, e.runRoute(em, rt, r))
}

func (e *Engine) reject(rt *route) {
	e.rejected.Add(1)
	for _, k := range rt.wins {
		e.win.Reject(k)
	}
}

func (e *Engine) runRoute(em *emitter, rt *route, r *ingest.Reading) error {
	for i := range rt.steps {
		keep, err := e.chain.runStep(em, rt, &rt.steps[i], r)
		if err != nil || !keep {
			return err
		}
	}
	r.Sensor, r.Metric = rt.sensor, rt.metric
	for _, a := range rt.alerts {
		if err := e.alerts.check(em, a, r); err != nil {
			return err
		}
	}
	for _, k := range rt.wins {
		if err := e.win.Add(k, r, em.summary); err != nil {
			return err
		}
	}
	return nil
}

// tick advances watermarks by the wall clock, emits pending revisions and
// forgets retained windows past retention.
func (e *Engine) tick(em *emitter) error {
	now := e.now().UnixNano()
	if now < e.lastTick {
		// The wall clock stepped back (NTP step, RTC-less boot): shift the
		// anchors of the idle advance by the step so that it keeps
		// measuring the time that really elapsed. Watermarks never move
		// back, so nothing is emitted twice.
		back := e.lastTick - now
		e.log.Warn("rules: wall clock stepped back", "by", time.Duration(back))
		e.win.ShiftBack(back)
	}
	e.lastTick = now
	if e.pinUntil != 0 && now >= e.pinUntil {
		e.win.Unpin()
		e.pinUntil = 0
	}
	e.chain.tick()
	if err := e.win.Advance(now, em.summary); err != nil {
		return e.wrapSink(em, err)
	}
	if ttl := int64(e.cfg.KeyTTL); now-e.lastSweep >= min(ttl/4, int64(time.Minute)) || now < e.lastSweep {
		e.lastSweep = now
		e.sweep(now - ttl)
	}
	return nil
}

// closed handles the end of the input: flush, unless a handover was
// prepared or checkpoints keep the windows open; then the final
// checkpoint.
func (e *Engine) closed(em *emitter) error {
	if !e.handover.Load() && (e.ck == nil || e.ck.pol.FlushOnClose) {
		if err := e.flush(em); err != nil {
			return err
		}
	}
	if e.ck == nil {
		return nil
	}
	return e.checkpoint(em, true)
}

// PrepareHandover makes Run return nil without flushing when its input
// closes, keeping the open windows for the engine of a reloaded config to
// take over with Adopt. Safe to call from any goroutine, before or while
// Run runs.
func (e *Engine) PrepareHandover() { e.handover.Store(true) }

// flush emits every open window and pending revision, in key creation
// order and window start order.
func (e *Engine) flush(em *emitter) error {
	if e.flushHook != nil {
		e.flushHook(em.sink)
	}
	return e.wrapSink(em, e.win.Flush(em.summary))
}
