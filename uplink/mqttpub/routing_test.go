package mqttpub

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/test/leak"
	"github.com/sensorgate/sensorgate/test/mqtttest"
	"github.com/sensorgate/sensorgate/uplink"
	"github.com/sensorgate/sensorgate/uplink/httppost"
	"github.com/sensorgate/sensorgate/uplink/internal/uplinktest"
)

// transport picks the transport of c, as cmd/sensorgate does.
func transport(c uplink.Config) (uplink.Transport, error) {
	if c.Type == uplink.TypeHTTP {
		return httppost.New(c)
	}
	return New(c)
}

// Two uplinks on one outbox: alerts go to MQTT (as SenML), summaries to
// HTTP (as MessagePack); neither touches the other's lane.
func TestLaneRoutingTwoUplinks(t *testing.T) {
	leak.Check(t)
	addr := mqtttest.FreeAddr(t)
	rx := &received{}
	startMochi(t, addr, rx)
	var mu sync.Mutex
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
		if r.Header.Get("Content-Type") != "application/msgpack" {
			w.WriteHeader(http.StatusUnsupportedMediaType)
		}
	}))
	defer srv.Close()
	ob := uplinktest.NewOutbox()
	for i := 0; i < 10; i++ {
		ob.Append(context.Background(), buffer.LaneAlerts, uplinktest.AlertRecord(t, i))
		ob.Append(context.Background(), buffer.LaneSummaries, uplinktest.SummaryRecord(t, i))
	}
	cfgs := []uplink.Config{
		{Name: "cloud", Type: "mqtt", URL: "tcp://" + addr, Lanes: []string{"alerts"}, Format: uplink.FormatSenML, DisableStatus: true,
			PollInterval: 20 * time.Millisecond},
		{Name: "api", Type: "http", URL: srv.URL, Lanes: []string{"summaries"}, Format: uplink.FormatMsgpack, BatchSize: 4,
			PollInterval: 20 * time.Millisecond},
	}
	for i := range cfgs {
		cfgs[i].Defaults()
	}
	if err := uplink.ValidateRouting(cfgs); err != nil {
		t.Fatal(err)
	}
	var ups []*uplink.Uplink
	for _, c := range cfgs {
		tr, err := transport(c)
		if err != nil {
			t.Fatal(err)
		}
		u, err := uplink.New(c, ob, tr, uplink.Options{Gateway: "gw-1"})
		if err != nil {
			t.Fatal(err)
		}
		ups = append(ups, u)
		uplinktest.Run(t, u)
	}
	uplinktest.WaitFor(t, "both lanes drained", func() bool {
		return ob.Count(buffer.LaneAlerts) == 0 && ob.Count(buffer.LaneSummaries) == 0
	})
	if a, h := ups[0].Stats(), ups[1].Stats(); a.Acked != 10 || h.Acked != 10 || h.Messages != 3 {
		t.Errorf("mqtt %+v\nhttp %+v", a, h)
	}
	for _, m := range rx.snapshot() {
		var pack []map[string]any
		if err := json.Unmarshal(m.payload, &pack); err != nil || pack[0]["bn"] != "gw-1:s1:" {
			t.Errorf("not a SenML pack: %s", m.payload)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, b := range bodies {
		if n, _, err := msgp.ReadArrayHeaderBytes(b); err != nil || n == 0 {
			t.Errorf("not a MessagePack array: %v", err)
		}
	}
}
