package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// startupPoint is one timed restart of the --startup point: the gateway
// was filled with readings in open 1 h windows, stopped (SIGTERM or
// kill -9) and started again.
type startupPoint struct {
	Stop string `json:"stop"` // "SIGTERM" or "kill -9"
	// Committed is the readings the gateway took in since its store was
	// created (every fill so far): what its open windows hold when state
	// survives the stop. Fill is the fill just before this stop.
	Committed uint64  `json:"committed_readings"`
	Fill      uint64  `json:"fill_readings"`
	FillRate  float64 `json:"fill_rate"` // achieved publish rate of that fill (msg/s)
	StopSecs  float64 `json:"stop_seconds"`
	StopOK    bool    `json:"stop_ok"`
	// DataBytes is the size of the gateway's data directory (the outbox
	// file) as the stop left it.
	DataBytes int64 `json:"data_dir_bytes"`
	// HealthSecs is exec to the first /healthz answer; FirstSecs exec to
	// the first new reading counted by the source (probes published every
	// 50 ms from before exec).
	HealthSecs float64 `json:"healthz_seconds"`
	FirstSecs  float64 `json:"first_reading_seconds"`
	// OpenWindows and Keys are the rules' gauges at the first reading:
	// the restored windows (plus the probe's).
	OpenWindows int64  `json:"open_windows"`
	Keys        int64  `json:"window_keys"`
	Redelivered uint64 `json:"redelivered"`
}

// startupWindow holds every fill in open windows: state stays open across
// the stops (unless an hour boundary falls inside the run).
const startupWindow = "1h"

// runStartup fills a gateway (QoS 1 durable, default in-flight window)
// with n readings, stops it with SIGTERM and times the restart; fills it
// with n more, kills it with SIGKILL and times the restart again.
func (e *env) runStartup(ctx context.Context, n int, rate float64, seed int64) (pts []*startupPoint, err error) {
	dir, err := os.MkdirTemp(e.work, "startup-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	mq, err := startMosquitto(e.mosquitto, dir, e.maxQueued, 0)
	if err != nil {
		return nil, err
	}
	defer mq.Close()
	pub, err := connect(mq.URL(), "e2ebench-probe")
	if err != nil {
		return nil, err
	}
	defer pub.Disconnect(100)
	mport, err := mqtttest.PickPort()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "gateway.yaml")
	gc := gwConfig{dataDir: data, broker: mq.URL(), upstream: mq.URL(), mode: mode{QoS: 1, Durable: true},
		metricsPort: mport, window: startupWindow, sourceQueue: e.sourceQueue, readingsQueue: e.readingsQueue,
		readCoalesce: e.readCoalesce, grace: 10 * time.Second}
	if err := os.WriteFile(cfg, []byte(gc.yaml()), 0o600); err != nil {
		return nil, err
	}
	// No --flush-on-stop: the point is the state a stop keeps.
	args := []string{"run", "--config", cfg}
	var gw *proc
	defer func() {
		if gw != nil && !gw.exited() {
			gw.stop(syscall.SIGKILL, 5*time.Second)
		}
		if gw != nil && (err != nil || e.verbose) {
			fmt.Fprintf(os.Stderr, "gateway log (tail):\n%s\n", tail(gw.out.String(), 30))
		}
	}()
	if gw, err = startProc(e.bin, args, e.gatewayEnv); err != nil {
		return nil, err
	}
	if _, err := e.waitIngesting(ctx, gw, pub, mport); err != nil {
		return nil, err
	}
	var committed uint64
	for i, stop := range []struct {
		name string
		sig  syscall.Signal
	}{{"SIGTERM", syscall.SIGTERM}, {"kill -9", syscall.SIGKILL}} {
		sp := &startupPoint{Stop: stop.name}
		fill, achieved, err := e.fillStartup(ctx, gw, mq.URL(), mport, n, rate, seed+int64(i))
		if err != nil {
			return pts, err
		}
		committed += fill
		sp.Committed, sp.Fill, sp.FillRate = committed, fill, achieved
		ts := time.Now()
		sp.StopOK = gw.stop(stop.sig, 90*time.Second)
		if stop.sig == syscall.SIGTERM {
			sp.StopOK = sp.StopOK && gw.err == nil
		}
		sp.StopSecs = time.Since(ts).Seconds()
		sp.DataBytes = dirBytes(data)
		var h *health
		gw, sp.HealthSecs, sp.FirstSecs, h, err = e.timedStart(ctx, args, pub, mport)
		if err != nil {
			return pts, fmt.Errorf("restart after %s: %w", stop.name, err)
		}
		sp.OpenWindows, sp.Keys = h.Components.Rules.OpenWindows, h.Components.Rules.Keys
		sp.Redelivered = h.Components.Source.Redelivered
		pts = append(pts, sp)
		fmt.Fprintf(os.Stderr, "e2ebench: [startup] %d readings committed, %s: %.2f s to /healthz, %.2f s to the first reading, data dir %.1f MB, %d open windows\n",
			sp.Committed, stop.name, sp.HealthSecs, sp.FirstSecs, float64(sp.DataBytes)/(1<<20), sp.OpenWindows)
	}
	gw.stop(syscall.SIGTERM, 90*time.Second)
	return pts, nil
}

