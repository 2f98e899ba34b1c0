package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/simulator"
)

// Payload formats of the load generator.
const (
	FormatJSON    = "json"
	FormatSenML   = "senml"
	FormatMsgpack = "msgpack"
)

// Config configures [Run].
type Config struct {
	// Broker is the MQTT broker URL (tcp://127.0.0.1:1883).
	Broker   string
	Username string
	Password string
	// ClientID prefixes the clients' ids (default "sensorgate-sim"); each
	// connection appends "-<n>".
	ClientID string
	// Sensors is the number of simulated sensors, named by SensorID.
	Sensors int
	// Rate is the total number of messages per second (one message is one
	// sample of one sensor, all its metrics).
	Rate float64
	// Duration of the run; 0 runs until ctx is cancelled.
	Duration time.Duration
	// QoS of the publishes: 0, 1 or 2.
	QoS byte
	// Format is json (default), senml or msgpack.
	Format string
	// Topic is the topic template; {sensor} is replaced by the sensor id
	// (default "sensors/{sensor}/telemetry").
	Topic string
	Seed  int64
	// Metrics of every sensor (default: temperature, a random walk around
	// 20 °C, and humidity, a random walk around 50 %).
	Metrics map[string]simulator.Signal
	Faults  simulator.Faults
	// Connections is how many MQTT connections publish (default 2; reduced
	// so that it divides Sensors, as every sensor stays on one connection
	// to keep its messages in order).
	Connections int
	// Inflight bounds the QoS 1/2 messages awaiting acknowledgement per
	// connection (default 1000).
	Inflight int
	// Paho forces the paho client for QoS 0 too. By default QoS 0 over
	// tcp:// uses a minimal MQTT 3.1.1 publisher that batches packets into
	// one write per scheduling tick (paho writes every packet with its own
	// system call, which costs about five times the CPU).
	Paho bool
	// TruthWindow, when > 0, adds per-window totals to the truth: tumbling
	// windows of this size in event time, aligned to the Unix epoch as the
	// gateway's are (start = floor(t/size)*size), with t the event time the
	// payload carries (milliseconds for json and senml, nanoseconds for
	// msgpack).
	TruthWindow time.Duration
	// Progress, when set, is called about once a second from a separate
	// goroutine.
	Progress func(Progress)
	Now      func() time.Time
	Logger   *slog.Logger
}

// Progress is a progress report of a running load.
type Progress struct {
	Elapsed time.Duration
	Sent    uint64
	// Rate is the messages per second over the last report interval.
	Rate float64
}

// Result is the outcome of Run.
type Result struct {
	// Sent is the number of messages published without error (duplicates
	// and malformed payloads included).
	Sent uint64
	// Errors counts publishes that failed (not connected, no ack).
	Errors uint64
	// Elapsed is from the start of the schedule until the last publish
	// completed, and at least the configured Duration.
	Elapsed time.Duration
	// Rate is Sent / Elapsed.
	Rate  float64
	Truth Truth
}

