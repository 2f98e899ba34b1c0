package mqttsub

import (
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/sensorgate/sensorgate/ingest"
)

func TestWebSocketBroker(t *testing.T) {
	checkNoLeak(t)
	addr := freeAddr(t)
	b := mochi.New(&mochi.Options{InlineClient: true, Logger: quietLogger()})
	if err := b.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.AddListener(listeners.NewWebsocket(listeners.Config{ID: "ws", Address: addr})); err != nil {
		t.Fatal(err)
	}
	if err := b.Serve(); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s := newSub(t, Config{Broker: "ws://" + addr + "/mqtt", Subscriptions: []Subscription{jsonSub("ws/+", 1, 1)}})
	out := make(chan ingest.Reading, 4)
	running(t, s, out)
	waitFor(t, "subscription over websocket", func() bool { return len(b.Topics.Subscribers("ws/x").Subscriptions) > 0 })
	if err := b.Publish("ws/dev", payload(1714564800, "v", 3), false, 1); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, out, 1); got[0].Sensor != "dev" || got[0].Value != 3 {
		t.Fatalf("got %+v", got)
	}
}
