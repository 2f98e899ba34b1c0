package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sensorgate/sensorgate/simulator/load"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// maxRate is the --rate passed to simulate for "max": far above what any
// broker here delivers, so the load generator never sleeps; the run is then
// stopped by SIGINT after the duration.
const maxRate = 10_000_000

// env is what every point shares.
type env struct {
	bin, mosquitto string
	work           string // scratch directory
	sensors        int
	duration       time.Duration
	window         string
	maxQueued      int
	profile        string   // when set, the gateway binary has the profiling overlay
	gatewayEnv     []string // extra environment of the gateway (GOMEMLIMIT=..., GOGC=...)
	sourceQueue    int      // sources.mqtt[0].queue_size, 0 = default
	readingsQueue  int      // gateway.queue_size, 0 = default
	readCoalesce   string   // sources.mqtt[0].read_coalesce, "" = default
	uplinkDown     bool     // the uplink points at a port nothing listens on
	caps           capabilities
	verbose        bool
	seq            int
}

// loadResult is one run of `sensorgate simulate`.
type loadResult struct {
	Target      float64 `json:"target_rate"` // 0 for max
	Sent        uint64  `json:"sent_messages"`
	Errors      uint64  `json:"publish_errors"`
	Elapsed     float64 `json:"elapsed_seconds"`
	Rate        float64 `json:"achieved_rate"`
	Readings    uint64  `json:"readings_sent"` // values in the truth file
	SimCPU      float64 `json:"simulator_cpu_seconds"`
	ExitOK      bool    `json:"simulate_exit_ok"`
	truth       *load.Truth
	wallStarted time.Time
}

var simLine = regexp.MustCompile(`simulate: sent=(\d+) errors=(\d+) elapsed=([0-9.]+)s rate=([0-9.]+)/s`)

// runLoad runs `sensorgate simulate` against broker at rate (0 = max) and
// reads back the truth file.
func (e *env) runLoad(ctx context.Context, broker string, rate float64, qos int, seed int64) (*loadResult, error) {
	return e.runLoadFor(ctx, broker, rate, qos, seed, e.duration)
}

// runLoadFor is runLoad for dur instead of --duration.
func (e *env) runLoadFor(ctx context.Context, broker string, rate float64, qos int, seed int64, dur time.Duration) (*loadResult, error) {
	e.seq++
	truthPath := filepath.Join(e.work, fmt.Sprintf("truth-%d.json", e.seq))
	r, simDur := rate, dur
	if rate == 0 {
		r, simDur = maxRate, 0 // until interrupted
	}
	args := []string{"simulate", "--broker", broker, "--sensors", strconv.Itoa(e.sensors),
		"--rate", strconv.FormatFloat(r, 'f', -1, 64), "--duration", simDur.String(), "--qos", strconv.Itoa(qos),
		"--truth", truthPath, "--quiet", "--seed", strconv.FormatInt(seed, 10), "--client-id", fmt.Sprintf("e2ebench-sim-%d", e.seq)}
	res := &loadResult{Target: rate, wallStarted: time.Now()}
	p, err := startProc(e.bin, args, nil)
	if err != nil {
		return nil, err
	}
	// A fixed-rate run ends by itself; a broker that cannot keep up makes it
	// longer, so the bound is generous. A max run is interrupted.
	limit := dur
	if rate > 0 {
		limit = 3*dur + 30*time.Second
	}
	select {
	case <-p.done:
	case <-time.After(limit):
		p.stop(syscall.SIGINT, 60*time.Second)
	case <-ctx.Done():
		p.stop(syscall.SIGINT, 10*time.Second)
		return nil, ctx.Err()
	}
	res.ExitOK = p.err == nil
	if st := p.cmd.ProcessState; st != nil {
		res.SimCPU = (st.UserTime() + st.SystemTime()).Seconds()
	}
	out := p.out.String()
	m := simLine.FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("simulate gave no result line (%v):\n%s", p.err, tail(out, 20))
	}
	res.Sent, _ = strconv.ParseUint(m[1], 10, 64)
	res.Errors, _ = strconv.ParseUint(m[2], 10, 64)
	res.Elapsed, _ = strconv.ParseFloat(m[3], 64)
	res.Rate, _ = strconv.ParseFloat(m[4], 64)
	tr, err := load.ReadTruth(truthPath)
	if err != nil {
		return nil, err
	}
	os.Remove(truthPath)
	res.truth = tr
	res.Readings = tr.Total.Count
	return res, nil
}

