package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/drivers"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/broker"
	"github.com/sensorgate/sensorgate/ingest/clock"
	"github.com/sensorgate/sensorgate/ingest/mqttsub"
	"github.com/sensorgate/sensorgate/rules"
	"github.com/sensorgate/sensorgate/simulator"
	"github.com/sensorgate/sensorgate/uplink"
)

func cmdValidate(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("validate", "sensorgate validate --config FILE",
		"Check a config file without starting anything. Exit 0 when it is valid; exit 2 with every\nproblem (key path and line) on stderr when it is not. Secrets are never printed.", stderr)
	path := fs.String("config", "", "config file (required)")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if *path == "" {
		fmt.Fprintln(stderr, "validate: --config is required")
		return 2
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		printConfigError(stderr, *path, err)
		return 2
	}
	fmt.Fprintf(stdout, "%s: ok (%d mqtt source(s), %d sensor(s), %d window(s), %d alert rule(s), %d uplink(s))\n",
		*path, len(cfg.Sources.MQTT), len(cfg.Sensors), len(cfg.Rules.Windows), len(cfg.Rules.Alerts), len(cfg.Uplinks))
	return 0
}

func printConfigError(w io.Writer, path string, err error) {
	var ce ConfigErrors
	if errors.As(err, &ce) {
		for _, e := range ce {
			fmt.Fprintf(w, "%s: %s\n", path, e)
		}
		fmt.Fprintf(w, "%s: %d problem(s)\n", path, len(ce))
		return
	}
	fmt.Fprintf(w, "%s: %v\n", path, err)
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run", "sensorgate run --config FILE",
		"Run the gateway. SIGINT/SIGTERM stop it cleanly (sources stop, open windows are flushed, the outbox\nkeeps what is not yet delivered); SIGHUP reloads the config without losing the outbox.", stderr)
	path := fs.String("config", "", "config file (required)")
	level := fs.String("log-level", "", "override log.level (debug, info, warn, error)")
	format := fs.String("log-format", "", "override log.format (text, json)")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if *path == "" {
		fmt.Fprintln(stderr, "run: --config is required")
		return 2
	}
	// Signals first: a SIGTERM during start-up must still mean a clean stop.
	ctx, hup, stop := signalContext(ctx)
	defer stop()
	cfg, err := loadConfig(*path)
	if err != nil {
		printConfigError(stderr, *path, err)
		return 2
	}
	logger, err := newLogger(cfg.Log, *level, *format, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "run:", err)
		return 2
	}
	gw := &gateway{path: *path, logger: logger, stdout: stdout}
	if err := gw.run(ctx, cfg, hup); err != nil {
		logger.Error("gateway stopped", "err", err)
		return 1
	}
	return 0
}

func newLogger(c LogConfig, level, format string, w io.Writer) (*slog.Logger, error) {
	if level == "" {
		level = c.Level
	}
	if format == "" {
		format = c.Format
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

// gateway owns what lives across config reloads: the outbox and the metrics
// endpoint. Everything else is a pipeline, rebuilt on SIGHUP.
type gateway struct {
	path    string
	logger  *slog.Logger
	stdout  io.Writer
	metrics *metricsServer
}

// applyMemoryLimit sets the runtime's soft memory limit from
// gateway.memory_limit, unless GOMEMLIMIT is set: the operator's
// environment wins over the config file. It runs at start and on reload.
func (g *gateway) applyMemoryLimit(c GatewayConfig) {
	if env := os.Getenv("GOMEMLIMIT"); env != "" {
		g.logger.Info("memory limit from GOMEMLIMIT", "GOMEMLIMIT", env)
		return
	}
	limit := c.MemoryLimit
	switch {
	case limit < 0:
		limit = math.MaxInt64 // the runtime's "no limit"
	case limit == 0:
		limit = autoMemoryLimit(machineMemory())
		g.logger.Info("memory limit", "bytes", limit, "of_machine", machineMemory())
	}
	debug.SetMemoryLimit(limit)
}

// autoMemoryLimit is gateway.memory_limit's default for a machine (or
// cgroup) of total bytes: a quarter of it, at least minMemoryLimit.
func autoMemoryLimit(total int64) int64 {
	return max(total/4, minMemoryLimit)
}

// machineMemory returns the memory the gateway may use: MemTotal, or the
// cgroup v2 limit when lower; 0 when neither can be read.
func machineMemory() int64 {
	var total int64
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64); err == nil {
					total = kb << 10
				}
				break
			}
		}
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 && (total == 0 || v < total) {
			total = v // "max" (no limit) does not parse
		}
	}
	return total
}

