package test

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// truth is what the test sent for one sensor+metric.
type truth struct {
	count    uint64
	sum      float64
	min, max float64
}

func (tr *truth) add(v float64) {
	if tr.count == 0 || v < tr.min {
		tr.min = v
	}
	if tr.count == 0 || v > tr.max {
		tr.max = v
	}
	tr.count++
	tr.sum += v
}

type key struct{ sensor, metric string }

// sender publishes JSON readings for a set of sensors and remembers what it
// sent.
type sender struct {
	rng   *rand.Rand
	sent  map[key]*truth
	total uint64
}

func newSender(seed uint64) *sender {
	return &sender{rng: rand.New(rand.NewPCG(seed, seed)), sent: map[key]*truth{}}
}

// round publishes one reading (temperature and humidity) for each sensor.
func (s *sender) round(t testing.TB, pub func(topic string, payload []byte), sensors int) {
	t.Helper()
	now := time.Now().UnixMilli()
	for i := 0; i < sensors; i++ {
		id := fmt.Sprintf("node-%02d", i)
		temp := math.Round((15+s.rng.Float64()*15)*100) / 100
		hum := math.Round((30+s.rng.Float64()*50)*100) / 100
		pub("site/"+id+"/telemetry", fmt.Appendf(nil, `{"ts":%d,"temperature":%v,"humidity":%v}`, now, temp, hum))
		for m, v := range map[string]float64{"temperature": temp, "humidity": hum} {
			k := key{id, m}
			if s.sent[k] == nil {
				s.sent[k] = &truth{}
			}
			s.sent[k].add(v)
			s.total++
		}
	}
}

// check compares the upstream summaries with what was sent: every reading
// accounted for exactly once, with the right min, max and mean.
func (s *sender) check(t testing.TB, sums []summaryJSON) {
	t.Helper()
	got := map[key]*truth{}
	for _, sm := range sums {
		k := key{sm.Sensor, sm.Metric}
		g := got[k]
		if g == nil {
			g = &truth{min: sm.Min, max: sm.Max}
			got[k] = g
		}
		g.count += sm.Count
		g.sum += sm.Sum
		g.min = math.Min(g.min, sm.Min)
		g.max = math.Max(g.max, sm.Max)
		if sm.Count > 0 && math.Abs(sm.Mean-sm.Sum/float64(sm.Count)) > 1e-9*math.Max(1, math.Abs(sm.Mean)) {
			t.Errorf("%s/%s window %d: mean %v, but sum/count = %v", sm.Sensor, sm.Metric, sm.Start, sm.Mean, sm.Sum/float64(sm.Count))
		}
	}
	for k, want := range s.sent {
		g := got[k]
		if g == nil {
			t.Errorf("%s/%s: no summary upstream (sent %d readings)", k.sensor, k.metric, want.count)
			continue
		}
		if g.count != want.count {
			t.Errorf("%s/%s: summaries count %d readings, sent %d", k.sensor, k.metric, g.count, want.count)
		}
		if g.min != want.min || g.max != want.max {
			t.Errorf("%s/%s: min/max %v/%v, sent %v/%v", k.sensor, k.metric, g.min, g.max, want.min, want.max)
		}
		if math.Abs(g.sum-want.sum) > 1e-6*math.Max(1, math.Abs(want.sum)) {
			t.Errorf("%s/%s: sum %v, sent %v", k.sensor, k.metric, g.sum, want.sum)
		}
	}
	for k := range got {
		if s.sent[k] == nil && k.sensor != probeSensor {
			t.Errorf("%s/%s: summary for a sensor that sent nothing", k.sensor, k.metric)
		}
	}
}

func countOf(sums []summaryJSON) uint64 {
	var n uint64
	for _, s := range sums {
		n += s.Count
	}
	return n
}

// e2eConfig is a gateway reading JSON from local and forwarding summaries of
// 1 s tumbling windows to upstream.
func e2eConfig(dir, local, upstream string, metricsPort int, window string) string {
	return fmt.Sprintf(`gateway:
  id: gw-e2e
  data_dir: %s
  shutdown_grace: 10s
log:
  level: debug
metrics:
  listen: 127.0.0.1:%d
sources:
  mqtt:
    - broker: %s
      client_id: gw-e2e-in
      subscriptions:
        - topic: "site/+/telemetry"
          qos: 1
          format: json
          json: {sensor_topic_segment: 1, time_field: ts, time_format: unix_ms}
sensors:
  - {id: node-00, location: greenhouse-1, tags: {zone: north}}
rules:
  windows:
    - {name: w, sensor: "*", metric: "*", type: tumbling, size: %s, lateness: 0s}
uplinks:
  - name: cloud
    type: mqtt
    url: %s
    client_id: gw-e2e-up
    topic: "up/{gateway}/{lane}"
`, dir, metricsPort, local, window, upstream)
}

