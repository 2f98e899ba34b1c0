package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/cmd/sensorgate/internal/yamlload"
	"github.com/sensorgate/sensorgate/drivers"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/broker"
	"github.com/sensorgate/sensorgate/ingest/mqttsub"
	"github.com/sensorgate/sensorgate/rules"
	"github.com/sensorgate/sensorgate/simulator"
	"github.com/sensorgate/sensorgate/uplink"
)

// Config is the whole config file. Each section is owned by its package; this
// type only composes them and checks what spans sections (unique sensor ids,
// lane routing).
type Config struct {
	Gateway    GatewayConfig    `yaml:"gateway"`
	Log        LogConfig        `yaml:"log"`
	Broker     broker.Config    `yaml:"broker"`
	Sources    SourcesConfig    `yaml:"sources"`
	Sensors    []SensorConfig   `yaml:"sensors"`
	Validation rules.Validation `yaml:"validation"`
	Rules      rules.Config     `yaml:"rules"`
	Buffer     buffer.Config    `yaml:"buffer"`
	Uplinks    []uplink.Config  `yaml:"uplinks"`
	Metrics    MetricsConfig    `yaml:"metrics"`

	// localSources marks the sources.mqtt entries with `broker: local`,
	// which read from the embedded broker through its private listener.
	localSources map[int]bool
}

// GatewayConfig is the `gateway:` section.
type GatewayConfig struct {
	// ID names this gateway upstream (topics, birth messages). Default: the
	// host name.
	ID string `yaml:"id"`
	// DataDir holds the outbox file. Default ./data.
	DataDir string `yaml:"data_dir"`
	// QueueSize bounds the readings channel between the sources and the
	// rules. Default 4096.
	QueueSize int `yaml:"queue_size"`
	// ShutdownGrace is how long a clean stop waits for the uplinks to deliver
	// what the outbox holds before it closes; what is left stays in the
	// outbox for the next start. Default 5s.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// CheckpointDelay is how long the rules wait, at most, before they
	// commit a checkpoint holding durable readings (whose PUBACKs wait for
	// it) or emitted summaries and alerts; a checkpoint is made sooner when
	// the broker's in-flight window (sources.mqtt[].inflight) is full.
	// Longer spares the flash at low rates; shorter lowers the latency of
	// acknowledgements. Default 1s: a broker sends its whole in-flight
	// window without waiting, so at high rates the window, not the delay,
	// sets the commits; at low rates one commit covers a second of
	// readings instead of a commit (at least 5 pages) per quarter second.
	CheckpointDelay time.Duration `yaml:"checkpoint_delay"`
	// CheckpointInterval is how often window state changed only by
	// non-durable readings (QoS 0, the simulator) is committed; what such
	// readings changed since the last checkpoint is lost in a crash (a
	// clean stop commits it). Default 5s.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// MemoryLimit is the Go runtime's soft memory limit in bytes (see
	// runtime/debug.SetMemoryLimit): past it the garbage collector works
	// harder instead of letting the heap double, so that a burst (large
	// payloads filling the source queues) cannot push a small board into
	// the OOM killer. It is a ceiling, not a target. Default (0): a quarter
	// of the machine's memory (or of the cgroup's limit), at least 32 MiB:
	// 128 MiB on a 512 MB Pi Zero. A limit below what the gateway really
	// holds (100,000 window keys are about 100 MB) makes the collector run
	// all the time, hence no small fixed default. -1 sets no limit. The
	// GOMEMLIMIT environment variable, when set, wins.
	MemoryLimit int64 `yaml:"memory_limit"`
}

// minMemoryLimit is the smallest gateway.memory_limit, and the floor of
// the automatic one.
const minMemoryLimit = 32 << 20

// LogConfig is the `log:` section.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // text (default) or json
}

// SourcesConfig is the `sources:` section. An MQTT source whose broker is
// the word "local" reads from the embedded broker (the `broker:` section).
type SourcesConfig struct {
	MQTT []mqttsub.Config `yaml:"mqtt"`
}

// localBroker is the sources.mqtt[].broker value naming the embedded broker.
const localBroker = "local"

