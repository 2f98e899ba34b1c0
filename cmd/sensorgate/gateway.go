package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/rules/window"
)

// Main is the gateway: what lives across config reloads (the outbox and
// the metrics endpoint) and the pipeline of the running config, rebuilt on
// each reload. `sensorgate run` fills it in from its flags; the in-process
// tests (main_test.go) fill it in with a temporary data dir.
//
// Open acquires the outbox and the metrics listener, Run blocks until ctx
// is done (a clean stop) or a part fails, Close releases what Open took.
type Main struct {
	// Config is the loaded, validated config to start with.
	Config *Config
	// ConfigPath is read again on each reload, and named in logs.
	ConfigPath string
	// Logger receives every component's events; nil discards them.
	Logger *slog.Logger
	// Stdout is where a stdout uplink writes; nil means os.Stdout.
	Stdout io.Writer
	// Reload receives a value for each reload request (SIGHUP in the
	// command); nil never reloads.
	Reload <-chan os.Signal
	// FlushOnStop (run --flush-on-stop) emits every open window as final
	// when Run stops, instead of keeping it in the store for the next
	// start: for a gateway being decommissioned.
	FlushOnStop bool

	lock        *dirLock
	outbox      *buffer.Outbox
	metrics     *metricsServer
	metricsAddr string
	stopMetrics func()

	// Test seams: started sees each pipeline once its stages run;
	// extraSources are added to every pipeline's sources.
	started      func(*pipeline)
	extraSources func() []namedSource
}

// outboxOptions are the outbox's runtime inputs. The outbox cannot read
// summaries; the rules merge them, so a full summaries lane with the
// rollup policy keeps coverage at a coarser resolution. MinTime is the
// door's: records stored before the clock was ever set have no known age.
func outboxOptions(logger *slog.Logger, minTime time.Time) buffer.Options {
	return buffer.Options{Logger: logger.With("component", "outbox"), RollUp: window.RollUp, MinTime: minTime}
}

