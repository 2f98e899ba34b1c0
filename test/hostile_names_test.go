package test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// TestHostileSensorIDsDoNotBlockUplink (hardening finding 1): a sensor id
// taken from a payload field goes into the uplink's topic. A control
// character or a Unicode non-character in a topic makes mosquitto drop the
// connection as a malformed packet; if the uplink sent such a topic it
// would resend the same record at the head of its lane forever and every
// record behind it would wait. The topic level is made safe instead (the
// payload keeps the original id), so every sensor's summary arrives,
// including the good one published after the bad ones.
func TestHostileSensorIDsDoNotBlockUplink(t *testing.T) {
	up := mqtttest.StartMosquitto(t, mqtttest.MosquittoConfig{Conf: "allow_anonymous true\n"})
	local := startBroker(t)
	dir := t.TempDir()
	mport := mqtttest.FreePort(t)
	cfg := fmt.Sprintf(`gateway:
  id: gw-names
  data_dir: %s
metrics:
  listen: 127.0.0.1:%d
sources:
  mqtt:
    - broker: %s
      client_id: gw-names-in
      subscriptions:
        - topic: "site/#"
          qos: 1
          format: json
          json: {sensor_field: sensor, time_field: ts, time_format: unix_ms}
rules:
  windows:
    - {name: w, sensor: "*", metric: "*", type: tumbling, size: 1s, lateness: 0s}
uplinks:
  - name: cloud
    type: mqtt
    url: %s
    client_id: gw-names-up
    topic: "up/{gateway}/{lane}/{sensor}/{metric}"
`, dir, mport, local.URL(), up.URL())
	startGateway(t, writeConfig(t, dir, cfg))

	var mu sync.Mutex
	got := map[string]string{} // sensor id in the payload -> topic it came on
	sub := client(t, up.URL(), "names-collector")
	tok := sub.Subscribe("up/#", 1, func(_ paho.Client, m paho.Message) {
		var msg upstreamMsg
		if json.Unmarshal(m.Payload(), &msg) == nil && msg.Summary != nil {
			mu.Lock()
			got[msg.Summary.Sensor] = m.Topic()
			mu.Unlock()
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	pub := client(t, local.URL(), "names-pub")
	// JSON escapes, so the payload itself is valid; the decoded ids are not
	// valid topic levels.
	ids := []string{`ctl\u0001id`, `del\u007fid`, `c1\u0085id`, `nc\ufdd0id`, `nc\uffffid`, `slash/plus+hash#`, `ok-last`}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ts := time.Now().UnixMilli()
		for _, id := range ids {
			publish(t, pub, "site/x", 1, fmt.Appendf(nil, `{"sensor":"%s","ts":%d,"temperature":21.5}`, id, ts))
		}
		mu.Lock()
		n := len(got)
		_, last := got["ok-last"]
		mu.Unlock()
		if n >= len(ids) && last {
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("after 60s upstream has summaries of %d of %d sensors (%q); the lane is stuck behind a hostile id\nmosquitto log:\n%s", n, len(ids), got, up.Log())
		}
		time.Sleep(500 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, topic := range got {
		for _, r := range topic {
			if r < 0x20 || r >= 0x7f && r <= 0x9f || r >= 0xfdd0 && r <= 0xfdef || r&0xfffe == 0xfffe || r == '+' || r == '#' {
				t.Errorf("sensor %q went out on topic %q, which holds %U", id, topic, r)
			}
		}
	}
}
