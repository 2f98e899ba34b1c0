package main

import (
	"io"
	"log/slog"
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