// Open applies the memory limit, opens the outbox and starts serving
// metrics. Run calls it if the caller did not; calling it first tells
// MetricsAddr before Run starts the pipeline.
func (m *Main) Open() (err error) {
	if m.outbox != nil {
		return nil
	}
	if m.Config == nil {
		return errors.New("no config")
	}
	if m.Logger == nil {
		m.Logger = slog.New(slog.DiscardHandler)
	}
	cfg := m.Config
	m.applyMemoryLimit(cfg.Gateway)
	if err := os.MkdirAll(cfg.Gateway.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	// The lock file sits beside the outbox: a second gateway on the same
	// dir is told who holds it at once, instead of waiting for bbolt's
	// lock timeout.
	dir := filepath.Dir(cfg.Buffer.Path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	lock, err := lockDataDir(dir)
	if err != nil {
		return err
	}
	ob, err := buffer.Open(cfg.Buffer, outboxOptions(m.Logger, cfg.Validation.MinTime))
	if err != nil {
		lock.release()
		return err
	}
	defer func() {
		if err != nil {
			ob.Close()
			lock.release()
		}
	}()
	m.metrics = newMetricsServer(m.Logger)
	m.metrics.set("outbox", func() any { return ob.Stats() })
	if addr := *cfg.Metrics.Listen; addr != "" {
		stopMetrics, bound, err := m.metrics.start(addr)
		if err != nil {
			return err
		}
		m.stopMetrics, m.metricsAddr = stopMetrics, bound
	}
	m.outbox, m.lock = ob, lock
	m.Logger.Info("sensorgate starting", "version", version, "gateway", cfg.Gateway.ID, "config", m.ConfigPath,
		"outbox", cfg.Buffer.Path, "metrics", *cfg.Metrics.Listen)
	return nil
}

// MetricsAddr is the address /metrics and /healthz are served on (the
// port the kernel picked for a ":0" listen address); "" before Open or
// when metrics.listen is empty.
func (m *Main) MetricsAddr() string { return m.metricsAddr }

// Close stops serving metrics and closes the outbox. Call it after Run
// returned; a second call does nothing.
func (m *Main) Close() error {
	if m.stopMetrics != nil {
		m.stopMetrics()
		m.stopMetrics = nil
	}
	if m.outbox == nil {
		return nil
	}
	err := m.outbox.Close()
	m.outbox = nil
	if m.lock != nil {
		m.lock.release()
		m.lock = nil
	}
	return err
}

// Run restores the state of the last checkpoint, runs the pipeline until
// ctx is done, then stops it source-first: the rules commit a last
// checkpoint (open windows stay in the store), the outbox commits, and
// the uplinks get gateway.shutdown_grace to deliver. A reload request replaces the
// pipeline in place, handing its open windows over. A part that fails
// stops the pipeline the same way and Run returns its error.
func (m *Main) Run(ctx context.Context) error {
	if err := m.Open(); err != nil {
		return err
	}
	cfg, ob := m.Config, m.outbox
	p, err := m.newPipeline(cfg)
	if err != nil {
		return err
	}
	// The state of the last checkpoint comes back before any input is
	// accepted: open windows, stage and alert state. Windows that closed
	// while the gateway was down are emitted at the engine's first tick.
	if err := p.engine.Restore(loadRules(ob)); err != nil {
		if p.broker != nil {
			p.broker.Close()
		}
		return fmt.Errorf("restore: %w", err)
	}
	for {
		p.register(m.metrics)
		p.start()
		if m.started != nil {
			m.started(p)
		}
		var next *Config
	wait:
		for {
			select {
			case <-ctx.Done():
				break wait
			case err := <-p.failed:
				p.stop(cfg.Gateway.ShutdownGrace, false)
				return err
			case <-m.Reload:
				c, err := loadConfig(m.ConfigPath)
				if err != nil {
					m.Logger.Error("config reload rejected; keeping the running config", "config", m.ConfigPath, "err", strings.ReplaceAll(err.Error(), "\n", "; "))
					continue
				}
				if c.Buffer != cfg.Buffer || c.Gateway.DataDir != cfg.Gateway.DataDir {
					m.Logger.Warn("config reload: buffer and gateway.data_dir changes take effect at the next restart")
					c.Buffer, c.Gateway.DataDir = cfg.Buffer, cfg.Gateway.DataDir
				}
				if *c.Metrics.Listen != *cfg.Metrics.Listen {
					m.Logger.Warn("config reload: metrics.listen changes take effect at the next restart")
				}
				m.applyMemoryLimit(c.Gateway)
				next = c
				break wait
			}
		}
		if next == nil {
			if m.FlushOnStop {
				m.Logger.Info("stopping: sources first, then every open window emitted as final (--flush-on-stop), then the outbox")
			} else {
				m.Logger.Info("stopping: sources first, then a last checkpoint (open windows are kept for the next start), then the outbox")
			}
			p.stop(cfg.Gateway.ShutdownGrace, false)
			m.Logger.Info("stopped", "undelivered", outboxDepth(ob))
			return nil
		}
		// Reload: the old pipeline stops without flushing its windows, and
		// the new engine adopts them, so a window open across the reload
		// is summarised once (two summaries with one id would lose the
		// second to upstream de-duplication). Nothing in the outbox moves.
		p.stop(0, true)
		np, err := m.newPipeline(next)
		if err != nil {
			// Valid on paper but not buildable (a TLS file gone, say): go
			// on with what ran before.
			m.Logger.Error("config reload failed; keeping the running config", "config", m.ConfigPath, "err", err)
			if np, err = m.newPipeline(cfg); err != nil {
				return err
			}
		} else {
			cfg = next
		}
		if err := np.engine.Adopt(context.Background(), p.engine, np.sink); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
		p = np
		m.metrics.reset()
		m.metrics.set("outbox", func() any { return ob.Stats() })
		m.Logger.Info("config reloaded", "config", m.ConfigPath)
	}
}
