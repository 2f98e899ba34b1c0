package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
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

// writeMetrics writes every component's statistics, and the process's own,
// in the Prometheus text exposition format (version 0.0.4). The client
// library would add about 3 MB to a binary that must stay under 12 MB on a
// Pi, for a format this simple.
func (m *metricsServer) writeMetrics(w io.Writer) error {
	var samples []sample
	snap := m.snapshot()
	comps := make([]string, 0, len(snap))
	for c := range snap {
		comps = append(comps, c)
	}
	sort.Strings(comps)
	for _, c := range comps {
		flatten(&samples, "sensorgate_"+c, nil, reflect.ValueOf(snap[c]))
	}
	samples = append(samples, processSamples(m.start0)...)
	bw := bufio.NewWriter(w)
	last := ""
	for _, s := range samples {
		if s.name != last {
			fmt.Fprintf(bw, "# TYPE %s untyped\n", s.name)
			last = s.name
		}
		bw.WriteString(s.name)
		if len(s.labels) > 0 {
			bw.WriteByte('{')
			for i, l := range s.labels {
				if i > 0 {
					bw.WriteByte(',')
				}
				fmt.Fprintf(bw, "%s=\"%s\"", l[0], labelEscaper.Replace(l[1]))
			}
			bw.WriteByte('}')
		}
		bw.WriteByte(' ')
		bw.WriteString(strconv.FormatFloat(s.value, 'g', -1, 64))
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// processSamples are the usual process_ and go_ metrics: what an operator
// graphs first when a Pi runs short of CPU or memory.
func processSamples(start time.Time) []sample {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	out := []sample{
		{"process_start_time_seconds", nil, float64(start.UnixNano()) / 1e9},
		{"go_goroutines", nil, float64(runtime.NumGoroutine())},
		{"go_memstats_heap_alloc_bytes", nil, float64(ms.HeapAlloc)},
		{"go_memstats_sys_bytes", nil, float64(ms.Sys)},
		{"go_gc_cycles_total", nil, float64(ms.NumGC)},
		{"go_memory_limit_bytes", nil, float64(debug.SetMemoryLimit(-1))}, // -1 reads it
	}
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		// Fields after the parenthesised command name: utime is the 14th
		// field, stime the 15th, rss the 24th (in pages).
		if i := bytes.LastIndexByte(b, ')'); i > 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) > 21 {
				ut, _ := strconv.ParseFloat(f[11], 64)
				st, _ := strconv.ParseFloat(f[12], 64)
				rss, _ := strconv.ParseFloat(f[21], 64)
				out = append(out,
					sample{"process_cpu_seconds_total", nil, (ut + st) / clockTicks},
					sample{"process_resident_memory_bytes", nil, rss * float64(os.Getpagesize())})
			}
		}
	}
	return out
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

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

// addrInUseError is start's error when another program listens on the
// metrics address (node_exporter on 9100 was the classic case).
type addrInUseError struct{ Addr string }

func (e *addrInUseError) Error() string {
	return fmt.Sprintf("metrics: address %s is already in use by another program: set metrics.listen in the config to a free address, or to \"\" to turn metrics off", e.Addr)
}

// start serves on addr until the returned stop is called; bound is the
// address it listens on (the port the kernel picked for ":0").
func (m *metricsServer) start(addr string) (stop func(), bound string, err error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if err := m.writeMetrics(w); err != nil {
			m.logger.Debug("metrics write", "err", err)
		}
	})
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
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, "", &addrInUseError{Addr: addr}
	}
	if err != nil {
		return nil, "", fmt.Errorf("metrics: listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.logger.Error("metrics server", "err", err)
		}
	}()
	m.logger.Info("metrics listening", "addr", ln.Addr().String())
	if !onLoopback(ln.Addr()) {
		// Neither endpoint asks who is calling: an operator who set
		// 0.0.0.0 for a scraper may not know the whole LAN can read them.
		m.logger.Warn("metrics listener is not on loopback: /metrics and /healthz are reachable from the network, without authentication",
			"addr", ln.Addr().String(), "listen", addr)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, ln.Addr().String(), nil
}

// onLoopback reports whether a bound address takes connections from this
// machine only. The unspecified address (0.0.0.0, ::) takes them on every
// interface.
func onLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