// SensorConfig is one entry of `sensors:`: the sensor's identity and static
// metadata, plus a type-specific block for sensors the gateway produces
// itself. Sensors that publish over MQTT need an entry only for metadata
// (location, tags) and physical ranges.
type SensorConfig struct {
	ID       string            `yaml:"id"`
	Type     string            `yaml:"type"`
	Location string            `yaml:"location"`
	Tags     map[string]string `yaml:"tags"`
	// Ranges are the physical limits per metric; readings outside are
	// rejected at the door and counted.
	Ranges map[string]rules.Range `yaml:"ranges"`
	// Sim configures a sensor of type sim; Device a chip on the board
	// (types bme280, ds18b20, ads1115, sht3x, ... see the drivers package).
	Sim    *simulator.SensorConfig `yaml:"sim"`
	Device *drivers.DeviceConfig   `yaml:"device"`
}

// MetricsConfig is the `metrics:` section.
type MetricsConfig struct {
	// Listen is the address of the /metrics and /healthz endpoint; empty
	// disables it. Default 127.0.0.1:8353 (loopback: exposing it is a
	// choice); the port is outside 9100-9999, the range Prometheus'
	// default port allocations give to exporters (9100 is node_exporter's,
	// which many Pis run).
	Listen *string `yaml:"listen"`
}

func (c *Config) defaults() {
	if c.Gateway.ID == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			c.Gateway.ID = h
		} else {
			c.Gateway.ID = "sensorgate"
		}
	}
	if c.Gateway.DataDir == "" {
		c.Gateway.DataDir = "data"
	}
	if c.Gateway.QueueSize == 0 {
		c.Gateway.QueueSize = 4096
	}
	if c.Gateway.CheckpointDelay == 0 {
		c.Gateway.CheckpointDelay = time.Second
	}
	if c.Gateway.CheckpointInterval == 0 {
		c.Gateway.CheckpointInterval = 5 * time.Second
	}
	if c.Gateway.ShutdownGrace == 0 {
		c.Gateway.ShutdownGrace = 5 * time.Second
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Metrics.Listen == nil {
		l := "127.0.0.1:8353"
		c.Metrics.Listen = &l
	}
	c.Broker.Defaults()
	c.localSources = map[int]bool{}
	for i := range c.Sources.MQTT {
		if c.Sources.MQTT[i].Broker == localBroker {
			// Validated as a loopback URL; the pipeline swaps in the
			// embedded broker's private listener and credentials.
			c.localSources[i] = true
			c.Sources.MQTT[i].Broker = "tcp://127.0.0.1:1883"
		}
		c.Sources.MQTT[i].Defaults()
	}
	c.Validation.Defaults()
	for i := range c.Sensors {
		s := &c.Sensors[i]
		if s.Sim != nil {
			s.Sim.Defaults()
		}
		if drivers.Known(s.Type) {
			if s.Device == nil {
				s.Device = &drivers.DeviceConfig{} // every field has a default
			}
			s.Device.Defaults(s.Type)
		}
	}
	c.Rules.Defaults()
	// The outbox cannot read summaries; the rules merge them (the hook is
	// always passed to buffer.Open, see outboxOptions). With it, a full
	// summaries lane keeps coverage at a coarser resolution instead of
	// losing the oldest windows.
	if c.Buffer.Lanes.Summaries.Policy == "" {
		c.Buffer.Lanes.Summaries.Policy = buffer.PolicyRollUp
	}
	c.Buffer.Defaults()
	if c.Buffer.Path == "" {
		c.Buffer.Path = filepath.Join(c.Gateway.DataDir, "outbox.db")
	}
	// Uplinks that name no lanes take the lanes no other uplink claims.
	uplink.AssignDefaultLanes(c.Uplinks)
	for i := range c.Uplinks {
		c.Uplinks[i].Defaults()
	}
}

var gatewayIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func (c *Config) validate() error {
	var errs []error
	add := func(prefix string, err error) {
		if err != nil {
			errs = append(errs, ingest.PrefixErrors(prefix, err))
		}
	}
	if !gatewayIDRe.MatchString(c.Gateway.ID) {
		errs = append(errs, ingest.FieldErrorf("gateway.id", "must be letters, digits, '.', '_' or '-' (it goes into MQTT topics), got %q", c.Gateway.ID))
	}
	if q := c.Gateway.QueueSize; q < 1 || q > maxQueueLen {
		errs = append(errs, ingest.FieldErrorf("gateway.queue_size", "must be between 1 and %d, got %d", maxQueueLen, q))
	}
	if c.Gateway.ShutdownGrace < 0 {
		errs = append(errs, ingest.FieldErrorf("gateway.shutdown_grace", "must be >= 0"))
	}
	if d := c.Gateway.CheckpointDelay; d < time.Millisecond || d > 10*time.Second {
		errs = append(errs, ingest.FieldErrorf("gateway.checkpoint_delay", "must be between 1ms and 10s (is %s)", d))
	}
	if d := c.Gateway.CheckpointInterval; d < c.Gateway.CheckpointDelay || d > 10*time.Minute {
		errs = append(errs, ingest.FieldErrorf("gateway.checkpoint_interval", "must be between checkpoint_delay and 10m (is %s)", d))
	}
	if l := c.Gateway.MemoryLimit; l != -1 && l != 0 && l < minMemoryLimit {
		errs = append(errs, ingest.FieldErrorf("gateway.memory_limit", "must be at least 33554432 (32 MiB), 0 for a quarter of the machine's memory, or -1 for no limit, got %d", l))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, ingest.FieldErrorf("log.level", "must be debug, info, warn or error, got %q", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, ingest.FieldErrorf("log.format", "must be text or json, got %q", c.Log.Format))
	}
	add("broker", c.Broker.Validate())
	for i := range c.Sources.MQTT {
		add("sources.mqtt["+strconv.Itoa(i)+"]", c.Sources.MQTT[i].Validate())
		if c.localSources[i] && !c.Broker.Enabled {
			errs = append(errs, ingest.FieldErrorf("sources.mqtt["+strconv.Itoa(i)+"].broker", "is \"local\" but the embedded broker is off (set broker.enabled: true)"))
		}
	}
	add("validation", c.Validation.Validate())
	seen := map[string]int{}
	for i, s := range c.Sensors {
		p := "sensors[" + strconv.Itoa(i) + "]"
		switch {
		case s.ID == "":
			errs = append(errs, ingest.FieldErrorf(p+".id", "is required"))
		default:
			if j, dup := seen[s.ID]; dup {
				errs = append(errs, ingest.FieldErrorf(p+".id", "%q is already used by sensors[%d]", s.ID, j))
			}
			seen[s.ID] = i
		}
		if s.Sim != nil && s.Type != "sim" {
			errs = append(errs, ingest.FieldErrorf(p+".sim", "is only valid with type: sim"))
		}
		if s.Device != nil && !drivers.Known(s.Type) {
			errs = append(errs, ingest.FieldErrorf(p+".device", "is only valid with a chip type (%s)", strings.Join(drivers.Types(), ", ")))
		}
		switch {
		case s.Type == "":
		case s.Type == "sim":
			if s.Sim == nil {
				errs = append(errs, ingest.FieldErrorf(p+".sim", "is required for type: sim"))
			} else {
				add(p+".sim", s.Sim.Validate())
			}
		case drivers.Known(s.Type):
			add(p+".device", s.Device.Validate(s.Type))
		default:
			errs = append(errs, ingest.FieldErrorf(p+".type", "unknown sensor type %q (want sim, %s, or leave it out for a sensor that publishes over MQTT)", s.Type, strings.Join(drivers.Types(), ", ")))
		}
		for m, r := range s.Ranges {
			add(p+".ranges."+m, r.Validate())
		}
	}
	add("rules", c.Rules.Validate())
	add("buffer", c.Buffer.Validate())
	errs = append(errs, c.machineLimits()...)
	for i := range c.Uplinks {
		p := "uplinks[" + strconv.Itoa(i) + "]"
		add(p, c.Uplinks[i].Validate())
	}
	add("uplinks", uplink.ValidateRouting(c.Uplinks))
	if len(c.Sources.MQTT) == 0 && !c.hasLocalSensors() {
		errs = append(errs, ingest.FieldErrorf("sources", "no source configured: add sources.mqtt, or a sensor of type sim or a chip type"))
	}
	return errors.Join(errs...)
}