// Agg is what was sent for one sensor and metric (or in total).
type Agg struct {
	Count uint64  `json:"count"`
	Sum   float64 `json:"sum"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
}

func (a *Agg) add(v float64) {
	if a.Count == 0 || v < a.Min {
		a.Min = v
	}
	if a.Count == 0 || v > a.Max {
		a.Max = v
	}
	a.Count++
	a.Sum += v
}

func (a *Agg) merge(b Agg) {
	if b.Count == 0 {
		return
	}
	if a.Count == 0 || b.Min < a.Min {
		a.Min = b.Min
	}
	if a.Count == 0 || b.Max > a.Max {
		a.Max = b.Max
	}
	a.Count += b.Count
	a.Sum += b.Sum
}

// Truth is what the load generator sent, so that a test can check a
// gateway's summaries exactly. Values of malformed messages are not
// counted; both copies of a duplicate are.
type Truth struct {
	Seed     int64   `json:"seed"`
	Format   string  `json:"format"`
	Topic    string  `json:"topic"`
	QoS      byte    `json:"qos"`
	Rate     float64 `json:"rate"`
	Messages uint64  `json:"messages"` // published without error
	Errors   uint64  `json:"errors"`   // publishes that failed (their values are still counted below)
	// Malformed messages (sent, but not decodable), duplicate messages (sent
	// twice), samples lost to dropouts, samples with a past timestamp.
	Malformed  uint64 `json:"malformed"`
	Duplicates uint64 `json:"duplicates"`
	Dropouts   uint64 `json:"dropouts"`
	OutOfOrder uint64 `json:"out_of_order"`
	// Total is over every sensor and metric.
	Total Agg `json:"total"`
	// Sensors maps sensor id to metric to what was sent.
	Sensors map[string]map[string]Agg `json:"sensors"`
	// Window is Config.TruthWindow (ns); Windows what was sent per sensor,
	// metric and window, ordered by sensor, metric and start.
	Window  time.Duration `json:"window,omitempty"`
	Windows []WindowAgg   `json:"windows,omitempty"`
}

// WindowAgg is what was sent for one sensor and metric with an event time
// in [Start, End) (Unix ns).
type WindowAgg struct {
	Sensor string `json:"sensor"`
	Metric string `json:"metric"`
	Start  int64  `json:"start"`
	End    int64  `json:"end"`
	Agg
}

// WriteFile writes the truth as indented JSON.
func (t *Truth) WriteFile(path string) error {
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return fmt.Errorf("load: truth: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("load: truth: %w", err)
	}
	return nil
}

// ReadTruth reads a file written by Truth.WriteFile.
func ReadTruth(path string) (*Truth, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load: truth: %w", err)
	}
	var t Truth
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("load: truth %s: %w", path, err)
	}
	return &t, nil
}

// SensorID is the id of simulated sensor i (0-based) of n in a load run:
// "sim-0001" and so on, zero-padded to the width of n (at least 4 digits).
func SensorID(i, n int) string {
	w := max(len(strconv.Itoa(n)), 4)
	return fmt.Sprintf("sim-%0*d", w, i+1)
}

// DefaultMetrics returns the metrics used when Config.Metrics is
// empty.
func DefaultMetrics() map[string]simulator.Signal {
	return map[string]simulator.Signal{
		"temperature": {Model: simulator.ModelRandomWalk, Base: 20, Step: 0.1, Noise: 0.05, Min: -40, Max: 85, Unit: "°C"},
		"humidity":    {Model: simulator.ModelRandomWalk, Base: 50, Step: 0.5, Min: 0, Max: 100, Unit: "%RH"},
	}
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.ClientID == "" {
		c.ClientID = "sensorgate-sim"
	}
	if c.Format == "" {
		c.Format = FormatJSON
	}
	if c.Topic == "" {
		c.Topic = "sensors/{sensor}/telemetry"
	}
	if len(c.Metrics) == 0 {
		c.Metrics = DefaultMetrics()
	}
	for n, g := range c.Metrics {
		g.Defaults()
		c.Metrics[n] = g
	}
	if c.Connections == 0 {
		c.Connections = 2
	}
	if c.Inflight == 0 {
		c.Inflight = 1000
	}
	if c.Rate > 0 && c.Sensors > 0 {
		c.Faults.Defaults(c.interval())
	}
}

// interval is each sensor's nominal sampling interval.
func (c *Config) interval() time.Duration {
	return max(time.Duration(float64(c.Sensors)/c.Rate*float64(time.Second)), 1)
}

// Validate checks the config; paths are the flag names.
func (c Config) Validate() error {
	var errs []error
	if c.Broker == "" {
		errs = append(errs, ingest.FieldErrorf("broker", "is required"))
	}
	if c.Sensors <= 0 {
		errs = append(errs, ingest.FieldErrorf("sensors", "must be > 0"))
	}
	if !(c.Rate > 0) || math.IsInf(c.Rate, 0) {
		errs = append(errs, ingest.FieldErrorf("rate", "must be > 0"))
	}
	if c.Duration < 0 {
		errs = append(errs, ingest.FieldErrorf("duration", "must be >= 0"))
	}
	if c.QoS > 2 {
		errs = append(errs, ingest.FieldErrorf("qos", "must be 0, 1 or 2"))
	}
	switch c.Format {
	case FormatJSON, FormatSenML, FormatMsgpack:
	default:
		errs = append(errs, ingest.FieldErrorf("format", "unknown format %q (want json, senml or msgpack)", c.Format))
	}
	if !strings.Contains(c.Topic, "{sensor}") {
		errs = append(errs, ingest.FieldErrorf("topic", "must contain {sensor}"))
	}
	if strings.ContainsAny(c.Topic, "+#") {
		errs = append(errs, ingest.FieldErrorf("topic", "must not contain wildcards"))
	}
	if c.TruthWindow < 0 {
		errs = append(errs, ingest.FieldErrorf("truth_window", "must be >= 0"))
	}
	if c.Connections < 0 {
		errs = append(errs, ingest.FieldErrorf("connections", "must be > 0"))
	}
	for _, n := range sortedKeys(c.Metrics) {
		if err := c.Metrics[n].Validate(); err != nil {
			errs = append(errs, ingest.PrefixErrors("metrics."+n, err))
		}
	}
	if err := c.Faults.Validate(); err != nil {
		errs = append(errs, ingest.PrefixErrors("faults", err))
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// loadSensor is one sensor of a load run.
type loadSensor struct {
	*simulator.Sampler
	id      string
	metrics []simulator.Metric
	vals    []float64
	topic   string
	aggs    []Agg
	batch   ingest.ReadingBatch // reused by the msgpack payload encoder
	// Per-window truth: the current window's aggregates (one per metric)
	// and every window's, by start.
	winStart int64
	winAggs  []Agg
	windows  map[int64][]Agg
}

// addWindow counts the sample's values in the window of event time evt.
func (s *loadSensor) addWindow(size, evt int64) {
	start := evt - ((evt%size)+size)%size
	if s.windows == nil {
		s.windows = map[int64][]Agg{}
	}
	if s.winAggs == nil || start != s.winStart {
		if s.winAggs != nil {
			s.windows[s.winStart] = s.winAggs
		}
		s.winStart, s.winAggs = start, s.windows[start]
		if s.winAggs == nil {
			s.winAggs = make([]Agg, len(s.metrics))
		}
	}
	for i, v := range s.vals {
		s.winAggs[i].add(v)
	}
}

// windowTruth returns the sensor's per-window truth, ordered by metric
// and start.
func (s *loadSensor) windowTruth(size int64) []WindowAgg {
	if s.winAggs != nil {
		s.windows[s.winStart] = s.winAggs
	}
	starts := make([]int64, 0, len(s.windows))
	for st := range s.windows {
		starts = append(starts, st)
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
	var out []WindowAgg
	for i, m := range s.metrics {
		for _, st := range starts {
			if a := s.windows[st][i]; a.Count > 0 {
				out = append(out, WindowAgg{Sensor: s.id, Metric: m.Name, Start: st, End: st + size, Agg: a})
			}
		}
	}
	return out
}

// Run publishes simulated sensors to an MQTT broker at cfg.Rate
// messages per second until cfg.Duration has passed (or ctx is cancelled),
// and returns what it sent. Defaults are applied to a copy of cfg.
//
// Message m (counting from 0 across all sensors) is due at start + m/Rate
// and belongs to sensor m mod Sensors. Each connection publishes its share
// of the messages in a tight loop against that absolute schedule, sleeping
// only when more than a millisecond ahead, so the average rate holds even
// when the scheduler or the broker stalls briefly; a broker that cannot keep
// up shows as Result.Rate below cfg.Rate.
func Run(ctx context.Context, cfg Config) (Result, error) {
	m := make(map[string]simulator.Signal, len(cfg.Metrics))
	for k, v := range cfg.Metrics {
		m[k] = v
	}
	cfg.Metrics = m
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return Result{}, fmt.Errorf("load: config: %w", err)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	conns := min(cfg.Connections, cfg.Sensors)
	for cfg.Sensors%conns != 0 {
		conns--
	}
	scfg := simulator.SensorConfig{Interval: cfg.interval(), Metrics: cfg.Metrics, Faults: cfg.Faults}
	sensors := make([]*loadSensor, cfg.Sensors)
	for i := range sensors {
		id := SensorID(i, cfg.Sensors)
		sensors[i] = newLoadSensor(simulator.NewSampler(cfg.Seed, id, scfg), strings.ReplaceAll(cfg.Topic, "{sensor}", id))
	}

	var (
		sent atomic.Uint64
		errs atomic.Uint64
	)
	sinks := make([]loadSink, 0, conns)
	defer func() {
		for _, k := range sinks {
			k.close()
		}
	}()
	for i := range conns {
		id := fmt.Sprintf("%s-%d", cfg.ClientID, i)
		var k loadSink
		var err error
		if cfg.QoS == 0 && !cfg.Paho && rawScheme(cfg.Broker) {
			k, err = dialRaw(ctx, cfg.Broker, id, cfg.Username, cfg.Password, &sent, &errs)
		} else {
			k, err = dialPaho(&cfg, id, &sent, &errs)
		}
		if err != nil {
			return Result{}, err
		}
		sinks = append(sinks, k)
	}

	var total uint64 = math.MaxUint64
	if cfg.Duration > 0 {
		total = uint64(math.Round(cfg.Rate * cfg.Duration.Seconds()))
	}
	var (
		bad    atomic.Uint64
		wg     sync.WaitGroup
		start  = now()
		doneMu sync.Mutex
		doneAt time.Time
	)
	log.Info("load: load start", "broker", cfg.Broker, "sensors", cfg.Sensors, "rate", cfg.Rate, "connections", conns, "messages", total)
	progCtx, stopProg := context.WithCancel(ctx)
	var progWG sync.WaitGroup
	if cfg.Progress != nil {
		progWG.Add(1)
		go func() {
			defer progWG.Done()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			last, lastT := uint64(0), start
			report := func(tt time.Time) {
				n := sent.Load()
				cfg.Progress(Progress{Elapsed: tt.Sub(start), Sent: n, Rate: float64(n-last) / tt.Sub(lastT).Seconds()})
				last, lastT = n, tt
			}
			for {
				select {
				case <-progCtx.Done():
					select {
					case tt := <-t.C: // a tick this goroutine had no CPU for yet
						report(tt)
					default:
					}
					return
				case tt := <-t.C:
					report(tt)
				}
			}
		}()
	}
	for p := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pub := &publisher{cfg: &cfg, sink: sinks[p], sensors: sensors, bad: &bad, now: now}
			pub.run(ctx, p, conns, total, start)
			t := now()
			doneMu.Lock()
			if t.After(doneAt) {
				doneAt = t
			}
			doneMu.Unlock()
		}()
	}
	wg.Wait()
	stopProg()
	progWG.Wait()

	elapsed := doneAt.Sub(start)
	if ctx.Err() == nil {
		// The schedule spans Duration: message m occupies [m/Rate, (m+1)/Rate).
		elapsed = max(elapsed, cfg.Duration)
	}
	res := Result{Sent: sent.Load(), Errors: errs.Load(), Elapsed: elapsed}
	if elapsed > 0 {
		res.Rate = float64(res.Sent) / elapsed.Seconds()
	}
	tr := Truth{Seed: cfg.Seed, Format: cfg.Format, Topic: cfg.Topic, QoS: cfg.QoS, Rate: cfg.Rate,
		Messages: res.Sent, Errors: res.Errors, Malformed: bad.Load(), Sensors: make(map[string]map[string]Agg, len(sensors))}
	for _, s := range sensors {
		n := s.Counts()
		tr.Duplicates += n.Duplicates
		tr.Dropouts += n.Dropouts
		tr.OutOfOrder += n.OutOfOrder
		mm := make(map[string]Agg, len(s.metrics))
		for i, m := range s.metrics {
			mm[m.Name] = s.aggs[i]
			tr.Total.merge(s.aggs[i])
		}
		tr.Sensors[s.id] = mm
		if cfg.TruthWindow > 0 {
			tr.Window = cfg.TruthWindow
			tr.Windows = append(tr.Windows, s.windowTruth(int64(cfg.TruthWindow))...)
		}
	}
	res.Truth = tr
	log.Info("load: load done", "sent", res.Sent, "errors", res.Errors, "elapsed", res.Elapsed, "rate", res.Rate)
	return res, nil
}

func newLoadSensor(sp *simulator.Sampler, topic string) *loadSensor {
	ms := sp.Metrics()
	return &loadSensor{Sampler: sp, id: sp.ID(), metrics: ms, vals: make([]float64, len(ms)), topic: topic, aggs: make([]Agg, len(ms))}
}

// publisher is one connection's share of a load run.
type publisher struct {
	cfg     *Config
	sink    loadSink
	sensors []*loadSensor
	bad     *atomic.Uint64 // malformed messages published
	now     func() time.Time
	buf     []byte
}

func (p *publisher) run(ctx context.Context, first, step int, total uint64, start time.Time) {
	defer p.sink.close()
	sleep := time.NewTimer(time.Hour)
	sleep.Stop()
	defer sleep.Stop()
	nsPerMsg := float64(time.Second) / p.cfg.Rate
	n := uint64(len(p.sensors))
	for m := uint64(first); m < total; m += uint64(step) {
		if ctx.Err() != nil {
			return
		}
		due := start.Add(time.Duration(float64(m) * nsPerMsg))
		if d := due.Sub(p.now()); d > time.Millisecond {
			if p.sink.flush() != nil {
				return
			}
			sleep.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-sleep.C:
			}
		}
		s := p.sensors[m%n]
		o := s.Next()
		if o.Drop {
			continue
		}
		s.vals = o.Values
		ts := p.now().UnixNano() - o.Lag
		bad := false
		for i := range s.vals {
			s.vals[i] = math.Round(s.vals[i]*1000) / 1000
			if !ingest.Finite(s.vals[i]) {
				bad = true
			}
		}
		p.buf = encodePayload(p.buf[:0], p.cfg.Format, s, ts)
		payload := p.buf
		if bad {
			// NaN and ±Inf have no encoding in JSON and are refused at the
			// door anyway: the whole message becomes undecodable.
			payload = malform(payload, p.cfg.Format)
		}
		copies := 1
		if o.Dup {
			copies = 2
		}
		for range copies {
			if bad {
				p.bad.Add(1)
			} else {
				for i, v := range s.vals {
					s.aggs[i].add(v)
				}
				if p.cfg.TruthWindow > 0 {
					s.addWindow(int64(p.cfg.TruthWindow), eventTime(p.cfg.Format, ts))
				}
			}
			if p.sink.publish(ctx, s.topic, payload) != nil {
				return
			}
		}
	}
	p.sink.flush()
}

// eventTime is the event time (Unix ns) a gateway reads from a payload
// stamped ts: json and senml carry milliseconds.
func eventTime(format string, ts int64) int64 {
	if format == FormatMsgpack {
		return ts
	}
	ms := int64(time.Millisecond)
	return (ts - ((ts%ms)+ms)%ms)
}

// senmlUnit maps common units to SenML (RFC 8428 §12.1) names.
var senmlUnit = map[string]string{"°C": "Cel", "C": "Cel", "%": "%RH", "%RH": "%RH", "Pa": "Pa", "ppm": "ppm", "V": "V", "A": "A", "W": "W", "lx": "lx", "K": "K"}

// encodePayload appends the payload of one sample of s at event time ts
// (Unix ns) in format f. The formats are documented in doc.go.
func encodePayload(b []byte, f string, s *loadSensor, ts int64) []byte {
	switch f {
	case FormatSenML:
		b = append(b, `[{"bn":`...)
		b = strconv.AppendQuote(b, s.id+":")
		b = append(b, `,"bt":`...)
		b = strconv.AppendFloat(b, float64(ts/int64(time.Millisecond))/1000, 'f', 3, 64)
		for i, se := range s.metrics {
			if i > 0 {
				b = append(b, `},{`...)
			} else {
				b = append(b, ',')
			}
			b = append(b, `"n":`...)
			b = strconv.AppendQuote(b, se.Name)
			if u := senmlUnit[se.Unit]; u != "" {
				b = append(b, `,"u":`...)
				b = strconv.AppendQuote(b, u)
			}
			b = append(b, `,"v":`...)
			b = appendNum(b, s.vals[i])
		}
		return append(b, "}]"...)
	case FormatMsgpack:
		rb := &s.batch
		rb.Readings = rb.Readings[:0]
		for i, se := range s.metrics {
			rb.Readings = append(rb.Readings, ingest.Reading{Sensor: s.id, Metric: se.Name, Value: s.vals[i], Unit: se.Unit, Time: ts})
		}
		b, _ = rb.MarshalMsg(b) // cannot fail for these types
		return b
	default:
		b = append(b, `{"ts":`...)
		b = strconv.AppendInt(b, ts/int64(time.Millisecond), 10)
		for i, se := range s.metrics {
			b = append(b, ',')
			b = strconv.AppendQuote(b, se.Name)
			b = append(b, ':')
			b = appendNum(b, s.vals[i])
		}
		return append(b, '}')
	}
}

// appendNum appends v as a JSON number (the caller ensures it is finite).
func appendNum(b []byte, v float64) []byte {
	if !ingest.Finite(v) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// malform turns a payload into one that does not decode: truncated JSON,
// or a MessagePack batch cut short.
func malform(b []byte, f string) []byte {
	if f == FormatMsgpack {
		return b[:len(b)/2]
	}
	return b[:len(b)*2/3]
}
