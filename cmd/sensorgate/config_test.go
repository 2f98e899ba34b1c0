package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExamplesAreValid(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseConfig(data, env(nil)); err != nil {
			t.Errorf("%s:\n%v", f, err)
		}
	}
}

func TestConfigDefaultsAndCrossSectionChecks(t *testing.T) {
	c, err := parseConfig([]byte(`gateway: {id: gw-1, data_dir: /var/lib/sg}
sensors:
  - {id: s1, type: sim, location: shed, tags: {zone: a}, sim: {metrics: {t: {model: constant, base: 1}}}}
uplinks:
  - {name: console, type: stdout}
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Buffer.Path != "/var/lib/sg/outbox.db" || c.Gateway.QueueSize != 4096 || c.Gateway.ShutdownGrace != 5*time.Second || *c.Metrics.Listen != "127.0.0.1:8353" {
		t.Fatalf("defaults: %+v %+v", c.Gateway, c.Buffer)
	}
	if m := sensorMeta(c.Sensors)["s1"]; m["location"] != "shed" || m["zone"] != "a" {
		t.Fatalf("meta %v", m)
	}

	_, err = parseConfig([]byte(`gateway: {id: "bad id/x"}
sensors:
  - {id: s1, type: sim, sim: {metrics: {t: {model: constant}}}}
  - {id: s1, type: thermocouple}
  - {id: s2, ranges: {t: {min: 5, max: 1}}}
uplinks:
  - {name: a, type: stdout, lanes: [summaries]}
  - {name: b, type: stdout, lanes: [summaries]}
`), env(nil))
	var ce ConfigErrors
	if !errors.As(err, &ce) {
		t.Fatalf("err %v", err)
	}
	for _, want := range []string{
		"gateway.id: must be letters",
		"sensors[1].id: \"s1\" is already used by sensors[0] (line 4)",
		"sensors[1].type: unknown sensor type \"thermocouple\"",
		"sensors[2].ranges.t.min: must be <= max (line 5)",
		"uplinks[1].lanes",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
	for _, e := range ce {
		if e.Line == 0 {
			t.Errorf("error without a line: %v", e)
		}
	}
}

func TestConfigNeedsASource(t *testing.T) {
	_, err := parseConfig([]byte("uplinks: [{type: stdout}]\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "sources: no source configured") {
		t.Fatalf("err %v", err)
	}
}

// TestDurableByDefault: a QoS 1 subscription is durable (acks after the
// checkpoint) on a persistent session unless the config says otherwise;
// QoS 0 is not; the checkpoint trigger is the smallest in-flight window of
// the durable sources.
func TestDurableByDefault(t *testing.T) {
	cfg, err := parseConfig([]byte(`sources:
  mqtt:
    - broker: tcp://127.0.0.1:1883
      inflight: 500
      subscriptions:
        - {topic: "a/#", qos: 1, json: {sensor_topic_segment: 1}}
    - broker: tcp://127.0.0.1:1884
      subscriptions:
        - {topic: "b/#", qos: 0, json: {sensor_topic_segment: 1}}
    - broker: tcp://127.0.0.1:1885
      inflight: 7
      subscriptions:
        - {topic: "c/#", qos: 1, durable: false, json: {sensor_topic_segment: 1}}
uplinks: [{type: stdout}]
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Sources.MQTT
	if !m[0].Subscriptions[0].IsDurable() || *m[0].CleanSession {
		t.Errorf("qos 1: durable %v, clean_session %v; want durable on a persistent session", m[0].Subscriptions[0].IsDurable(), *m[0].CleanSession)
	}
	if m[1].Subscriptions[0].IsDurable() || !*m[1].CleanSession {
		t.Errorf("qos 0: durable %v, clean_session %v; want neither durable nor persistent", m[1].Subscriptions[0].IsDurable(), *m[1].CleanSession)
	}
	if m[2].HoldsAcks() {
		t.Error("durable: false still holds acks")
	}
	if n := checkpointTrigger(m); n != 250 {
		t.Errorf("checkpoint trigger %d, want 250 (half the only durable source's inflight)", n)
	}
}

// TestConfigurationDocIsValid keeps docs/configuration.md honest: its YAML
// blocks (all but the users-file example) together form a config that must
// load without a single error.
func TestConfigurationDocIsValid(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, block := range strings.Split(string(doc), "```yaml\n")[1:] {
		body, _, _ := strings.Cut(block, "```")
		if strings.HasPrefix(body, "users:") {
			continue
		}
		all.WriteString(body)
	}
	_, err = parseConfig([]byte(all.String()), env(map[string]string{"CLOUD_PASSWORD": "x"}))
	if err != nil {
		t.Fatalf("docs/configuration.md does not load:\n%v", err)
	}
}

// Merge keys take a list of mappings, each of which may merge a list in
// turn: nine levels of nine expand the rules of a 1 KB file a
// hundred-million-fold. The whole config path (as validate and SIGHUP run
// it) must refuse it.
func TestConfigRefusesMergeKeyAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("sensors:\n  - {id: s1, type: sim, sim: {metrics: {t: {min: 0, max: 1}}}}\nrules:\n  windows:\n    - &w0 {name: w, size: 1m}\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "    - &w%d {<<: [", i)
		for j := 0; j < 9; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*w%d", i-1)
		}
		b.WriteString("]}\n")
	}
	_, err := parseConfig([]byte(b.String()), env(nil))
	if err == nil || !strings.Contains(err.Error(), "too many nodes after alias expansion") {
		t.Fatalf("got %v, want the alias bomb refused", err)
	}
}

func TestConfigRefusesHugeFile(t *testing.T) {
	data := []byte("# " + strings.Repeat("x", maxConfigBytes) + "\n")
	_, err := parseConfig(data, env(nil))
	if err == nil || !strings.Contains(err.Error(), "larger than 4194304 bytes (4 MiB)") {
		t.Fatalf("got %v, want the file refused for its size", err)
	}
}

// Sizes that validate passed and run could not allocate are refused, each
// with its key, its line and the limit.
func TestConfigRefusesSizesPastTheMachine(t *testing.T) {
	_, err := parseConfig([]byte(`gateway: {queue_size: 1000000000000}
sources:
  mqtt:
    - broker: tcp://127.0.0.1:1883
      queue_size: 2000000
      queue_bytes: 10000000000
      max_payload: 1000000000
      subscriptions: [{topic: "a/#", json: {sensor_topic_segment: 1}}]
rules:
  max_routes: 50000000
  windows: [{size: 1ns}]
buffer: {commit_max: 5000000, queue_max: 5000000}
broker: {max_packet_size: 1000000000}
uplinks: [{type: stdout, batch_size: 20000, batch_bytes: 100000000, max_message_bytes: 300000000}]
`), env(nil))
	for _, want := range []string{
		"gateway.queue_size: must be between 1 and 1000000, got 1000000000000 (line 1)",
		"sources.mqtt[0].queue_size: must be at most 1000000, got 2000000 (line 5)",
		"sources.mqtt[0].queue_bytes: must be at most 1073741824 (1 GiB), got 10000000000 (line 6)",
		"sources.mqtt[0].max_payload: must be at most 16777216 (16 MiB), got 1000000000 (line 7)",
		"rules.max_routes: must be between 1 and 1000000, got 50000000 (line 10)",
		"rules.windows[0].size: must be at least 100ms, got 1ns (line 11)",
		"buffer.commit_max: must be at most 1000000, got 5000000 (line 12)",
		"buffer.queue_max: must be at most 1000000, got 5000000 (line 12)",
		"broker.max_packet_size: must be at most 268435455 (256 MiB, MQTT's limit), got 1000000000 (line 13)",
		"uplinks[0].batch_size: must be at most 10000, got 20000 (line 14)",
		"uplinks[0].batch_bytes: must be at most 67108864 (64 MiB), got 100000000 (line 14)",
		"uplinks[0].max_message_bytes: must be at most 268435455 (256 MiB, MQTT's limit), got 300000000 (line 14)",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}