// fillStartup publishes n readings (n/2 messages of 2 readings) at QoS 1
// and waits until the gateway has taken them in and its commits have
// settled. It returns the readings the source took in and the achieved
// publish rate.
func (e *env) fillStartup(ctx context.Context, gw *proc, broker string, port, n int, rate float64, seed int64) (uint64, float64, error) {
	h0, err := getHealth(ctx, port)
	if err != nil {
		return 0, 0, err
	}
	dur := time.Duration(float64(n/2) / rate * float64(time.Second))
	load, err := e.runLoadFor(ctx, broker, rate, 1, seed, dur)
	if err != nil {
		return 0, 0, err
	}
	h1, err := waitDrained(ctx, port, h0, load.Sent)
	if err != nil {
		return 0, 0, err
	}
	if gw.exited() {
		return 0, 0, fmt.Errorf("gateway exited during the fill (%v)", gw.err)
	}
	// Settled: the outbox's write transactions and the rules' checkpoints
	// have not moved for 1 s, so kill -9 hits a store at rest.
	for stable := 0; stable < 4; {
		time.Sleep(250 * time.Millisecond)
		h, err := getHealth(ctx, port)
		if err != nil {
			return 0, 0, err
		}
		if same(h.Components.Outbox.WriteTxs, h1.Components.Outbox.WriteTxs) &&
			same(h.Components.Rules.Checkpoints, h1.Components.Rules.Checkpoints) &&
			h.Components.Outbox.Commits == h1.Components.Outbox.Commits {
			stable++
		} else {
			stable = 0
		}
		h1 = h
	}
	return h1.Components.Source.Readings - h0.Components.Source.Readings, load.Rate, nil
}

func same(a, b *uint64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

// timedStart starts the gateway and returns how long after exec /healthz
// first answered and the source first counted a reading. A probe reading
// is published every 50 ms from just before exec: with a persistent
// session the broker queues them, without one those before the
// subscription are lost, so "first reading" is when the gateway takes in
// new input either way.
func (e *env) timedStart(ctx context.Context, args []string, pub paho.Client, port int) (gw *proc, healthSecs, firstSecs float64, h *health, err error) {
	stopProbe := make(chan struct{})
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			payload := fmt.Sprintf(`{"ts":%d,"temperature":1}`, time.Now().UnixMilli())
			pub.Publish("sensors/"+probeSensor+"/telemetry", 1, false, payload)
			select {
			case <-stopProbe:
				return
			case <-t.C:
			}
		}
	}()
	defer func() { close(stopProbe); <-probeDone }()
	t0 := time.Now()
	if gw, err = startProc(e.bin, args, e.gatewayEnv); err != nil {
		return nil, 0, 0, nil, err
	}
	deadline := t0.Add(120 * time.Second)
	for {
		if gw.exited() {
			return gw, 0, 0, nil, fmt.Errorf("gateway exited during start-up (%v)", gw.err)
		}
		if time.Now().After(deadline) {
			return gw, healthSecs, 0, nil, fmt.Errorf("%w after 120s", errNotReady)
		}
		if ctx.Err() != nil {
			return gw, 0, 0, nil, ctx.Err()
		}
		if hh, err := getHealth(ctx, port); err == nil {
			if healthSecs == 0 {
				healthSecs = time.Since(t0).Seconds()
			}
			if hh.Components.Source.Readings > 0 {
				return gw, healthSecs, time.Since(t0).Seconds(), hh, nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dirBytes is the total size of the regular files under dir.
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