// health fetches the gateway's /healthz document.
func health(t testing.TB, port int) map[string]any {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var doc map[string]any
	if json.NewDecoder(resp.Body).Decode(&doc) != nil {
		return nil
	}
	return doc
}

// ingested is how many readings the MQTT source has handed to the pipeline.
func ingested(t testing.TB, port int) float64 {
	doc := health(t, port)
	comps, _ := doc["components"].(map[string]any)
	src, _ := comps["source_mqtt0"].(map[string]any)
	v, _ := src["Readings"].(float64)
	return v
}

// waitIngesting publishes a probe reading until the gateway has counted
// one: then its subscription is surely in place. The probe sensor is left
// out of the checks.
func waitIngesting(t testing.TB, local string, port int) {
	t.Helper()
	c := client(t, local, fmt.Sprintf("probe-%d", port))
	mqtttest.WaitFor(t, 20*time.Second, func() bool {
		publish(t, c, "site/"+probeSensor+"/telemetry", 1, fmt.Appendf(nil, `{"ts":%d,"temperature":1}`, time.Now().UnixMilli()))
		time.Sleep(100 * time.Millisecond)
		return ingested(t, port) > 0
	}, "gateway ingesting")

}

const probeSensor = "probe"

// TestEndToEnd publishes N readings through a real broker and checks that
// the summaries arriving upstream account for exactly N readings with the
// right min, max and mean.
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	local := startBroker(t)
	upstream := startBroker(t)
	col := collect(upstream, "up/#")
	mport := mqtttest.FreePort(t)
	g := startGateway(t, writeConfig(t, dir, e2eConfig(dir, local.URL(), upstream.URL(), mport, "1s")))
	waitIngesting(t, local.URL(), mport)

	pubc := client(t, local.URL(), "e2e-sensors")
	s := newSender(1)
	for r := 0; r < 25; r++ {
		s.round(t, func(topic string, p []byte) { publish(t, pubc, topic, 1, p) }, 20)
		time.Sleep(20 * time.Millisecond)
	}
	mqtttest.WaitFor(t, 30*time.Second, func() bool {
		return countOf(col.summaries()) >= s.total
	}, fmt.Sprintf("summaries for %d readings upstream", s.total))

	s.check(t, col.summaries())
	if col.bad > 0 {
		t.Errorf("%d upstream messages did not decode", col.bad)
	}
	// Static sensor metadata rides on the summaries.
	for _, sm := range col.summaries() {
		if sm.Sensor == "node-00" && (sm.Meta["location"] != "greenhouse-1" || sm.Meta["zone"] != "north") {
			t.Errorf("node-00 summary meta = %v, want location and zone", sm.Meta)
		}
	}
	for _, tp := range col.topics {
		if tp != "up/gw-e2e/summaries" {
			t.Errorf("upstream topic %q, want up/gw-e2e/summaries", tp)
			break
		}
	}
	g.terminate()
}

// TestUpstreamOutage stops the upstream broker while readings keep coming,
// starts it again, and finds every summary delivered.
func TestUpstreamOutage(t *testing.T) {
	dir := t.TempDir()
	local := startBroker(t)
	upstream := startBroker(t)
	col := collect(upstream, "up/#")
	mport := mqtttest.FreePort(t)
	g := startGateway(t, writeConfig(t, dir, e2eConfig(dir, local.URL(), upstream.URL(), mport, "1s")))
	waitIngesting(t, local.URL(), mport)
	pubc := client(t, local.URL(), "outage-sensors")
	s := newSender(2)
	pub := func(topic string, p []byte) { publish(t, pubc, topic, 1, p) }

	for r := 0; r < 10; r++ {
		s.round(t, pub, 10)
		time.Sleep(30 * time.Millisecond)
	}
	mqtttest.WaitFor(t, 30*time.Second, func() bool { return len(col.summaries()) > 0 }, "first summaries upstream")

	upstream.Stop()
	before := countOf(col.summaries())
	emitted := comp(t, mport, "rules", "Summaries")
	for r := 0; r < 40; r++ {
		s.round(t, pub, 10)
		time.Sleep(50 * time.Millisecond) // spreads the readings over several 1s windows
	}
	// Windows closed during the outage must wait in the outbox.
	mqtttest.WaitFor(t, 30*time.Second, func() bool { return comp(t, mport, "rules", "Summaries") > emitted },
		"a window closed during the outage")
	if n := countOf(col.summaries()); n != before {
		t.Fatalf("summaries arrived while upstream was down (%d -> %d)", before, n)
	}
	upstream.Start()
	mqtttest.WaitFor(t, 60*time.Second, func() bool {
		return countOf(col.summaries()) >= s.total
	}, fmt.Sprintf("summaries for all %d readings after the outage", s.total))

	s.check(t, col.summaries())
	g.terminate()
	if !strings.Contains(g.logs(), "stopped") {
		t.Error("no clean stop in the log")
	}
}

