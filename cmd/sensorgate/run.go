package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

func cmdValidate(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("validate", "sensorgate validate --config FILE",
		"Check a config file without starting anything. Exit 0 when it is valid; exit 2 with every\nproblem (key path and line) on stderr when it is not. Secrets are never printed.", stderr)
	path := fs.String("config", "", "config file (required)")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if *path == "" {
		return usageError(fs, "--config is required")
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		printConfigError(stderr, fs.Name(), *path, err)
		return 2
	}
	fmt.Fprintf(stdout, "%s: ok (%d mqtt source(s), %d sensor(s), %d window(s), %d alert rule(s), %d uplink(s))\n",
		*path, len(cfg.Sources.MQTT), len(cfg.Sensors), len(cfg.Rules.Windows), len(cfg.Rules.Alerts), len(cfg.Uplinks))
	return 0
}

func printConfigError(w io.Writer, name, path string, err error) {
	var ce ConfigErrors
	if errors.As(err, &ce) {
		for _, e := range ce {
			fmt.Fprintf(w, "%s: %s\n", path, e)
		}
		fmt.Fprintf(w, "%s: %d problem(s)\n", path, len(ce))
		return
	}
	// A file that cannot be read: the path once, then what the system said
	// ("x.yaml: no such file or directory", not "x.yaml: config: open x.yaml: ...").
	fmt.Fprintf(w, "%s: config %s: %v\n", name, path, pathErr(err))
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run", "sensorgate run --config FILE",
		"Run the gateway. SIGINT/SIGTERM stop it cleanly (sources stop, open windows are kept for the next start,\nthe outbox keeps what is not yet delivered); SIGHUP reloads the config without losing either.", stderr)
	path := fs.String("config", "", "config file (required)")
	level := fs.String("log-level", "", "override log.level (debug, info, warn, error)")
	format := fs.String("log-format", "", "override log.format (text, json)")
	flushOnStop := fs.Bool("flush-on-stop", false, "decommissioning: at the stop, emit every open window as a final summary instead of keeping it for the next start")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if *path == "" {
		return usageError(fs, "--config is required")
	}
	// Signals first: a SIGTERM during start-up must still mean a clean stop.
	ctx, hup, stop := signalContext(ctx)
	defer stop()
	cfg, err := loadConfig(*path)
	if err != nil {
		printConfigError(stderr, fs.Name(), *path, err)
		return 2
	}
	logger, err := newLogger(cfg.Log, *level, *format, stderr)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	m := &Main{Config: cfg, ConfigPath: *path, Logger: logger, Stdout: stdout, Reload: hup, FlushOnStop: *flushOnStop}
	// What Open cannot take (the data dir, the metrics address) is a
	// failure to start: one line that says what to do, not a log event.
	if err := m.Open(); err != nil {
		m.Close()
		return failure(fs, err)
	}
	err = m.Run(ctx)
	if cerr := m.Close(); cerr != nil {
		logger.Error("outbox close", "err", cerr)
	}
	if err != nil {
		// The pipeline stopped itself (a part failed); the log has its
		// events, this is the one line that ends the command.
		return failure(fs, fmt.Errorf("gateway stopped: %w", err))
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
