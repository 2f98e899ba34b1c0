package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// rateSpec is one entry of --rates: a fixed rate, "max", or a percentage of
// the broker-alone ceiling measured in the same repeat.
type rateSpec struct {
	arg   string
	rate  float64 // fixed rate (msg/s)
	max   bool
	ofCap float64 // fraction of the ceiling
}

func parseRates(s string) ([]rateSpec, error) {
	var out []rateSpec
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		r := rateSpec{arg: f}
		switch {
		case f == "max":
			r.max = true
		case strings.HasSuffix(f, "%"):
			v, err := strconv.ParseFloat(strings.TrimSuffix(f, "%"), 64)
			if err != nil || v <= 0 || v > 100 {
				return nil, fmt.Errorf("--rates: %q: want a percentage in (0, 100]", f)
			}
			r.ofCap = v / 100
		default:
			mult := 1.0
			g := f
			if strings.HasSuffix(g, "k") {
				g, mult = strings.TrimSuffix(g, "k"), 1000
			}
			v, err := strconv.ParseFloat(g, 64)
			if err != nil || v <= 0 {
				return nil, fmt.Errorf("--rates: %q: want a rate (5000, 20k), NN%% or max", f)
			}
			r.rate = v * mult
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, errors.New("--rates: empty")
	}
	return out, nil
}

// results is what --out writes.
type results struct {
	Command   string          `json:"command"`
	Machine   machine         `json:"machine"`
	Started   time.Time       `json:"started"`
	Finished  time.Time       `json:"finished"`
	Settings  settings        `json:"settings"`
	Broker    []*brokerPoint  `json:"broker_alone"`
	Gateway   []*gatewayPoint `json:"gateway"`
	Skipped   []string        `json:"skipped,omitempty"`
	Failures  []string        `json:"failures,omitempty"`
	Startup   []*startupPoint `json:"startup,omitempty"`
	Caps      capabilities    `json:"gateway_capabilities"`
	Profile   string          `json:"profile_top,omitempty"`
	Breakdown string          `json:"profile_breakdown,omitempty"`
}

type settings struct {
	Rates         string  `json:"rates"`
	QoS           string  `json:"qos"`
	Sensors       int     `json:"sensors"`
	Duration      string  `json:"duration"`
	Repeat        int     `json:"repeat"`
	Window        string  `json:"window"`
	MaxQueued     int     `json:"mosquitto_max_queued_messages"`
	ClockTick     float64 `json:"clock_ticks_per_second"`
	GatewayEnv    string  `json:"gateway_env,omitempty"`
	UplinkDown    bool    `json:"uplink_down,omitempty"`
	SourceQueue   int     `json:"source_queue_size,omitempty"`
	ReadingsQueue int     `json:"readings_queue_size,omitempty"`
	ReadCoalesce  string  `json:"read_coalesce,omitempty"`
	Startup       int     `json:"startup_readings,omitempty"`
	StartupRate   float64 `json:"startup_rate,omitempty"`
}

type machine struct {
	CPUs      int    `json:"cpus"`
	Model     string `json:"cpu_model"`
	Go        string `json:"go"`
	Mosquitto string `json:"mosquitto"`
	Kernel    string `json:"kernel"`
	LoadStart string `json:"loadavg_start"`
	LoadEnd   string `json:"loadavg_end"`
}