// TestShutdownFlushesOpenWindows: with windows far longer than the test,
// SIGTERM under --flush-on-stop (decommissioning) must flush them, and the
// uplink must deliver them before exit.
func TestShutdownFlushesOpenWindows(t *testing.T) {
	dir := t.TempDir()
	local := startBroker(t)
	upstream := startBroker(t)
	col := collect(upstream, "up/#")
	mport := mqtttest.FreePort(t)
	g := startGateway(t, writeConfig(t, dir, e2eConfig(dir, local.URL(), upstream.URL(), mport, "1h")), "--flush-on-stop")
	waitIngesting(t, local.URL(), mport)
	pubc := client(t, local.URL(), "flush-sensors")
	s := newSender(3)
	base := ingested(t, mport)
	for r := 0; r < 5; r++ {
		s.round(t, func(topic string, p []byte) { publish(t, pubc, topic, 1, p) }, 8)
	}
	mqtttest.WaitFor(t, 20*time.Second, func() bool { return ingested(t, mport) >= base+float64(s.total) }, "all readings ingested")
	if n := len(col.summaries()); n != 0 {
		t.Fatalf("%d summaries before the 1h windows closed", n)
	}
	g.terminate()
	s.check(t, col.summaries())
}

// TestValidateReportsEveryProblemWithLines runs the real binary's validate
// on a config with a typo'd key and a wrong type.
func TestValidateReportsEveryProblemWithLines(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, `gateway:
  id: gw-1
sensors:
  - id: s1
    type: sim
    sim:
      interval: 1s
      metrics:
        temperature: {model: sine, base: 20, amplitude: 2, period: 1m}
rules:
  alerts:
    - id: hot
      sensor: "*"
      metric: temperature
      above: warm
  windwos:
    - {name: w, type: tumbling, size: 10s}
uplinks:
  - {name: console, type: stdout}
`)
	out, err := exec.Command(binPath, "validate", "--config", cfg).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("validate: err %v, want exit 2; output:\n%s", err, out)
	}
	for _, want := range []string{
		`rules.alerts[0].above: must be a number, got "warm" (line 15)`,
		`rules.windwos: unknown key (did you mean "windows"?) (line 16)`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
	// And the example configs are valid.
	examples, _ := filepath.Glob("../examples/*.yaml")
	if len(examples) == 0 {
		t.Fatal("no example configs")
	}
	for _, ex := range examples {
		if out, err := exec.Command(binPath, "validate", "--config", ex).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", ex, err, out)
		}
	}
}

// TestDemo runs the README's first command: the embedded demo with
// simulated sensors and a stdout uplink, no external service.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	demo, err := os.ReadFile("../examples/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, dir, string(demo))
	g := startGatewayIn(t, dir, cfg, "--log-level", "debug")
	mqtttest.WaitFor(t, 30*time.Second, func() bool {
		return strings.Contains(g.out(), `"kind":"summary"`)
	}, "demo summaries on stdout")

	g.terminate()
	var n int
	for _, line := range scanLines(g.out()) {
		var m upstreamMsg
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("stdout line is not JSON: %q", line)
		}
		if m.Summary != nil {
			n++
			if m.Summary.Count == 0 || m.Summary.Min > m.Summary.Max {
				t.Errorf("odd summary %+v", m.Summary)
			}
		}
	}
	if n == 0 {
		t.Fatal("no summaries")
	}
}
