package test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// crashConfig: simulated sensors sampled fast into 100 ms windows and an
// alert that fires and clears all the time, so the outbox is appended to and
// drained continuously.
func crashConfig(dir, upstream string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `gateway: {id: gw-crash, data_dir: %s, shutdown_grace: 1s}
log: {level: debug, format: json}
metrics: {listen: ""}
buffer: {commit_delay: 5ms}
sensors:
`, dir)
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&b, `  - id: s%02d
    type: sim
    sim:
      interval: 10ms
      metrics:
        temperature: {model: sine, base: 30, amplitude: 5, period: 500ms, unit: "°C"}
`, i)
	}
	fmt.Fprintf(&b, `rules:
  alerts:
    - {id: hot, sensor: "*", metric: temperature, above: 33, clear_below: 32}
  windows:
    - {name: w, sensor: "*", metric: "*", type: tumbling, size: 100ms, lateness: 0s}
uplinks:
  - {name: cloud, type: mqtt, url: %s, client_id: gw-crash-up, topic: "up/{lane}"}
`, upstream)
	return b.String()
}

type laneSeq struct {
	lane string
	seq  uint64
}

// durableReported parses the gateway's JSON log for the outbox's commit
// lines: the highest seq per lane that the outbox reported durable.
func durableReported(t testing.TB, logs string) map[string]uint64 {
	out := map[string]uint64{}
	for _, line := range scanLines(logs) {
		if !strings.Contains(line, `"outbox commit"`) {
			continue
		}
		var e struct {
			Lane    string `json:"lane"`
			LastSeq uint64 `json:"last_seq"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			continue // the last line may be cut by the kill
		}
		if e.LastSeq > out[e.Lane] {
			out[e.Lane] = e.LastSeq
		}
	}
	return out
}

// stored lists the records in the outbox file.
func stored(t testing.TB, path string) (map[laneSeq]bool, string) {
	t.Helper()
	ob, err := buffer.Open(path, buffer.Config{}, nil)
	if err != nil {
		t.Fatalf("reopen outbox: %v", err)
	}
	defer ob.Close()
	out := map[laneSeq]bool{}
	epoch := ""
	for _, lane := range buffer.Lanes {
		var after uint64
		for {
			recs, err := ob.Read(lane, after, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 0 {
				break
			}
			for _, r := range recs {
				out[laneSeq{lane.String(), r.Seq}] = true
				epoch, _, _ = strings.Cut(r.ID, "-")
				after = r.Seq
			}
		}
	}
	return out, epoch
}

// delivered parses the record ids that reached upstream.
func delivered(col *collector) (map[laneSeq]bool, map[string]bool) {
	out := map[laneSeq]bool{}
	epochs := map[string]bool{}
	for _, m := range col.snapshot() {
		parts := strings.Split(m.RecordID, "-")
		if len(parts) != 3 {
			continue
		}
		lane, err := buffer.ParseLane(parts[1])
		seq, err2 := strconv.ParseUint(parts[2], 10, 64)
		if err != nil || err2 != nil {
			continue
		}
		out[laneSeq{lane.String(), seq}] = true
		epochs[parts[0]] = true
	}
	return out, epochs
}

// TestCrashKill9 kills the real binary with SIGKILL at random moments while
// it appends and delivers. After every kill the bbolt file must pass the
// consistency check, and every record the outbox reported durable must be
// stored or delivered. At the end a clean run drains the outbox and every
// durable record must have reached upstream.
func TestCrashKill9(t *testing.T) {
	kills := 50
	if testing.Short() {
		kills = 10
	}
	dir := t.TempDir()
	upstream := startBroker(t)
	col := collect(upstream, "up/#")
	cfg := writeConfig(t, dir, crashConfig(dir, upstream.URL()))
	path := filepath.Join(dir, "outbox.db")
	rng := rand.New(rand.NewPCG(7, 7))
	durable := map[string]uint64{}
	var epoch string

	for i := 0; i < kills; i++ {
		g := startGateway(t, cfg)
		// Let it get going, then kill it at a random moment.
		mqtttest.WaitFor(t, 30*time.Second, func() bool { return strings.Contains(g.logs(), `"outbox commit"`) }, "first commit")
		time.Sleep(time.Duration(rng.IntN(700)) * time.Millisecond)
		g.kill()

		if err := buffer.Check(path); err != nil {
			t.Fatalf("kill %d: consistency check: %v", i, err)
		}
		for lane, seq := range durableReported(t, g.logs()) {
			durable[lane] = max(durable[lane], seq)
		}
		st, ep := stored(t, path)
		if ep != "" {
			if epoch != "" && ep != epoch {
				t.Fatalf("kill %d: outbox epoch changed %s -> %s (was the file quarantined?)", i, epoch, ep)
			}
			epoch = ep
		}
		dl, _ := delivered(col)
		for lane, top := range durable {
			for seq := uint64(1); seq <= top; seq++ {
				k := laneSeq{lane, seq}
				if !st[k] && !dl[k] {
					t.Fatalf("kill %d: %s seq %d was reported durable but is neither stored nor delivered", i, lane, seq)
				}
			}
		}
	}
	if durable["summaries"] == 0 || durable["alerts"] == 0 {
		t.Fatalf("test did not exercise both lanes: durable=%v", durable)
	}

	// A clean run delivers everything that was durable.
	g := startGateway(t, cfg)
	mqtttest.WaitFor(t, 60*time.Second, func() bool {
		dl, _ := delivered(col)
		for lane, top := range durable {
			for seq := uint64(1); seq <= top; seq++ {
				if !dl[laneSeq{lane, seq}] {
					return false
				}
			}
		}
		return true
	}, "outbox drained")

	g.terminate()
	if err := buffer.Check(path); err != nil {
		t.Fatalf("after clean stop: %v", err)
	}
	_, epochs := delivered(col)
	if len(epochs) != 1 {
		t.Errorf("records from %d outbox epochs upstream, want 1: %v", len(epochs), epochs)
	}
	t.Logf("%d kills; durable per lane at the end: %v; upstream messages: %d", kills, durable, len(col.snapshot()))
}