func describeMachine(mosq string) machine {
	m := machine{CPUs: runtime.NumCPU(), LoadStart: loadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if out, err := exec.Command("go", "version").Output(); err == nil {
		m.Go = strings.TrimSpace(string(out))
	}
	if out, _ := exec.Command(mosq, "-h").CombinedOutput(); len(out) > 0 {
		m.Mosquitto = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("e2ebench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: go run ./test/e2ebench [flags]

End-to-end benchmark of the real sensorgate binary through Debian's mosquitto:
simulate -> mosquitto -> sensorgate (10 s tumbling windows) -> mosquitto ->
collector, against simulate -> mosquitto -> a bare subscriber (the
broker-alone ceiling). Prints markdown tables for BENCHMARKS.md on stdout;
progress on stderr. See test/e2ebench/README.md.

Flags:
`)
		fs.PrintDefaults()
	}
	var (
		ratesArg  = fs.String("rates", "5000,20000,50000,100000,95%,max", "load points in msg/s (1 msg = 1 sample of one sensor with 2 readings); NN% is NN percent of the broker-alone ceiling measured in the same repeat; max publishes as fast as the simulator can")
		qosArg    = fs.String("qos", "0,1", "modes, comma-separated: 0 (QoS 0), 1 (QoS 1, durable: false), 1d (QoS 1 durable, the gateway's default), each optionally @N: mosquitto's max_inflight_messages N on the point's broker and the gateway source's inflight: N (without: mosquitto's default 20, the gateway's inflight unset); e.g. 0,1,1d,1d@1000,1@1000")
		sensors   = fs.Int("sensors", 1000, "simulated sensors")
		duration  = fs.Duration("duration", 15*time.Second, "load duration per point")
		repeat    = fs.Int("repeat", 3, "repeats of every point (medians are reported)")
		window    = fs.String("window", "10s", "tumbling window size of the gateway")
		out       = fs.String("out", "", "write every raw point as JSON to this file")
		cpuprof   = fs.String("cpuprofile", "", "after the matrix, run one extra QoS 0 point at --profile-rate with a profiling build of the gateway and write its CPU profile here (heap profile to FILE.heap)")
		profRate  = fs.Float64("profile-rate", 20000, "rate of the --cpuprofile point (msg/s)")
		quick     = fs.Bool("quick", false, "smoke run: --rates 20000 --qos 0 --repeat 1 --duration 10s")
		bin       = fs.String("bin", "", "use this sensorgate binary instead of building ./cmd/sensorgate")
		mosq      = fs.String("mosquitto", "/usr/sbin/mosquitto", "mosquitto binary")
		maxQueued = fs.Int("max-queued", 1000000, "mosquitto max_queued_messages (per client)")
		keepAbove = fs.Bool("keep-above-ceiling", false, "also run fixed rates above the broker-alone ceiling of that repeat (skipped by default: they equal max)")
		baseEach  = fs.Bool("baseline-each", false, "also run the broker-alone path at every fixed rate, for reference")
		seed      = fs.Int64("seed", 1, "base seed of the load generator")
		verbose   = fs.Bool("v", false, "print the gateway's log tail after every point")
		srcQueue  = fs.Int("source-queue", 0, "set the gateway's sources.mqtt[0].queue_size (0: the gateway's default)")
		rdQueue   = fs.Int("readings-queue", 0, "set the gateway's gateway.queue_size (0: the gateway's default)")
		coalesce  = fs.String("read-coalesce", "", "set the gateway's sources.mqtt[0].read_coalesce, e.g. 0s or 5ms (empty: the gateway's default)")
		analyze   = fs.String("analyze", "", "only print the top functions and the per-goroutine breakdown of an existing CPU profile (from --cpuprofile), then exit")
		upDown    = fs.Bool("uplink-down", false, "point the gateway's uplink at a port nothing listens on: measures memory while summaries pile up in the outbox (no loss check); try with --window 1s")
		startup   = fs.Int("startup", 0, "also measure start-up with this many committed readings in open 1 h windows (QoS 1 durable): restart after SIGTERM and after kill -9; 0: off")
		startRate = fs.Float64("startup-rate", 10000, "publish rate of the --startup fills (msg/s)")
		startOnly = fs.Bool("startup-only", false, "with --startup: run only the start-up point, not the matrix")
		gwEnv     = fs.String("gateway-env", "", "extra environment for the gateway process, comma-separated (e.g. GOMEMLIMIT=12MiB,GOGC=50)")
	)
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *analyze != "" {
		top, err := pprofTop(*bin, *analyze)
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2ebench:", err, top)
			return 1
		}
		bd, err := pprofBreakdown(*bin, *analyze)
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2ebench:", err)
			return 1
		}
		fmt.Printf("%s\n%s", bd, top)
		return 0
	}
	if *quick {
		*ratesArg, *qosArg, *repeat, *duration = "20000", "0", 1, 10*time.Second
	}
	rates, err := parseRates(*ratesArg)
	var modes []mode
	if err == nil {
		modes, err = parseModes(*qosArg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2ebench:", err)
		return 2
	}
	if *repeat < 1 || *sensors < 1 || *duration < time.Second {
		fmt.Fprintln(os.Stderr, "e2ebench: --repeat and --sensors must be >= 1, --duration >= 1s")
		return 2
	}
	if *startup < 0 || (*startup > 0 && *startRate <= 0) || (*startOnly && *startup == 0) {
		fmt.Fprintln(os.Stderr, "e2ebench: --startup must be >= 0 with --startup-rate > 0; --startup-only needs --startup")
		return 2
	}
	if _, err := os.Stat(*mosq); err != nil {
		fmt.Fprintf(os.Stderr, "e2ebench: mosquitto not found at %s (apt-get install mosquitto, or --mosquitto PATH)\n", *mosq)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2ebench:", err)
		return 1
	}
	work, err := os.MkdirTemp("", "e2ebench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2ebench:", err)
		return 1
	}
	defer os.RemoveAll(work)
	gwBin := *bin
	if gwBin == "" {
		fmt.Fprintln(os.Stderr, "e2ebench: building ./cmd/sensorgate")
		if gwBin, err = buildGateway(root, work, false); err != nil {
			fmt.Fprintln(os.Stderr, "e2ebench:", err)
			return 1
		}
	}
	caps, err := probeCapabilities(gwBin, work)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2ebench:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2ebench: gateway: run --flush-on-stop %s, sources.mqtt[].inflight %s\n",
		yesNo(caps.FlushOnStop, "supported", "absent (SIGTERM flushes as before)"), yesNo(caps.InFlightKey, "supported", "absent (@N sets mosquitto only)"))
	e := &env{caps: caps, bin: gwBin, mosquitto: *mosq, work: work, sensors: *sensors, duration: *duration,
		window: *window, maxQueued: *maxQueued, verbose: *verbose, sourceQueue: *srcQueue, readingsQueue: *rdQueue, readCoalesce: *coalesce, uplinkDown: *upDown}
	for _, kv := range strings.Split(*gwEnv, ",") {
		if kv = strings.TrimSpace(kv); kv != "" {
			if !strings.Contains(kv, "=") {
				fmt.Fprintf(os.Stderr, "e2ebench: --gateway-env: %q: want KEY=VALUE\n", kv)
				return 2
			}
			e.gatewayEnv = append(e.gatewayEnv, kv)
		}
	}
	res := &results{
		Command: "go run ./test/e2ebench " + strings.Join(os.Args[1:], " "),
		Machine: describeMachine(*mosq), Started: time.Now().UTC(),
		Settings: settings{Rates: *ratesArg, QoS: *qosArg, Sensors: *sensors, Duration: duration.String(),
			Repeat: *repeat, Window: *window, MaxQueued: *maxQueued, ClockTick: clockTicks, GatewayEnv: *gwEnv,
			SourceQueue: *srcQueue, ReadingsQueue: *rdQueue, ReadCoalesce: *coalesce, UplinkDown: *upDown,
			Startup: *startup, StartupRate: *startRate},
		Caps: caps,
	}
	if !*startOnly {
		fmt.Fprintf(os.Stderr, "e2ebench: %d repeat(s) x modes %v x rates %s, %v per point, %d sensors (load %s)\n",
			*repeat, modes, *ratesArg, *duration, *sensors, res.Machine.LoadStart)
	}

	fail := func(what string, err error) {
		msg := fmt.Sprintf("%s: %v", what, err)
		res.Failures = append(res.Failures, msg)
		fmt.Fprintln(os.Stderr, "e2ebench: FAILED", msg)
	}
	s := *seed
	matrix := *repeat
	if *startOnly {
		matrix = 0
	}
	for rep := 1; rep <= matrix && ctx.Err() == nil; rep++ {
		// One broker-alone ceiling per repeat, QoS and in-flight window:
		// 1 and 1d share theirs.
		ceilings := map[mode]float64{}
		type baseKey struct {
			m    mode
			rate float64
		}
		baselines := map[baseKey]bool{}
		for _, q := range modes {
			if ctx.Err() != nil {
				break
			}
			ceiling, done := ceilings[q.brokerKey()]
			if !done {
				s++
				bp, err := e.runBroker(ctx, q, rep, 0, s)
				if err != nil {
					fail(fmt.Sprintf("broker-alone qos %s repeat %d", q.brokerKey(), rep), err)
					continue
				}
				res.Broker = append(res.Broker, bp)
				ceiling = bp.DeliveredPS
				ceilings[q.brokerKey()] = ceiling
				fmt.Fprintf(os.Stderr, "e2ebench: [rep %d qos %s] broker alone: published %.0f msg/s, delivered %d/%d at %.0f msg/s\n",
					rep, q.brokerKey(), bp.Load.Rate, bp.Delivered, bp.Load.Sent, bp.DeliveredPS)
			}
			for _, r := range rates {
				if ctx.Err() != nil {
					break
				}
				rate := r.rate
				switch {
				case r.max:
					rate = 0
				case r.ofCap > 0:
					rate = r.ofCap * ceiling
				case !*keepAbove && ceiling > 0 && rate > ceiling:
					msg := fmt.Sprintf("qos %s rate %s repeat %d: above the broker-alone ceiling of %.0f msg/s (see max)", q, r.arg, rep, ceiling)
					res.Skipped = append(res.Skipped, msg)
					fmt.Fprintln(os.Stderr, "e2ebench: skip", msg)
					continue
				}
				if bk := (baseKey{q.brokerKey(), rate}); *baseEach && rate > 0 && !baselines[bk] {
					baselines[bk] = true
					s++
					if b, err := e.runBroker(ctx, q, rep, rate, s); err != nil {
						fail(fmt.Sprintf("broker-alone qos %s rate %s repeat %d", q.brokerKey(), r.arg, rep), err)
					} else {
						res.Broker = append(res.Broker, b)
					}
				}
				s++
				gp, err := e.runGateway(ctx, q, rep, rate, r.arg, s)
				if err != nil {
					fail(fmt.Sprintf("gateway qos %s rate %s repeat %d", q, r.arg, rep), err)
					continue
				}
				if ceiling > 0 {
					gp.Ceiling, gp.OfCeiling = ceiling, gp.Load.Rate/ceiling
				}
				res.Gateway = append(res.Gateway, gp)
				fmt.Fprintf(os.Stderr, "e2ebench: [rep %d qos %s rate %s] in %.0f msg/s (%.0f%% of ceiling), readings %d, loss %d (%.3f%%), %.2f CPU-s/M readings, peak RSS %.1f MB, idle %.1f MB, %s, load %s %s\n",
					rep, q, r.arg, gp.Load.Rate, 100*gp.OfCeiling, gp.Load.Readings, gp.Loss, gp.LossPct, gp.CPUPerMR,
					float64(gp.PeakRSSKB)/1024, float64(gp.IdleRSSKB)/1024, wearLine(gp), gp.LoadAvg, gp.Notes)
			}
		}
	}
	if *cpuprof != "" && ctx.Err() == nil {
		if p, err := filepath.Abs(*cpuprof); err == nil {
			*cpuprof = p
		}
		fmt.Fprintln(os.Stderr, "e2ebench: building the profiling gateway (go build -overlay)")
		pbin, err := buildGateway(root, work, true)
		if err != nil {
			fail("profiling build", err)
		} else {
			pe := *e
			pe.bin, pe.profile = pbin, *cpuprof
			s++
			gp, err := pe.runGateway(ctx, mode{}, 0, *profRate, "profile", s)
			if err != nil {
				fail("profile run", err)
			} else {
				top, err := pprofTop(pbin, *cpuprof)
				if err != nil {
					fail("pprof", fmt.Errorf("%v: %s", err, top))
				}
				bd, err := pprofBreakdown(pbin, *cpuprof)
				if err != nil {
					fail("pprof", err)
				}
				res.Breakdown = bd
				res.Profile = fmt.Sprintf("Profiled run (QoS 0, %.0f msg/s, profiling build): %.2f CPU-s/M readings (%.2f CPU-s by /proc), loss %d, peak RSS %.1f MB\n\n%s",
					gp.Load.Rate, gp.CPUPerMR, gp.CPU, gp.Loss, float64(gp.PeakRSSKB)/1024, top)
			}
		}
	}
	if *startup > 0 && ctx.Err() == nil {
		s++
		sp, err := e.runStartup(ctx, *startup, *startRate, s)
		if err != nil {
			fail("start-up point", err)
		}
		res.Startup = append(res.Startup, sp...)
	}
	res.Finished = time.Now().UTC()
	res.Machine.LoadEnd = loadAvg()
	if *out != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "e2ebench:", err)
		}
	}
	report(os.Stdout, res, modes, rates)
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "e2ebench: interrupted; the tables cover the points that finished")
		return 1
	}
	if len(res.Failures) > 0 {
		return 1
	}
	return 0
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run from inside the sensorgate module (go run ./test/e2ebench)")
	}
	return filepath.Dir(mod), nil
}

func yesNo(ok bool, yes, no string) string {
	if ok {
		return yes
	}
	return no
}
