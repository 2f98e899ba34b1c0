package main

import (
	"io"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestFlattenStats(t *testing.T) {
	type lane struct {
		Name    string
		Depth   int64
		Dropped map[string]uint64
	}
	type stats struct {
		Sent      uint64
		Connected bool
		Offline   time.Duration
		Lanes     []lane
		private   int
	}
	var got []sample
	flatten(&got, "sensorgate_x", nil, reflect.ValueOf(stats{
		Sent: 3, Connected: true, Offline: 1500 * time.Millisecond,
		Lanes: []lane{{Name: "alerts", Depth: 2, Dropped: map[string]uint64{"cap": 1}}},
	}))
	want := []sample{
		{"sensorgate_x_sent", nil, 3},
		{"sensorgate_x_connected", nil, 1},
		{"sensorgate_x_offline_seconds", nil, 1.5},
		{"sensorgate_x_lanes_depth", [][2]string{{"lane", "alerts"}}, 2},
		{"sensorgate_x_lanes_dropped", [][2]string{{"lane", "alerts"}, {"reason", "cap"}}, 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
	for in, out := range map[string]string{"CommitLatency": "commit_latency", "OfflineFor": "offline_for", "FreePages": "free_pages", "ID": "id", "LastHTTPStatus": "last_http_status"} {
		if s := snake(in); s != out {
			t.Errorf("snake(%s) = %s, want %s", in, s, out)
		}
	}
}

func TestWriteMetricsTextFormat(t *testing.T) {
	m := newMetricsServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.set("outbox", func() any {
		return struct {
			Lanes []struct {
				Name    string
				Dropped map[string]uint64
			}
		}{Lanes: []struct {
			Name    string
			Dropped map[string]uint64
		}{{Name: `we"ird\lane`, Dropped: map[string]uint64{"cap": 2}}}}
	})
	var b strings.Builder
	if err := m.writeMetrics(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"# TYPE sensorgate_outbox_lanes_dropped untyped\n",
		`sensorgate_outbox_lanes_dropped{lane="we\"ird\\lane",reason="cap"} 2` + "\n",
		"process_cpu_seconds_total ",
		"process_resident_memory_bytes ",
		"go_goroutines ",
		"go_memory_limit_bytes ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics output lacks %q:\n%s", want, out)
		}
	}
}

// A metrics listener outside loopback warns, naming the address and what
// it exposes; on loopback it does not.
func TestMetricsListenerWarnsOutsideLoopback(t *testing.T) {
	addrs := map[string]bool{"127.0.0.1:0": false, "0.0.0.0:0": true}
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		ln.Close()
		addrs["[::1]:0"] = false
		addrs["[::]:0"] = true
	}
	if ifs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
				addrs[net.JoinHostPort(ipn.IP.String(), "0")] = true // a LAN address
				break
			}
		}
	}
	for addr, warn := range addrs {
		var logs strings.Builder
		m := newMetricsServer(slog.New(slog.NewTextHandler(&logs, nil)))
		stop, bound, err := m.start(addr)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		stop()
		warned := strings.Contains(logs.String(), "level=WARN") &&
			strings.Contains(logs.String(), "/metrics and /healthz are reachable from the network") &&
			strings.Contains(logs.String(), "addr="+bound)
		if warned != warn {
			t.Errorf("%s: warned %v, want %v; log:\n%s", addr, warned, warn, logs.String())
		}
	}
	for a, want := range map[string]bool{"127.0.0.1:1": true, "127.1.2.3:1": true, "[::1]:1": true, "0.0.0.0:1": false, "[::]:1": false, "192.168.1.10:1": false, "[fe80::1]:1": false} {
		ta, _ := net.ResolveTCPAddr("tcp", a)
		if got := onLoopback(ta); got != want {
			t.Errorf("onLoopback(%s) = %v, want %v", a, got, want)
		}
	}
}