// Limits of the size and count keys that buy memory up front or per
// message. Past them a config that validates could not run: queue_size
// 1e12 passed validate and then died "out of memory" in run. Each is far
// beyond what a gateway needs (the defaults are hundreds to thousands of
// entries, 64 KiB to 8 MiB) and within what a small board holds. The
// packages that own the keys check only their sign (and MQTT's own
// 65535 for in-flight windows); the machine's bounds are the gateway's.
const (
	maxQueueLen   = 1_000_000 // queue_size, commit_max, queue_max
	maxBatch      = 10_000    // uplinks[].batch_size
	maxQueueBytes = 1 << 30   // sources.mqtt[].queue_bytes
	maxPayload    = 16 << 20  // sources.mqtt[].max_payload
	maxBatchBytes = 64 << 20  // uplinks[].batch_bytes
	maxMQTTPacket = 268435455 // MQTT's largest packet: broker.max_packet_size, uplinks[].max_message_bytes
)

type limit struct {
	key  string
	v    int
	max  int
	unit string // the limit in words, for byte sizes
}

// machineLimits checks every key of limits above.
func (c *Config) machineLimits() []error {
	ls := []limit{
		{"broker.max_packet_size", c.Broker.MaxPacketSize, maxMQTTPacket, " (256 MiB, MQTT's limit)"},
		{"buffer.commit_max", c.Buffer.CommitMax, maxQueueLen, ""},
		{"buffer.queue_max", c.Buffer.QueueMax, maxQueueLen, ""},
	}
	for i, m := range c.Sources.MQTT {
		p := "sources.mqtt[" + strconv.Itoa(i) + "]."
		ls = append(ls, limit{p + "queue_size", m.QueueSize, maxQueueLen, ""},
			limit{p + "queue_bytes", m.QueueBytes, maxQueueBytes, " (1 GiB)"},
			limit{p + "max_payload", m.MaxPayload, maxPayload, " (16 MiB)"})
	}
	for i, u := range c.Uplinks {
		p := "uplinks[" + strconv.Itoa(i) + "]."
		ls = append(ls, limit{p + "batch_size", u.BatchSize, maxBatch, ""},
			limit{p + "batch_bytes", u.BatchBytes, maxBatchBytes, " (64 MiB)"},
			limit{p + "max_message_bytes", u.MaxMessageBytes, maxMQTTPacket, " (256 MiB, MQTT's limit)"})
	}
	var errs []error
	for _, l := range ls {
		if l.v > l.max {
			errs = append(errs, ingest.FieldErrorf(l.key, "must be at most %d%s, got %d", l.max, l.unit, l.v))
		}
	}
	return errs
}

// hasLocalSensors reports whether the gateway produces readings itself
// (simulated sensors or chips).
func (c *Config) hasLocalSensors() bool {
	for _, s := range c.Sensors {
		if s.Type != "" {
			return true
		}
	}
	return false
}

// loadConfig reads, decodes, defaults and validates the config at path.
// Every problem is returned, each with its key path and line.
func loadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	// One byte past the limit tells a file at the limit from a larger one
	// without reading all of a huge (or endless: a FIFO, /dev/zero) file.
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parseConfig(data, lookupEnv)
}

// maxConfigBytes bounds the config file. A file is parsed whole into memory
// (and again at every SIGHUP, next to the running gateway): 4 MB of YAML
// took 1.5 s and 336 MB to validate. A config that lists 10,000 sensors
// with a location and tags each is 1 to 2 MB, so 4 MiB, not less.
const maxConfigBytes = 4 << 20

func parseConfig(data []byte, getenv func(string) (string, bool)) (*Config, error) {
	if len(data) > maxConfigBytes {
		return nil, ConfigErrors{{Msg: fmt.Sprintf("config: file larger than %d bytes (4 MiB)", maxConfigBytes)}}
	}
	doc, errs := yamlload.Parse(data, getenv)
	if doc == nil {
		return nil, errs
	}
	var c Config
	errs = append(errs, doc.Decode(&c)...)
	if len(errs) == 0 {
		c.defaults()
		errs = append(errs, doc.Locate(c.validate())...)
	}
	if errs = yamlload.Sort(errs); len(errs) > 0 {
		return nil, errs
	}
	return &c, nil
}

// ConfigError and ConfigErrors are the loader's located errors.
type (
	ConfigError  = yamlload.Error
	ConfigErrors = yamlload.Errors
)

// lookupEnv is os.LookupEnv; a variable so tests can use a fixed environment.
func lookupEnv(name string) (string, bool) { return os.LookupEnv(name) }
