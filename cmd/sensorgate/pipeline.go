package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
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

// pipeline is one configuration's sources, rules and uplinks around the
// long-lived outbox.
type pipeline struct {
	cfg     *Config
	logger  *slog.Logger
	outbox  *buffer.Outbox
	broker  *broker.Broker // nil unless broker.enabled
	sources []namedSource
	engine  *rules.Engine
	sink    *outboxSink // the engine's sink and committer, also for Adopt
	uplinks []*uplink.Uplink

	readings chan ingest.Reading
	failed   chan error

	stages stages
	grace  time.Duration // the uplinks' drain in the current stop
}

type namedSource struct {
	name  string
	src   ingest.Source
	stats func() any
}

// newPipeline builds cfg's pipeline around m's outbox; nothing runs yet.
func (m *Main) newPipeline(cfg *Config) (_ *pipeline, err error) {
	ob, logger, stdout := m.outbox, m.Logger, m.Stdout
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
	var mcs []mqttsub.Config // as the sources run them
	for i, mc := range cfg.Sources.MQTT {
		if cfg.localSources[i] {
			mc.Broker, mc.Username, mc.Password = p.broker.LocalClient()
			mc.PasswordFile, mc.PasswordEnv = "", ""
			// The embedded broker's window for its own source, and a
			// client id that does not change with the private listener's
			// port, so the source's committed-message table is found again.
			mc.InFlight = p.broker.LocalInFlight()
			if mc.ClientID == "" || strings.HasPrefix(mc.ClientID, "sensorgate-") {
				mc.ClientID = fmt.Sprintf("sensorgate-local-%d", i)
			}
		}
		mcs = append(mcs, mc)
		// The source's table of committed packet ids comes from the same
		// store its receipts are committed to (see mqttsub's Options.State).
		s, err := mqttsub.New(mc, mqttsub.Options{Now: clk.Now, Logger: logger.With("component", "mqttsub", "broker", mc.Broker), State: ob.LoadState})
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
	if m.extraSources != nil {
		p.sources = append(p.sources, m.extraSources()...)
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
		Commit: &rules.CommitPolicy{
			MaxReceipts:  checkpointTrigger(mcs),
			MaxDelay:     cfg.Gateway.CheckpointDelay,
			StateEvery:   cfg.Gateway.CheckpointInterval,
			FlushOnClose: m.FlushOnStop,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	p.engine, p.sink = eng, newOutboxSink(ob)
	for _, uc := range cfg.Uplinks {
		u, err := newUplink(uc, ob, uplink.Options{Gateway: cfg.Gateway.ID, Version: version, Logger: logger.With("component", "uplink")}, stdout)
		if err != nil {
			return nil, fmt.Errorf("uplink %s: %w", uc.Name, err)
		}
		p.uplinks = append(p.uplinks, u)
	}
	return p, nil
}

// checkpointTrigger is the number of waiting receipts at which the rules
// checkpoint at once: the smallest in-flight window among the durable MQTT
// sources (0: none holds acks, the engine's default), halved when it is 64
// or more. At the full window the broker stops sending until our PUBACKs
// arrive, so the commit and the broker's next burst take turns; at half,
// the broker goes on sending the other half while the commit runs
// (BENCHMARKS.md: 87-92% -> 96% of the non-durable rate at a window of
// 1000). A small window is not halved: each commit has a floor of about
// five 4 KiB pages, and halving mosquitto's default 20 took the flash wear
// from 1,118 to 1,943 bytes per reading.
func checkpointTrigger(mcs []mqttsub.Config) int {
	n := 0
	for _, mc := range mcs {
		if mc.HoldsAcks() && (n == 0 || mc.InFlight < n) {
			n = mc.InFlight
		}
	}
	if n >= 64 {
		n /= 2
	}
	return n
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
// nowhere to go. Each stage's drain is what it does before it is
// cancelled, when the stages stop in reverse order (see stop).
func (p *pipeline) start() {
	p.stages = stages{fail: p.fail}
	up := p.stages.add(p.drainUplinks)
	for i, u := range p.uplinks {
		up.run("uplink "+p.cfg.Uplinks[i].Name, u.Run)
	}
	// One channel from every source to the rules; the door is the
	// engine's first stage, and its Run keeps the clock current.
	p.readings = make(chan ingest.Reading, p.cfg.Gateway.QueueSize)
	eng := p.stages.add(p.drainRules)
	eng.run("rules", func(ctx context.Context) error {
		return p.engine.Run(ctx, p.readings, p.sink)
	})
	if p.broker != nil {
		p.stages.add(nil).run("broker", p.broker.Run)
	}
	sources := p.stages.add(nil)
	for _, s := range p.sources {
		sources.run("source "+s.name, func(ctx context.Context) error { return s.src.Run(ctx, p.readings) })
	}
}

func (p *pipeline) fail(err error) {
	select {
	case p.failed <- err:
	default:
	}
}

// stop stops from the source end: sources, then the rules (which commit
// a last checkpoint when their input closes: open windows stay in the
// store for the next start, or for the next config's engine on a reload;
// with --flush-on-stop they are emitted as final first), then the outbox's
// pending appends; then the uplinks get up to grace to deliver.
func (p *pipeline) stop(grace time.Duration, handover bool) {
	if handover {
		p.engine.PrepareHandover()
	}
	p.grace = grace
	p.stages.stop()
}

// drainRules closes the rules' input once the sources (and the broker
// feeding them) have returned, and gives the engine 30s for its last
// checkpoint.
func (p *pipeline) drainRules(s *stage) {
	close(p.readings)
	if !s.wait(30 * time.Second) {
		p.logger.Error("rules did not finish their last checkpoint within 30s; stopping them (the next start continues from the one before)")
	}
}

// drainUplinks commits what the rules queued and gives the uplinks up to
// grace to deliver it: the wait ends when the outbox has nothing left to
// deliver, woken by its acks.
func (p *pipeline) drainUplinks(*stage) {
	fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if err := p.outbox.Flush(fctx); err != nil {
		p.logger.Error("outbox flush", "err", err)
	}
	cancel()
	if p.grace > 0 && len(p.uplinks) > 0 {
		dctx, cancel := context.WithTimeout(context.Background(), p.grace)
		_ = p.outbox.Drained(dctx) // a timeout leaves the rest for the next start
		cancel()
	}
}
