package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/test/mqtttest"
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

// The gateway end of the HTTP uplink's redaction: /healthz shows the
// failed post (with the URL's query keys) but neither the token in the
// query nor the password in the userinfo, and neither does the log.
func TestHealthzRedactsUplinkURL(t *testing.T) {
	upstream := "http://bob:pa55word@" + mqtttest.FreeAddr(t) + "/ingest?token=s3cret"
	tm := startMain(t, func(dir string) string {
		return fmt.Sprintf(`gateway: {id: gw-redact, data_dir: %s, shutdown_grace: 10ms, memory_limit: -1}
metrics: {listen: "127.0.0.1:0"}
sensors:
  - {id: s1, type: sim, sim: {interval: 20ms, metrics: {t: {model: constant, base: 1}}}}
rules:
  windows: [{name: w, size: 100ms, lateness: 0s}]
uplinks:
  - {name: api, type: http, url: "%s", backoff: {min: 10ms, max: 20ms}}
`, dir, upstream)
	}, nil)
	tm.pipeline()
	var health []byte
	mqtttest.WaitFor(t, waitMax, func() bool {
		doc := tm.health()
		comps, _ := doc["components"].(map[string]any)
		up, _ := comps["uplink_api"].(map[string]any)
		msg, _ := up["LastError"].(string)
		health, _ = json.Marshal(doc)
		return strings.Contains(msg, "token=REDACTED")
	}, "the uplink's failed post on /healthz")
	if err := tm.stop(); err != nil {
		t.Fatal(err)
	}
	log := tm.log.String()
	if !strings.Contains(log, "http post failed, retrying") {
		t.Fatalf("no retry logged:\n%s", log)
	}
	for _, s := range []string{"s3cret", "pa55word"} {
		if strings.Contains(log, s) || strings.Contains(string(health), s) {
			t.Errorf("%q leaked:\n/healthz: %s\nlog:\n%s", s, health, log)
		}
	}
}
