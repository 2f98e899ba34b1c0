package rules

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/rules/window"
)

// The design's workload: 1,000 sensors x 3 metrics, every reading through
// stages and windows.
const benchSensors, benchMetrics = 1000, 3

var benchMetricNames = []string{"temperature", "humidity", "pressure"}

const benchWindowsOnly = `
windows:
  - {name: 10s, size: 10s, lateness: 2s}
`

const benchStagesAndWindows = `
stages:
  - {type: dedup, size: 2}
  - {type: range, metric: temperature, min: -40, max: 85}
  - {type: range, metric: humidity, min: 0, max: 100, action: clamp}
  - {type: calibrate, metric: temperature, scale: 1.002, offset: -0.1}
  - {type: convert, metric: pressure, from: Pa, to: hPa}
  - {type: filter, metric: "*", expr: "value > -1000 && sensor startsWith 's'"}
  - {type: deadband, metric: pressure, delta: 0, max_silence: 1m}
alerts:
  - {id: hot, metric: temperature, above: 30, clear_below: 29, hold: 10s}
windows:
  - {name: 10s, size: 10s, lateness: 2s}
`

const benchAllFeatures = benchStagesAndWindows + `
  - {name: 1m, type: hopping, size: 1m, slide: 10s, lateness: 2s, aggregates: [quantiles]}
`

func benchSensorNames() []string {
	names := make([]string, benchSensors)
	for i := range names {
		names[i] = fmt.Sprintf("s%04d", i)
	}
	return names
}

// benchEngine returns an engine with warm caches and a function that
// processes reading i. Readings go round-robin over the keys; each key gets
// one reading per second of event time, so windows close all the time.
func benchEngine(b *testing.B, cfgYAML string) (*Engine, func(i int)) {
	cfg := parseConfig(b, cfgYAML)
	e, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	em := newEmitter(context.Background(), discard{})
	names := benchSensorNames()
	const keys = benchSensors * benchMetrics
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	var r ingest.Reading
	proc := func(i int) {
		k := i % keys
		round := int64(i / keys)
		r = ingest.Reading{
			Sensor: names[k/benchMetrics],
			Metric: benchMetricNames[k%benchMetrics],
			Value:  20 + float64((i*7919)%1000)/100,
			Unit:   "degC",
			Time:   base + round*int64(time.Second) + int64(k)*1000,
		}
		if err := e.process(em, &r); err != nil {
			b.Fatal(err)
		}
	}
	for i := range keys * 30 { // 30 s of event time: every key has opened and closed windows
		proc(i)
	}
	return e, proc
}

func benchProcess(b *testing.B, cfgYAML string) {
	_, proc := benchEngine(b, cfgYAML)
	i := benchSensors * benchMetrics * 30
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		proc(i)
		i++
	}
	cpu := cpuTime() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
	if cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "readings/cpu-s")
	}
}

// BenchmarkProcess measures the per-reading path (stages, alerts, windows,
// emission of the summaries to a discarding sink) on one goroutine.
func BenchmarkProcess(b *testing.B) {
	b.Run("windows", func(b *testing.B) { benchProcess(b, benchWindowsOnly) })
	b.Run("stages+windows", func(b *testing.B) { benchProcess(b, benchStagesAndWindows) })
	b.Run("stages+windows+hopping+quantiles", func(b *testing.B) { benchProcess(b, benchAllFeatures) })
}

// BenchmarkRun measures the same through Run and a channel.
func BenchmarkRun(b *testing.B) {
	cfg := parseConfig(b, benchStagesAndWindows)
	e, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	names := benchSensorNames()
	in := make(chan ingest.Reading, 4096)
	done := make(chan error, 1)
	go func() { done <- e.Run(context.Background(), in, discard{}) }()
	const keys = benchSensors * benchMetrics
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := i % keys
		in <- ingest.Reading{
			Sensor: names[k/benchMetrics], Metric: benchMetricNames[k%benchMetrics],
			Value: 20 + float64((i*7919)%1000)/100, Unit: "degC",
			Time: base + int64(i/keys)*int64(time.Second) + int64(k)*1000,
		}
	}
	close(in)
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
}

// BenchmarkMemoryPerKey reports the heap held per open window key (one
// sensor x metric with one open 10 s window), with and without quantiles.
func BenchmarkMemoryPerKey(b *testing.B) {
	for _, tc := range []struct{ name, cfg string }{
		{"tumbling", benchWindowsOnly},
		{"tumbling+quantiles", "windows:\n  - {name: 10s, size: 10s, aggregates: [quantiles]}\n"},
		{"tumbling+twa(10 samples)", "windows:\n  - {name: 10s, size: 10s, aggregates: [twa]}\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const keys = 10_000
			names := make([]string, keys)
			for i := range names {
				names[i] = fmt.Sprintf("sensor-%05d", i)
			}
			var perKey float64
			for range b.N {
				cfg := parseConfig(b, tc.cfg)
				runtime.GC()
				var m0, m1 runtime.MemStats
				runtime.ReadMemStats(&m0)
				e, _ := New(cfg, Options{})
				em := newEmitter(context.Background(), discard{})
				for j := range 10 { // 10 readings per key, all in one open window
					for i := range keys {
						r := ingest.Reading{Sensor: names[i], Metric: "temperature", Value: float64(20 + j + i%50), Time: int64(j) * int64(100*time.Millisecond)}
						if err := e.process(em, &r); err != nil {
							b.Fatal(err)
						}
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&m1)
				if e.Stats().OpenWindows != keys {
					b.Fatalf("open windows %d", e.Stats().OpenWindows)
				}
				perKey = float64(m1.HeapAlloc-m0.HeapAlloc) / keys
				runtime.KeepAlive(e)
			}
			b.ReportMetric(perKey, "bytes/key")
		})
	}
}

// BenchmarkRollUp rolls up 10,000 summary records (100 keys x 100 adjacent
// 10 s windows, with quantile sketches) into 100.
func BenchmarkRollUp(b *testing.B) {
	cfg := parseConfig(b, "windows:\n  - {name: 10s, size: 10s, aggregates: [twa, quantiles]}\n")
	e, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	var payloads [][]byte
	em := newEmitter(context.Background(), sinkFunc(func(s *ingest.Summary) error {
		p, err := ingest.AppendSummary(nil, s)
		payloads = append(payloads, p)
		return err
	}))
	names := benchSensorNames()[:100]
	for sec := range 1000 {
		for i, n := range names {
			r := ingest.Reading{Sensor: n, Metric: "m", Value: float64(sec%37 + i), Time: int64(sec) * int64(time.Second)}
			if err := e.process(em, &r); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := e.flush(em); err != nil {
		b.Fatal(err)
	}
	if len(payloads) != 10_000 {
		b.Fatalf("%d payloads", len(payloads))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		out, err := window.RollUp(payloads)
		if err != nil || len(out) != 100 {
			b.Fatalf("%v, %d records", err, len(out))
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*len(payloads))/b.Elapsed().Seconds(), "records/s")
}

type sinkFunc func(*ingest.Summary) error

func (f sinkFunc) Summary(_ context.Context, s *ingest.Summary) error { return f(s) }
func (sinkFunc) Alert(context.Context, *ingest.Alert) error           { return nil }
