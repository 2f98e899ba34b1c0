package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsServer serves /metrics (Prometheus text format) and /healthz (JSON).
// Packages expose plain Stats() structs and never import Prometheus; at
// scrape time this collector walks each struct and exports every number as
// sensorgate_<component>_<field>. Scrapes are rare, so reflection here costs
// nothing on the data path.
type metricsServer struct {
	logger *slog.Logger
	start0 time.Time

	mu    sync.Mutex
	comps map[string]func() any
}

func newMetricsServer(logger *slog.Logger) *metricsServer {
	return &metricsServer{logger: logger, start0: time.Now(), comps: map[string]func() any{}}
}

func (m *metricsServer) set(component string, stats func() any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.comps[component] = stats
}

func (m *metricsServer) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.comps = map[string]func() any{}
}

func (m *metricsServer) snapshot() map[string]any {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]any, len(m.comps))
	for k, f := range m.comps {
		out[k] = f()
	}
	return out
}

// Describe sends nothing: this is an unchecked collector, because the set
// of metrics follows the config (sources and uplinks come and go on reload).
func (m *metricsServer) Describe(chan<- *prometheus.Desc) {}

func (m *metricsServer) Collect(ch chan<- prometheus.Metric) {
	for comp, v := range m.snapshot() {
		var samples []sample
		flatten(&samples, "sensorgate_"+comp, nil, reflect.ValueOf(v))
		for _, s := range samples {
			names := make([]string, len(s.labels))
			vals := make([]string, len(s.labels))
			for i, l := range s.labels {
				names[i], vals[i] = l[0], l[1]
			}
			d := prometheus.NewDesc(s.name, "sensorgate "+comp+" statistic (see the package's Stats type)", names, nil)
			mt, err := prometheus.NewConstMetric(d, prometheus.UntypedValue, s.value, vals...)
			if err == nil {
				ch <- mt
			}
		}
	}
}

type sample struct {
	name   string
	labels [][2]string
	value  float64
}

// flatten turns a stats value into samples: numbers and bools directly,
// durations in seconds, struct fields as name suffixes, map keys and slice
// indexes as labels.
func flatten(out *[]sample, name string, labels [][2]string, v reflect.Value) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.Type() == reflect.TypeOf(time.Duration(0)) {
		*out = append(*out, sample{name + "_seconds", labels, time.Duration(v.Int()).Seconds()})
		return
	}
	if v.Type() == reflect.TypeOf(time.Time{}) {
		t := v.Interface().(time.Time)
		if !t.IsZero() {
			*out = append(*out, sample{name + "_unix_seconds", labels, float64(t.UnixNano()) / 1e9})
		}
		return
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		*out = append(*out, sample{name, labels, float64(v.Int())})
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		*out = append(*out, sample{name, labels, float64(v.Uint())})
	case reflect.Float32, reflect.Float64:
		*out = append(*out, sample{name, labels, v.Float()})
	case reflect.Bool:
		b := 0.0
		if v.Bool() {
			b = 1
		}
		*out = append(*out, sample{name, labels, b})
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			if f := t.Field(i); f.IsExported() {
				flatten(out, name+"_"+snake(f.Name), labels, v.Field(i))
			}
		}
	case reflect.Map:
		key := labelFor(name)
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		for _, k := range keys {
			flatten(out, name, withLabel(labels, key, fmt.Sprint(k.Interface())), v.MapIndex(k))
		}
	case reflect.Slice, reflect.Array:
		// A list of structs with a Name (per-lane stats, say) is labelled
		// by name: sensorgate_outbox_lanes_depth{lane="alerts"}.
		label := "index"
		if i := strings.LastIndexByte(name, '_'); i >= 0 {
			label = strings.TrimSuffix(name[i+1:], "s")
		}
		for i := 0; i < v.Len(); i++ {
			e := v.Index(i)
			val := fmt.Sprint(i)
			if e.Kind() == reflect.Struct {
				if f := e.FieldByName("Name"); f.IsValid() && f.Kind() == reflect.String && f.String() != "" {
					val = f.String()
				}
			}
			flatten(out, name, withLabel(labels, label, val), e)
		}
	}
}

func withLabel(labels [][2]string, k, v string) [][2]string {
	out := make([][2]string, len(labels), len(labels)+1)
	copy(out, labels)
	for _, l := range out {
		if l[0] == k {
			k = k + "2"
		}
	}
	return append(out, [2]string{k, v})
}

// labelFor picks the label name for a map-valued statistic: counts of
// errors and drops are by reason; per-lane and other keyed values by key.
func labelFor(name string) string {
	n := strings.ToLower(name)
	for _, w := range []string{"error", "drop", "reject", "invalid", "fail"} {
		if strings.Contains(n, w) {
			return "reason"
		}
	}
	if strings.Contains(n, "lane") {
		return "lane"
	}
	return "key"
}

func snake(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 && (unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]))) {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// start serves on addr until the returned stop is called.
func (m *metricsServer) start(addr string) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), m)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(m.logger.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"status":         "ok",
			"version":        version,
			"uptime_seconds": time.Since(m.start0).Seconds(),
			"components":     m.snapshot(),
		})
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.logger.Error("metrics server", "err", err)
		}
	}()
	m.logger.Info("metrics listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
