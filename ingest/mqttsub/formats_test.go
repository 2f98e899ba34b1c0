package mqttsub

import (
	"fmt"
	"sort"
	"testing"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/decode"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

func TestAllFormats(t *testing.T) {
	checkNoLeak(t)
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	addr := b.Addr()
	s := newSub(t, Config{Broker: "tcp://" + addr, Subscriptions: []Subscription{
		{Topic: "f/json/+", JSON: decode.JSONMapping{SensorTopicSegment: intp(2)}},
		{Topic: "f/senml/#", QoS: 1, Format: FormatSenML},
		{Topic: "f/cbor/#", QoS: 2, Format: FormatSenMLCBOR},
		{Topic: "f/msgpack", QoS: 1, Format: FormatMsgpack, Msgpack: decode.MsgpackMapping{PrefixGateway: true}},
		{Topic: "f/num/+/+", Format: FormatNumber, Number: decode.NumberMapping{TopicTemplate: "f/num/{sensor}/{metric}"}},
	}})
	out := make(chan ingest.Reading, 16)
	running(t, s, out)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "subscriptions")

	mp, err := (&ingest.ReadingBatch{Gateway: "gw9", Readings: []ingest.Reading{{Sensor: "m", Metric: "x", Value: 4, Time: 1}}}).MarshalMsg(nil)
	if err != nil {
		t.Fatal(err)
	}
	cborPack := []byte{0x81, 0xa2, 0x00, 0x61, 'c', 0x02, 0x03} // [{0:"c", 2:3}]
	for _, m := range []struct {
		topic   string
		payload []byte
	}{
		{"f/json/j", []byte(`{"x":1}`)},
		{"f/senml/s", []byte(`[{"bn":"s:","n":"x","v":2}]`)},
		{"f/cbor/c", cborPack},
		{"f/msgpack", mp},
		{"f/num/n/x", []byte("5")},
	} {
		if err := b.Publish(m.topic, m.payload, false, 1); err != nil {
			t.Fatal(err)
		}
	}
	got := collect(t, out, 5)
	var s2 []string
	for _, r := range got {
		s2 = append(s2, fmt.Sprintf("%s/%s=%v", r.Sensor, r.Metric, r.Value))
	}
	sort.Strings(s2)
	want := "[c/value=3 gw9/m/x=4 j/x=1 n/x=5 s/x=2]"
	if fmt.Sprint(s2) != want {
		t.Errorf("got %v, want %s", s2, want)
	}
}
