//go:build !nosimulate

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/simulator"
	"github.com/sensorgate/sensorgate/simulator/load"
)

// simulateCommand is `sensorgate simulate`; a build with the nosimulate
// tag leaves it out, and the load generator with it (nosimulate.go).
func simulateCommand() []command {
	return []command{{"simulate", "publish simulated sensor load to an MQTT broker, with a truth file", cmdSimulate}}
}

// cmdSimulate is `sensorgate simulate`: the load generator (load.Run).
func cmdSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("simulate", "sensorgate simulate --broker URL [flags]",
		`Publish simulated sensors to an MQTT broker at a fixed rate (one message = one
sample of one sensor, all its metrics), print the achieved rate every second
(stderr) and a final count (stdout). --truth writes what was sent, per sensor
and metric (count, sum, min, max), as JSON (--truth-window adds the same per
sensor, metric and event-time window), so that tests and benchmarks can
check a gateway's summaries exactly. Payload formats are documented in the
simulator/load package (json: {"ts":<unix_ms>,"temperature":21.5,...}, sensor id in
the topic). Stops after --duration, or on SIGINT/SIGTERM (the final count and
the truth file are still written).`, stderr)
	var cfg load.Config
	var qos uint
	var truth string
	var quiet bool
	var metrics string
	fs.StringVar(&cfg.Broker, "broker", "", "MQTT broker URL, e.g. tcp://127.0.0.1:1883 (required)")
	fs.IntVar(&cfg.Sensors, "sensors", 100, "number of simulated sensors (sim-0001, sim-0002, ...)")
	fs.Float64Var(&cfg.Rate, "rate", 1000, "total messages per second")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to publish; 0 means until interrupted")
	fs.UintVar(&qos, "qos", 0, "MQTT QoS of the publishes: 0, 1 or 2")
	fs.StringVar(&cfg.Format, "format", load.FormatJSON, "payload format: json, senml or msgpack")
	fs.StringVar(&cfg.Topic, "topic", "sensors/{sensor}/telemetry", "topic template; {sensor} is the sensor id")
	fs.Int64Var(&cfg.Seed, "seed", 1, "random seed: the same seed sends the same values")
	fs.StringVar(&truth, "truth", "", "write what was sent (per sensor and metric: count, sum, min, max) to this JSON file")
	fs.DurationVar(&cfg.TruthWindow, "truth-window", 0, "with --truth, also per event-time window of this size (tumbling, aligned to the Unix epoch like the gateway's), e.g. 10s")
	fs.IntVar(&cfg.Connections, "connections", 2, "MQTT connections publishing in parallel")
	fs.StringVar(&cfg.ClientID, "client-id", "sensorgate-sim", "client id prefix (each connection appends -<n>)")
	fs.StringVar(&cfg.Username, "username", "", "MQTT username (the password is read from $SENSORGATE_SIM_PASSWORD)")
	fs.Float64Var(&cfg.Faults.MalformedProb, "malformed", 0, "probability that a message is malformed")
	fs.Float64Var(&cfg.Faults.DuplicateProb, "duplicate", 0, "probability that a message is sent twice")
	fs.Float64Var(&cfg.Faults.DropoutProb, "dropout", 0, "probability that a sensor drops out (3 samples)")
	fs.Float64Var(&cfg.Faults.OutOfOrderProb, "out-of-order", 0, "probability that a message carries a past timestamp")
	fs.Float64Var(&cfg.Faults.SpikeProb, "spike", 0, "probability that a value spikes")
	fs.StringVar(&metrics, "metrics", "temperature,humidity", "comma-separated metrics per message (temperature, humidity, pressure, co2 have realistic signals; other names a random walk around 50)")
	fs.BoolVar(&quiet, "quiet", false, "do not print the rate every second")
	fs.BoolVar(&cfg.Paho, "paho", false, "use the paho client for QoS 0 too (default: a batched raw MQTT 3.1.1 publisher over tcp://)")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if qos > 2 {
		return usageError(fs, "--qos: must be 0, 1 or 2")
	}
	cfg.QoS = byte(qos)
	m, err := simMetrics(metrics)
	if err != nil {
		return usageError(fs, "--metrics: %v", err)
	}
	cfg.Metrics = m
	cfg.Password = os.Getenv("SENSORGATE_SIM_PASSWORD")
	check := cfg
	check.Metrics = nil // Defaults fills them in place; the real ones were checked by simMetrics
	check.Defaults()
	if err := check.Validate(); err != nil {
		var msgs []string
		for _, e := range ingest.FlattenErrors(err) {
			var fe *ingest.FieldError
			if errors.As(e, &fe) {
				msgs = append(msgs, fmt.Sprintf("--%s: %v", flagName(fe.Path), fe.Err))
			} else {
				msgs = append(msgs, e.Error())
			}
		}
		return usageError(fs, "%s", strings.Join(msgs, "; "))
	}
	if !quiet {
		cfg.Progress = func(p load.Progress) {
			fmt.Fprintf(stderr, "simulate: t=%s sent=%d rate=%.0f/s\n", p.Elapsed.Round(time.Second), p.Sent, p.Rate)
		}
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := load.Run(ctx, cfg)
	if err != nil {
		return failure(fs, err)
	}
	fmt.Fprintf(stdout, "simulate: sent=%d errors=%d elapsed=%.3fs rate=%.1f/s target=%g/s values=%d malformed=%d duplicates=%d\n",
		res.Sent, res.Errors, res.Elapsed.Seconds(), res.Rate, cfg.Rate, res.Truth.Total.Count, res.Truth.Malformed, res.Truth.Duplicates)
	if truth != "" {
		if err := res.Truth.WriteFile(truth); err != nil {
			return failure(fs, err)
		}
	}
	if res.Errors > 0 {
		return failure(fs, fmt.Errorf("%d publishes failed", res.Errors))
	}
	return 0
}

// simMetrics builds the signals for --metrics.
func simMetrics(list string) (map[string]simulator.Signal, error) {
	known := load.DefaultMetrics()
	known["pressure"] = simulator.Signal{Model: simulator.ModelRandomWalk, Base: 1013, Step: 0.2, Min: 900, Max: 1100, Unit: "hPa"}
	known["co2"] = simulator.Signal{Model: simulator.ModelRandomWalk, Base: 600, Step: 5, Noise: 2, Min: 400, Max: 5000, Unit: "ppm"}
	out := map[string]simulator.Signal{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			return nil, fmt.Errorf("empty metric name in %q", list)
		}
		if strings.ContainsAny(name, "\".{}[]:, ") {
			return nil, fmt.Errorf("metric name %q: use letters, digits, _ and -", name)
		}
		g, ok := known[name]
		if !ok {
			g = simulator.Signal{Model: simulator.ModelRandomWalk, Base: 50, Step: 0.5, Min: 0, Max: 100}
		}
		out[name] = g
	}
	return out, nil
}

// flagName maps a load.Config validation path to its flag.
func flagName(path string) string {
	switch path {
	case "faults.malformed_prob":
		return "malformed"
	case "faults.duplicate_prob":
		return "duplicate"
	case "faults.dropout_prob":
		return "dropout"
	case "faults.out_of_order_prob":
		return "out-of-order"
	case "faults.spike_prob":
		return "spike"
	case "truth_window":
		return "truth-window"
	}
	return path
}
