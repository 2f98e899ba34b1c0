package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	sgbroker "github.com/sensorgate/sensorgate/ingest/broker"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// TestBadInputMixedWithGood: field nodes publish to the gateway's embedded
// broker (authenticated, with topic ACLs); malformed JSON, NaN, a 1 MB
// payload, a timestamp in 2099, an out-of-range value and an unknown sensor
// are mixed with good readings. Every good reading must reach the summaries
// upstream and every bad one must be counted under its reason.
func TestBadInputMixedWithGood(t *testing.T) {
	dir := t.TempDir()
	upstream := startBroker(t)
	col := collect(upstream, "up/#")
	localPort, mport := mqtttest.FreePort(t), mqtttest.FreePort(t)
	hash1, err := sgbroker.HashPassword("secret-1")
	if err != nil {
		t.Fatal(err)
	}
	hash9, _ := sgbroker.HashPassword("secret-9")
	cfg := fmt.Sprintf(`gateway: {id: gw-door, data_dir: %s, shutdown_grace: 10s}
log: {level: debug}
metrics: {listen: "127.0.0.1:%d"}
broker:
  enabled: true
  listen: 127.0.0.1:%d
  max_packet_size: 4194304
  users:
    - username: node-01
      password_hash: %q
      acl: [{topic: "site/%%u/#", access: write}]
    - username: node-99
      password_hash: %q
      acl: [{topic: "site/%%u/#", access: write}]
sources:
  mqtt:
    - broker: local
      subscriptions:
        - topic: "site/+/telemetry"
          qos: 1
          format: json
          json: {sensor_topic_segment: 1, time_field: ts, time_format: unix_ms}
        - topic: "site/+/raw/+"
          qos: 1
          format: number
          number: {topic_template: "site/{sensor}/raw/{metric}"}
sensors:
  - {id: node-01, ranges: {temperature: {min: -40, max: 85}}}
validation: {known_sensors_only: true}
rules:
  windows:
    - {name: w, sensor: "*", metric: "*", type: tumbling, size: 1h, lateness: 0s}
uplinks:
  - {name: cloud, type: mqtt, url: %s, topic: "up/{lane}"}
`, dir, mport, localPort, hash1, hash9, upstream.URL())
	g := startGateway(t, writeConfig(t, dir, cfg), "--flush-on-stop") // the stop emits the open window, to count it
	g.waitLog("sensorgate starting", 30*time.Second)

	local := fmt.Sprintf("tcp://127.0.0.1:%d", localPort)
	node := authClient(t, local, "node-01", "node-01", "secret-1")
	// The subscription may land a moment after start: wait until a good
	// reading is counted before the real stream.
	good := 0
	var sum float64
	pubGood := func(v float64) {
		publish(t, node, "site/node-01/telemetry", 1, fmt.Appendf(nil, `{"ts":%d,"temperature":%v}`, time.Now().UnixMilli(), v))
		good++
		sum += v
	}
	mqtttest.WaitFor(t, 20*time.Second, func() bool {
		pubGood(20)
		time.Sleep(100 * time.Millisecond)
		return comp(t, mport, "source_mqtt0", "Readings") > 0
	}, "gateway ingesting")

	for i := 0; i < 50; i++ {
		pubGood(float64(10 + i%7))
		switch i {
		case 5:
			publish(t, node, "site/node-01/telemetry", 1, []byte(`{"ts":12,"temperature":`)) // malformed
		case 10:
			publish(t, node, "site/node-01/raw/temperature", 1, []byte("NaN"))
		case 15:
			big := `{"temperature":1,"pad":"` + strings.Repeat("x", 1<<20) + `"}`
			publish(t, node, "site/node-01/telemetry", 1, []byte(big))
		case 20:
			// A timestamp in 2099 is not trusted but the reading is kept,
			// stamped with its arrival time and flagged.
			ts := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
			publish(t, node, "site/node-01/telemetry", 1, fmt.Appendf(nil, `{"ts":%d,"temperature":21}`, ts))
			good++
			sum += 21
		case 25:
			publish(t, node, "site/node-01/telemetry", 1, fmt.Appendf(nil, `{"ts":%d,"temperature":500}`, time.Now().UnixMilli()))
		}
	}
	// An unknown sensor (a valid broker user, but not configured).
	stranger := authClient(t, local, "node-99", "node-99", "secret-9")
	publish(t, stranger, "site/node-99/telemetry", 1, fmt.Appendf(nil, `{"ts":%d,"temperature":20}`, time.Now().UnixMilli()))
	// Outside the ACL: node-01 may not publish for node-99. On MQTT 3.1.1
	// the broker ends that connection; nothing may arrive.
	_ = node.Publish("site/node-99/telemetry", 1, false, []byte(`{"temperature":1}`)).WaitTimeout(2 * time.Second)

	defer func() {
		if t.Failed() {
			t.Logf("healthz: %v", health(t, mport)["components"])
		}
	}()
	mqtttest.WaitFor(t, 20*time.Second, func() bool {
		return comp(t, mport, "validate", "Rejected", "unknown_sensor") >= 1 &&
			comp(t, mport, "validate", "Rejected", "out_of_range") >= 1 &&
			comp(t, mport, "validate", "Rejected", "not_finite") >= 1 &&
			comp(t, mport, "source_mqtt0", "DecodeErrors", "malformed") >= 1 &&
			comp(t, mport, "source_mqtt0", "DecodeErrors", "too_large") >= 1 &&
			comp(t, mport, "validate", "FutureTime") >= 1
	}, "every message counted")

	if n := comp(t, mport, "broker", "ACLDenied"); n < 1 {
		t.Errorf("broker ACLDenied = %v, want >= 1", n)
	}
	if n := comp(t, mport, "validate", "Passed"); int(n) != good {
		t.Errorf("validate passed %v readings, want the %d good ones", n, good)
	}
	g.terminate()

	var count uint64
	var gotSum float64
	for _, s := range col.summaries() {
		if s.Sensor != "node-01" {
			t.Errorf("summary for %s: only node-01 is good", s.Sensor)
			continue
		}
		count += s.Count
		gotSum += s.Sum
	}
	if count != uint64(good) || gotSum != sum {
		t.Fatalf("summaries count %d readings (sum %v), want %d (sum %v)", count, gotSum, good, sum)
	}
}

func authClient(t testing.TB, url, id, user, pass string) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(user).SetPassword(pass).
		SetAutoReconnect(true).SetMaxReconnectInterval(time.Second).
		SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s as %s: %v", url, user, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// comp reads a number from the gateway's /healthz: components.<name>.<path...>.
func comp(t testing.TB, port int, name string, path ...string) float64 {
	doc := health(t, port)
	comps, _ := doc["components"].(map[string]any)
	var v any = comps[name]
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	f, _ := v.(float64)
	return f
}