func (g *gateway) run(ctx context.Context, cfg *Config, hup <-chan os.Signal) error {
	g.applyMemoryLimit(cfg.Gateway)
	if err := os.MkdirAll(cfg.Gateway.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	ob, err := buffer.Open(cfg.Buffer.Path, cfg.Buffer, g.logger.With("component", "outbox"))
	if err != nil {
		return err
	}
	defer func() {
		if err := ob.Close(); err != nil {
			g.logger.Error("outbox close", "err", err)
		}
	}()
	g.metrics = newMetricsServer(g.logger)
	g.metrics.set("outbox", func() any { return ob.Stats() })
	if addr := *cfg.Metrics.Listen; addr != "" {
		stopMetrics, err := g.metrics.start(addr)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	g.logger.Info("sensorgate starting", "version", version, "gateway", cfg.Gateway.ID, "config", g.path,
		"outbox", cfg.Buffer.Path, "metrics", *cfg.Metrics.Listen)

	p, err := newPipeline(cfg, ob, g.logger, g.stdout)
	if err != nil {
		return err
	}
	for {
		p.register(g.metrics)
		p.start()
		var next *Config
	wait:
		for {
			select {
			case <-ctx.Done():
				break wait
			case err := <-p.failed:
				p.stop(cfg.Gateway.ShutdownGrace, false)
				return err
			case <-hup:
				c, err := loadConfig(g.path)
				if err != nil {
					g.logger.Error("config reload rejected; keeping the running config", "config", g.path, "err", strings.ReplaceAll(err.Error(), "\n", "; "))
					continue
				}
				if !c.Buffer.Equal(cfg.Buffer) || c.Gateway.DataDir != cfg.Gateway.DataDir {
					g.logger.Warn("config reload: buffer and gateway.data_dir changes take effect at the next restart")
					c.Buffer, c.Gateway.DataDir = cfg.Buffer, cfg.Gateway.DataDir
				}
				if *c.Metrics.Listen != *cfg.Metrics.Listen {
					g.logger.Warn("config reload: metrics.listen changes take effect at the next restart")
				}
				g.applyMemoryLimit(c.Gateway)
				next = c
				break wait
			}
		}
		if next == nil {
			g.logger.Info("stopping: sources first, then flushing windows and the outbox")
			p.stop(cfg.Gateway.ShutdownGrace, false)
			g.logger.Info("stopped", "undelivered", outboxDepth(ob))
			return nil
		}
		// Reload: the old pipeline stops without flushing its windows, and
		// the new engine adopts them, so a window open across the reload
		// is summarised once (two summaries with one id would lose the
		// second to upstream de-duplication). Nothing in the outbox moves.
		p.stop(0, true)
		np, err := newPipeline(next, ob, g.logger, g.stdout)
		if err != nil {
			// Valid on paper but not buildable (a TLS file gone, say): go
			// on with what ran before.
			g.logger.Error("config reload failed; keeping the running config", "config", g.path, "err", err)
			if np, err = newPipeline(cfg, ob, g.logger, g.stdout); err != nil {
				return err
			}
		} else {
			cfg = next
		}
		if err := np.engine.Adopt(context.Background(), p.engine, newOutboxSink(ob)); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
		p = np
		g.metrics.reset()
		g.metrics.set("outbox", func() any { return ob.Stats() })
		g.logger.Info("config reloaded", "config", g.path)
	}
}

// pipeline is one configuration's sources, rules and uplinks around the
// long-lived outbox.
type pipeline struct {
	cfg     *Config
	logger  *slog.Logger
	outbox  *buffer.Outbox
	broker  *broker.Broker // nil unless broker.enabled
	sources []namedSource
	engine  *rules.Engine
	uplinks []*uplink.Uplink

	readings chan ingest.Reading
	failed   chan error

	cancelSources, cancelEngine, cancelUplinks, cancelBroker context.CancelFunc
	sourcesWG, uplinksWG, brokerWG                           sync.WaitGroup
	engineDone                                               chan struct{}
}

type namedSource struct {
	name  string
	src   ingest.Source
	stats func() any
}

func newPipeline(cfg *Config, ob *buffer.Outbox, logger *slog.Logger, stdout io.Writer) (_ *pipeline, err error) {
	p := &pipeline{cfg: cfg, logger: logger, outbox: ob, failed: make(chan error, 16)}
	defer func() {
		// The embedded broker binds its listeners in New: a pipeline that
		// is never started must give them back (a reload that falls back
		// to the old config binds the same address again).
		if err != nil && p.broker != nil {
			p.broker.Close()
		}
	}()
	// One clock for the door and every source, so that arrival stamps taken
	// before an NTP step can be corrected (see ingest/clock).
	clk := clock.New(clock.Options{MinTime: cfg.Validation.MinTime})
	if cfg.Broker.Enabled {
		b, err := broker.New(cfg.Broker, logger.With("component", "broker"))
		if err != nil {
			return nil, err
		}
		p.broker = b
	}
	for i, mc := range cfg.Sources.MQTT {
		if cfg.localSources[i] {
			mc.Broker, mc.Username, mc.Password = p.broker.LocalClient()
			mc.PasswordFile, mc.PasswordEnv = "", ""
		}
		s, err := mqttsub.New(mc, mqttsub.Options{Now: clk.Now, Logger: logger.With("component", "mqttsub", "broker", mc.Broker)})
		if err != nil {
			return nil, fmt.Errorf("sources.mqtt[%d]: %w", i, err)
		}
		p.sources = append(p.sources, namedSource{fmt.Sprintf("mqtt%d", i), s, func() any { return s.Stats() }})
	}
	var sims []simulator.Sensor
	for _, s := range cfg.Sensors {
		if s.Type == "sim" {
			sims = append(sims, simulator.Sensor{ID: s.ID, Config: *s.Sim})
		}
	}
	if len(sims) > 0 {
		sim, err := simulator.New(sims, simulator.Options{Seed: 1, Now: clk.Now, Logger: logger.With("component", "simulator")})
		if err != nil {
			return nil, fmt.Errorf("simulator: %w", err)
		}
		p.sources = append(p.sources, namedSource{"simulator", sim, func() any { return sim.Stats() }})
	}
	var chips []drivers.Entry
	for _, s := range cfg.Sensors {
		if drivers.Known(s.Type) {
			chips = append(chips, drivers.Entry{ID: s.ID, Type: s.Type, Device: *s.Device})
		}
	}
	if len(chips) > 0 {
		// host.Init runs once here; a bus that is missing on this board
		// shows up as that sensor's counted, retried open error.
		op, err := drivers.NewHostOpener()
		if err != nil {
			return nil, fmt.Errorf("drivers: %w", err)
		}
		poller, err := drivers.NewPoller(chips, op, drivers.Options{Now: clk.Now, Logger: logger.With("component", "drivers")})
		if err != nil {
			return nil, fmt.Errorf("drivers: %w", err)
		}
		p.sources = append(p.sources, namedSource{"drivers", poller, func() any { return poller.Stats() }})
	}
	meta := sensorMeta(cfg.Sensors)
	specs := make(map[string]rules.SensorSpec, len(cfg.Sensors))
	for _, s := range cfg.Sensors {
		specs[s.ID] = rules.SensorSpec{Ranges: s.Ranges}
	}
	eng, err := rules.New(cfg.Rules, rules.Options{
		Meta:   func(sensor string) map[string]string { return meta[sensor] },
		Logger: logger.With("component", "rules"),
		Door:   &rules.Door{Validation: cfg.Validation, Sensors: specs, Clock: clk},
	})
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	p.engine = eng
	for _, uc := range cfg.Uplinks {
		u, err := uplink.New(uc, ob, uplink.Options{Gateway: cfg.Gateway.ID, Version: version, Logger: logger.With("component", "uplink"), Stdout: stdout})
		if err != nil {
			return nil, fmt.Errorf("uplink %s: %w", uc.Name, err)
		}
		p.uplinks = append(p.uplinks, u)
	}
	return p, nil
}

// sensorMeta builds the static metadata attached to summaries and alerts:
// location and tags, once per sensor, shared (read-only) by every summary.
func sensorMeta(sensors []SensorConfig) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, s := range sensors {
		if s.Location == "" && len(s.Tags) == 0 {
			continue
		}
		m := make(map[string]string, len(s.Tags)+1)
		for k, v := range s.Tags {
			m[k] = v
		}
		if s.Location != "" {
			m["location"] = s.Location
		}
		out[s.ID] = m
	}
	return out
}

func (p *pipeline) register(m *metricsServer) {
	if p.broker != nil {
		m.set("broker", func() any { return p.broker.Stats() })
	}
	m.set("validate", func() any { return p.engine.DoorStats() })
	for _, s := range p.sources {
		m.set("source_"+s.name, s.stats)
	}
	m.set("rules", func() any { return p.engine.Stats() })
	for i, u := range p.uplinks {
		m.set("uplink_"+p.cfg.Uplinks[i].Name, func() any { return u.Stats() })
	}
}

// start wires from the sink end to the source end, so nothing produced has
// nowhere to go.
func (p *pipeline) start() {
	var uctx, ectx, sctx context.Context
	uctx, p.cancelUplinks = context.WithCancel(context.Background())
	for i, u := range p.uplinks {
		p.uplinksWG.Add(1)
		go func() {
			defer p.uplinksWG.Done()
			if err := u.Run(uctx); err != nil && uctx.Err() == nil {
				p.fail(fmt.Errorf("uplink %s: %w", p.cfg.Uplinks[i].Name, err))
			}
		}()
	}
	// One channel from every source to the rules; the door is the
	// engine's first stage, and its Run keeps the clock current.
	p.readings = make(chan ingest.Reading, p.cfg.Gateway.QueueSize)
	ectx, p.cancelEngine = context.WithCancel(context.Background())
	p.engineDone = make(chan struct{})
	go func() {
		defer close(p.engineDone)
		if err := p.engine.Run(ectx, p.readings, newOutboxSink(p.outbox)); err != nil && ectx.Err() == nil {
			p.fail(fmt.Errorf("rules: %w", err))
		}
	}()
	if p.broker != nil {
		var bctx context.Context
		bctx, p.cancelBroker = context.WithCancel(context.Background())
		p.brokerWG.Add(1)
		go func() {
			defer p.brokerWG.Done()
			if err := p.broker.Run(bctx); err != nil && bctx.Err() == nil {
				p.fail(fmt.Errorf("broker: %w", err))
			}
		}()
	}
	sctx, p.cancelSources = context.WithCancel(context.Background())
	for _, s := range p.sources {
		p.sourcesWG.Add(1)
		go func() {
			defer p.sourcesWG.Done()
			if err := s.src.Run(sctx, p.readings); err != nil && sctx.Err() == nil {
				p.fail(fmt.Errorf("source %s: %w", s.name, err))
			}
		}()
	}
}

func (p *pipeline) fail(err error) {
	select {
	case p.failed <- err:
	default:
	}
}

// stop stops from the source end: sources, then the rules (which flush
// their open windows into the outbox when their input closes, unless they
// are handed over to the next config's engine), then the outbox's pending
// appends; then the uplinks get up to grace to deliver.
func (p *pipeline) stop(grace time.Duration, handover bool) {
	if handover {
		p.engine.PrepareHandover()
	}
	p.cancelSources()
	p.sourcesWG.Wait()
	if p.cancelBroker != nil {
		p.cancelBroker()
		p.brokerWG.Wait()
	}
	close(p.readings)
	select {
	case <-p.engineDone:
	case <-time.After(30 * time.Second):
		p.logger.Error("rules did not finish flushing within 30s; stopping them")
		p.cancelEngine()
		<-p.engineDone
	}
	p.cancelEngine()
	fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if err := p.outbox.Flush(fctx); err != nil {
		p.logger.Error("outbox flush", "err", err)
	}
	cancel()
	if grace > 0 && len(p.uplinks) > 0 {
		deadline := time.Now().Add(grace)
		for time.Now().Before(deadline) && outboxDepth(p.outbox) > 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	p.cancelUplinks()
	p.uplinksWG.Wait()
}

// outboxSink encodes what the rules emit and queues it in the outbox lane
// for its kind. Enqueue copies the payload, so one buffer is reused; the
// engine calls the sink from one goroutine.
type outboxSink struct {
	ob  *buffer.Outbox
	buf *[]byte
}

func newOutboxSink(ob *buffer.Outbox) outboxSink {
	b := make([]byte, 0, 512)
	return outboxSink{ob: ob, buf: &b}
}

func (s outboxSink) Summary(ctx context.Context, sum *ingest.Summary) error {
	b, err := ingest.AppendSummary((*s.buf)[:0], sum)
	if err != nil {
		return err
	}
	*s.buf = b
	return s.enqueue(ctx, buffer.LaneSummaries, b)
}

func (s outboxSink) Alert(ctx context.Context, a *ingest.Alert) error {
	b, err := ingest.AppendAlert((*s.buf)[:0], a)
	if err != nil {
		return err
	}
	*s.buf = b
	return s.enqueue(ctx, buffer.LaneAlerts, b)
}

// enqueue hands a record to the outbox. A lane with the reject policy that
// is at its cap refuses it with ErrFull: that is the lane's declared drop,
// already counted by the outbox (reason "full"), so the pipeline goes on
// rather than stopping the gateway. Any other error stops the pipeline.
func (s outboxSink) enqueue(ctx context.Context, lane buffer.Lane, b []byte) error {
	err := s.ob.Enqueue(ctx, lane, b)
	if errors.Is(err, buffer.ErrFull) {
		return nil
	}
	return err
}

// outboxDepth is what the uplinks still have to deliver (the dead-letter
// lane is kept for inspection, not delivered).
func outboxDepth(ob *buffer.Outbox) int64 {
	st := ob.Stats()
	n := int64(st.Pending)
	for _, l := range st.Lanes {
		if l.Lane != buffer.LaneDead {
			n += l.Depth
		}
	}
	return n
}
