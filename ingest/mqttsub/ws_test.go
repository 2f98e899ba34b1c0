package mqttsub

import (
	"testing"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

func TestWebSocketBroker(t *testing.T) {
	checkNoLeak(t)
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{Websocket: true})
	addr := b.Addr()
	s := newSub(t, Config{Broker: "ws://" + addr + "/mqtt", Subscriptions: []Subscription{jsonSub("ws/+", 1, 1)}})
	out := make(chan ingest.Reading, 4)
	running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "subscription over websocket")
	if err := b.Publish("ws/dev", payload(1714564800, "v", 3), false, 1); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, out, 1); got[0].Sensor != "dev" || got[0].Value != 3 {
		t.Fatalf("got %+v", got)
	}
}
