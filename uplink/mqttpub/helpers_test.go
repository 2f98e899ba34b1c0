package mqttpub

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/test/mqtttest"
	"github.com/sensorgate/sensorgate/uplink"
)

// received collects what an upstream broker got.
type received struct {
	mu     sync.Mutex
	msgs   []rxMsg
	status []string
}

type rxMsg struct {
	topic   string
	payload []byte
}

func (r *received) add(topic string, payload []byte) {
	if strings.HasPrefix(topic, "$") {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if strings.HasSuffix(topic, "/status") {
		r.status = append(r.status, string(payload))
		return
	}
	r.msgs = append(r.msgs, rxMsg{topic, append([]byte(nil), payload...)})
}

func (r *received) snapshot() []rxMsg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]rxMsg(nil), r.msgs...)
}

// ids returns the record ids in arrival order (batches flattened).
func (r *received) ids(t *testing.T) []string {
	var out []string
	for _, m := range r.snapshot() {
		if m.payload[0] == '[' {
			var arr []map[string]any
			if err := json.Unmarshal(m.payload, &arr); err != nil {
				t.Fatalf("bad payload %s: %v", m.payload, err)
			}
			for _, e := range arr {
				out = append(out, e["record_id"].(string))
			}
			continue
		}
		var e map[string]any
		if err := json.Unmarshal(m.payload, &e); err != nil {
			t.Fatalf("bad payload %s: %v", m.payload, err)
		}
		out = append(out, e["record_id"].(string))
	}
	return out
}

// startMochi starts an in-process broker on addr whose inline subscriber
// feeds rx.
func startMochi(t *testing.T, addr string, rx *received) *mqtttest.Broker {
	t.Helper()
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{Addr: addr})
	b.Subscribe("#", func(m mqtttest.Message) { rx.add(m.Topic, m.Payload) })
	return b
}

// newUplink is uplink.New with this package's transport.
func newUplink(cfg uplink.Config, ob uplink.Outbox, opts uplink.Options) (*uplink.Uplink, error) {
	tr, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return uplink.New(cfg, ob, tr, opts)
}

func mqttCfg(addr string) uplink.Config {
	return uplink.Config{Name: "cloud", Type: "mqtt", URL: "tcp://" + addr, KeepAlive: time.Second,
		Backoff: uplink.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}, AckTimeout: 3 * time.Second,
		PollInterval: 50 * time.Millisecond, MaxInflight: 16, ConnectTimeout: 2 * time.Second}
}