// brokerPoint is one broker-alone run: simulator -> mosquitto -> a bare
// paho subscriber that counts.
type brokerPoint struct {
	Mode        mode       `json:"mode"` // QoS and in-flight window only`
	Repeat      int        `json:"repeat"`
	Load        loadResult `json:"load"`
	Delivered   uint64     `json:"delivered"`
	DeliveredPS float64    `json:"delivered_rate"` // between the first and the last message
	Lost        int64      `json:"lost"`           // sent - delivered
	BrokerCPU   float64    `json:"broker_cpu_seconds"`
	LoadAvg     string     `json:"loadavg"`
}

func (e *env) runBroker(ctx context.Context, m mode, repeat int, rate float64, seed int64) (*brokerPoint, error) {
	m = m.brokerKey()
	dir, err := os.MkdirTemp(e.work, "broker-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	mq, err := startMosquitto(e.mosquitto, dir, e.maxQueued, m.InFlight)
	if err != nil {
		return nil, err
	}
	defer mq.Close()
	sub, err := connect(mq.URL(), "e2ebench-bare")
	if err != nil {
		return nil, err
	}
	defer sub.Disconnect(100)
	var cnt counter
	if err := subscribe(sub, "sensors/+/telemetry", byte(m.QoS), cnt.handle); err != nil {
		return nil, err
	}
	cpu0, _ := cpuSeconds(mq.Pid())
	load, err := e.runLoad(ctx, mq.URL(), rate, m.QoS, seed)
	if err != nil {
		return nil, err
	}
	// Wait until the subscriber has everything or nothing has come for 2 s.
	for stable, last := 0, uint64(0); ; {
		n := cnt.n.Load()
		if n >= load.Sent {
			break
		}
		if n == last {
			stable++
		} else {
			stable, last = 0, n
		}
		if stable >= 20 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cpu1, _ := cpuSeconds(mq.Pid())
	bp := &brokerPoint{Mode: m, Repeat: repeat, Load: *load, Delivered: cnt.n.Load(), DeliveredPS: cnt.rate(),
		BrokerCPU: cpu1 - cpu0, LoadAvg: loadAvg()}
	bp.Lost = int64(load.Sent) - int64(bp.Delivered)
	return bp, nil
}

// gatewayPoint is one run through the real gateway.
type gatewayPoint struct {
	Mode    mode   `json:"mode"`
	Repeat  int    `json:"repeat"`
	RateArg string `json:"rate_arg"` // as given in --rates
	// Ceiling is the broker-alone delivered rate of the same repeat, QoS
	// and in-flight window; OfCeiling the achieved input rate over it.
	Ceiling   float64    `json:"ceiling"`
	OfCeiling float64    `json:"of_ceiling"`
	Load      loadResult `json:"load"`
	Compare   comparison `json:"compare"`
	// Loss is readings sent minus readings accounted for in the summaries
	// (keys short of their truth count; excess is reported separately).
	Loss        uint64  `json:"loss"`
	LossPct     float64 `json:"loss_pct"`
	Ingested    uint64  `json:"ingested_readings"` // source Readings during the load
	Received    uint64  `json:"received_messages"` // source Received during the load
	Dropped     uint64  `json:"source_dropped"`    // QoS 0 hand-off drops in mqttsub
	DecodeErrs  uint64  `json:"decode_errors"`
	Late        uint64  `json:"rules_late"`
	Rejected    uint64  `json:"rules_rejected"`
	BrokerDrops int64   `json:"broker_dropped"` // mosquitto $SYS publish/messages/dropped, -1 unknown
	CPU         float64 `json:"cpu_seconds"`    // gateway utime+stime from load start to drained
	CPUPerMR    float64 `json:"cpu_s_per_million_readings"`
	CPUPerMM    float64 `json:"cpu_s_per_million_messages"`
	BrokerCPU   float64 `json:"broker_cpu_seconds"`
	IdleRSSKB   int64   `json:"idle_rss_kb"`
	IdleAnonKB  int64   `json:"idle_rss_anon_kb"` // heap, stacks, runtime
	IdleFileKB  int64   `json:"idle_rss_file_kb"` // mapped binary pages
	PeakRSSKB   int64   `json:"peak_rss_kb"`      // VmHWM before SIGTERM
	EndRSSKB    int64   `json:"end_rss_kb"`       // VmRSS when drained, and its split
	EndAnonKB   int64   `json:"end_rss_anon_kb"`
	EndFileKB   int64   `json:"end_rss_file_kb"`
	DrainSecs   float64 `json:"drain_seconds"`
	// MeasureSecs is the interval the CPU and the writes below cover: load
	// start to drained.
	MeasureSecs float64 `json:"measure_seconds"`
	// Flash wear, from load start to drained: what the gateway process
	// wrote (/proc/PID/io, IOField says write_bytes or wchar) and, when the
	// binary counts them, the outbox's bbolt write transactions and bytes
	// (pages written) and the rules' checkpoints; -1 when absent.
	IOWritten    int64  `json:"io_written_bytes"`
	IOField      string `json:"io_field,omitempty"`
	WriteTxs     int64  `json:"outbox_write_txs"`
	BytesWritten int64  `json:"outbox_bytes_written"`
	Commits      uint64 `json:"outbox_record_commits"`
	Checkpoints  int64  `json:"rules_checkpoints"`
	// DurableAcks is the source's count of messages acknowledged after a
	// commit during the load (-1: the binary does not count them): > 0
	// shows the point was durable.
	DurableAcks int64   `json:"durable_acks"`
	Redelivered uint64  `json:"redelivered"`
	FlushOnStop bool    `json:"flush_on_stop,omitempty"`
	InFlightSet bool    `json:"inflight_key_set,omitempty"`
	StopSecs    float64 `json:"stop_seconds"`
	StopOK      bool    `json:"stop_ok"`
	Undelivered int64   `json:"undelivered"` // from the gateway's "stopped" log line, -1 unknown
	LoadAvg     string  `json:"loadavg"`
	Notes       string  `json:"notes,omitempty"`
	// With --uplink-down: what piled up in the outbox (summaries lane and
	// in total), and its file.
	UplinkDown  bool   `json:"uplink_down,omitempty"`
	OutboxDepth int64  `json:"outbox_depth,omitempty"`
	OutboxBytes int64  `json:"outbox_bytes,omitempty"`
	OutboxFile  int64  `json:"outbox_file_size,omitempty"`
	OutboxDrops uint64 `json:"outbox_dropped,omitempty"`
}

var undeliveredRe = regexp.MustCompile(`msg=stopped undelivered=(\d+)`)

func (e *env) runGateway(ctx context.Context, m mode, repeat int, rate float64, rateArg string, seed int64) (gp *gatewayPoint, err error) {
	dir, err := os.MkdirTemp(e.work, "gw-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	mq, err := startMosquitto(e.mosquitto, dir, e.maxQueued, m.InFlight)
	if err != nil {
		return nil, err
	}
	defer mq.Close()
	col := newCollector()
	up, err := connect(mq.URL(), "e2ebench-collector")
	if err != nil {
		return nil, err
	}
	defer up.Disconnect(100)
	if err := subscribe(up, "bench/#", 1, col.handle); err != nil {
		return nil, err
	}
	if err := subscribe(up, "$SYS/broker/publish/messages/dropped", 0, col.handleSys); err != nil {
		return nil, err
	}
	mport, err := mqtttest.PickPort()
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "gateway.yaml")
	upstream, grace := mq.URL(), 60*time.Second
	if e.uplinkDown {
		dead, err := mqtttest.PickPort()
		if err != nil {
			return nil, err
		}
		upstream, grace = fmt.Sprintf("tcp://127.0.0.1:%d", dead), time.Second
	}
	gc := gwConfig{dataDir: filepath.Join(dir, "data"), broker: mq.URL(), upstream: upstream, mode: m, inflightKey: e.caps.InFlightKey,
		metricsPort: mport, window: e.window, sourceQueue: e.sourceQueue, readingsQueue: e.readingsQueue, readCoalesce: e.readCoalesce, grace: grace}
	if err := os.WriteFile(cfg, []byte(gc.yaml()), 0o600); err != nil {
		return nil, err
	}
	genv := append([]string(nil), e.gatewayEnv...)
	prof := ""
	if e.profile != "" {
		prof = filepath.Join(dir, "cpu.pprof")
		genv = append(genv, profileEnv+"="+prof)
	}
	// SIGTERM keeps open windows in the store once windows survive a stop;
	// --flush-on-stop emits them, so the loss check still sees every one.
	args := []string{"run", "--config", cfg}
	if e.caps.FlushOnStop {
		args = append(args, "--flush-on-stop")
	}
	gw, err := startProc(e.bin, args, genv)
	if err != nil {
		return nil, err
	}
	defer func() {
		if !gw.exited() {
			gw.stop(syscall.SIGKILL, 5*time.Second)
		}
		if err != nil || e.verbose {
			fmt.Fprintf(os.Stderr, "gateway log (tail):\n%s\n", tail(gw.out.String(), 30))
		}
	}()
	gp = &gatewayPoint{Mode: m, Repeat: repeat, RateArg: rateArg, Undelivered: -1, FlushOnStop: e.caps.FlushOnStop,
		InFlightSet: m.InFlight > 0 && e.caps.InFlightKey}

	// Ready: the source has handed a probe reading to the pipeline, so the
	// subscription is in place.
	h0, err := e.waitIngesting(ctx, gw, up, mport)
	if err != nil {
		return nil, err
	}
	time.Sleep(time.Second)
	if m, err := memKB(gw.pid(), "VmRSS", "RssAnon", "RssFile"); err == nil {
		gp.IdleRSSKB, gp.IdleAnonKB, gp.IdleFileKB = m["VmRSS"], m["RssAnon"], m["RssFile"]
	}
	if h, err := getHealth(ctx, mport); err == nil {
		h0 = h
	}
	if prof != "" {
		_ = gw.cmd.Process.Signal(syscall.SIGUSR1)
	}
	cpu0, err := cpuSeconds(gw.pid())
	if err != nil {
		return nil, err
	}
	io0, ioErr := ioWritten(gw.pid())
	tm0 := time.Now()
	bcpu0, _ := cpuSeconds(mq.Pid())
	load, err := e.runLoad(ctx, mq.URL(), rate, m.QoS, seed)
	if err != nil {
		return nil, err
	}
	gp.Load = *load
	t0 := time.Now()
	h1, err := waitDrained(ctx, mport, h0, load.Sent)
	if err != nil {
		return nil, err
	}
	gp.DrainSecs = time.Since(t0).Seconds()
	cpu1, err := cpuSeconds(gw.pid())
	if err != nil {
		return nil, err
	}
	gp.IOWritten = -1
	if io1, err := ioWritten(gw.pid()); err == nil && ioErr == nil {
		n, field := written(io0, io1)
		gp.IOWritten, gp.IOField = int64(n), field
	}
	gp.MeasureSecs = time.Since(tm0).Seconds()
	wearDeltas(gp, h0, h1)
	bcpu1, _ := cpuSeconds(mq.Pid())
	if m, err := memKB(gw.pid(), "VmHWM", "VmRSS", "RssAnon", "RssFile"); err == nil {
		gp.PeakRSSKB = m["VmHWM"]
		gp.EndRSSKB, gp.EndAnonKB, gp.EndFileKB = m["VmRSS"], m["RssAnon"], m["RssFile"]
	}
	gp.LoadAvg = loadAvg()
	if prof != "" {
		_ = gw.cmd.Process.Signal(syscall.SIGUSR2)
		if err := waitFile(prof, 30*time.Second); err != nil {
			return nil, err
		}
		if err := copyFile(prof, e.profile); err != nil {
			return nil, err
		}
		if err := copyFile(prof+".heap", e.profile+".heap"); err != nil {
			return nil, err
		}
	}
	if e.uplinkDown {
		gp.UplinkDown = true
		for _, l := range h1.Components.Outbox.Lanes {
			gp.OutboxDepth += l.Depth
			gp.OutboxBytes += l.Bytes
			for _, n := range l.Dropped {
				gp.OutboxDrops += n
			}
		}
		gp.OutboxFile = h1.Components.Outbox.FileSize
	}
	gp.CPU = cpu1 - cpu0
	gp.BrokerCPU = bcpu1 - bcpu0
	src0, src1 := h0.Components.Source, h1.Components.Source
	gp.Received = src1.Received - src0.Received
	gp.Ingested = src1.Readings - src0.Readings
	gp.Dropped = src1.Dropped - src0.Dropped
	for r, n := range src1.DecodeErrors {
		gp.DecodeErrs += n - src0.DecodeErrors[r]
	}
	gp.Late = h1.Components.Rules.Late - h0.Components.Rules.Late
	gp.Rejected = h1.Components.Rules.Rejected - h0.Components.Rules.Rejected
	if gp.Ingested > 0 {
		gp.CPUPerMR = gp.CPU / (float64(gp.Ingested) / 1e6)
	}
	if gp.Received > 0 {
		gp.CPUPerMM = gp.CPU / (float64(gp.Received) / 1e6)
	}

	// Stop: SIGTERM flushes the open windows (with --flush-on-stop where
	// windows otherwise survive a stop); the uplink delivers within
	// shutdown_grace.
	ts := time.Now()
	gp.StopOK = gw.stop(syscall.SIGTERM, 90*time.Second) && gw.err == nil
	gp.StopSecs = time.Since(ts).Seconds()
	if m := undeliveredRe.FindStringSubmatch(gw.out.String()); m != nil {
		gp.Undelivered, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if !gp.StopOK {
		gp.Notes = fmt.Sprintf("gateway stop: %v; ", gw.err)
	}
	if e.uplinkDown {
		// Nothing went upstream; the summaries stay in the outbox.
		return gp, nil
	}
	// Let the last PUBACKed records reach the collector.
	for col.idleFor(ts) < time.Second && time.Since(ts) < 100*time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	gp.BrokerDrops = col.brokerDropped.Load()
	gp.Compare = col.compare(load.truth)
	gp.Loss = gp.Compare.Lost
	if load.Readings > 0 {
		gp.LossPct = 100 * float64(gp.Loss) / float64(load.Readings)
	}
	if gp.Compare.BadPayloads > 0 || gp.Compare.UnknownKeys > 0 || gp.Compare.ValueMismatch > 0 || gp.Compare.Excess > 0 {
		gp.Notes += fmt.Sprintf("check: %+v; ", gp.Compare)
	}
	return gp, nil
}

// waitDrained polls /healthz until the gateway has taken in sent messages
// since h0 (or the source's Received count has not moved for 1.5 s, or 120
// s passed) and returns the last snapshot.
func waitDrained(ctx context.Context, port int, h0 *health, sent uint64) (*health, error) {
	t0 := time.Now()
	for stable, last := 0, uint64(0); ; {
		h, err := getHealth(ctx, port)
		if err != nil {
			return nil, fmt.Errorf("healthz during drain: %w", err)
		}
		src := h.Components.Source
		n := src.Received - h0.Components.Source.Received
		// Everything received, the source's hand-off queue empty, the
		// rules have taken every reading the source sent on and no
		// durable message waits for its commit.
		if n >= sent && src.Queued == 0 && h.Components.Rules.Readings >= src.Readings && src.PendingAcks == 0 {
			return h, nil
		}
		// A durable source whose acks wait for a timed commit receives
		// nothing meanwhile: that is not the end of the stream.
		if n == last && src.PendingAcks == 0 {
			stable++
		} else {
			stable, last = 0, n
		}
		if stable >= 6 || time.Since(t0) > 120*time.Second {
			return h, nil
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// wearDeltas fills gp's outbox, checkpoint and durable-ack counts from two
// snapshots; -1 where the binary does not report them.
func wearDeltas(gp *gatewayPoint, h0, h1 *health) {
	delta := func(a, b *uint64) int64 {
		if a == nil || b == nil {
			return -1
		}
		return int64(*b - *a)
	}
	o0, o1 := h0.Components.Outbox, h1.Components.Outbox
	gp.WriteTxs = delta(o0.WriteTxs, o1.WriteTxs)
	gp.BytesWritten = delta(o0.BytesWritten, o1.BytesWritten)
	gp.Commits = o1.Commits - o0.Commits
	gp.Checkpoints = delta(h0.Components.Rules.Checkpoints, h1.Components.Rules.Checkpoints)
	gp.DurableAcks = delta(h0.durableAcks(), h1.durableAcks())
	gp.Redelivered = h1.Components.Source.Redelivered - h0.Components.Source.Redelivered
}

// waitIngesting publishes a probe reading every 200 ms until the gateway
// has counted one, and returns the health snapshot at that moment.
func (e *env) waitIngesting(ctx context.Context, gw *proc, c paho.Client, port int) (*health, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if gw.exited() {
			return nil, fmt.Errorf("gateway exited during start-up (%v)", gw.err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w after 30s", errNotReady)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if h, err := getHealth(ctx, port); err == nil && h.Components.Source.Readings > 0 {
			return h, nil
		}
		payload := fmt.Sprintf(`{"ts":%d,"temperature":1}`, time.Now().UnixMilli())
		c.Publish("sensors/"+probeSensor+"/telemetry", 1, false, payload).WaitTimeout(5 * time.Second)
		time.Sleep(200 * time.Millisecond)
	}
}

func waitFile(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if st, err := os.Stat(path); err == nil && st.Size() > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not written within %v", path, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}
