package mqttsub

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/clock"
	"github.com/sensorgate/sensorgate/ingest/decode"
	"github.com/sensorgate/sensorgate/rules"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// TestMixedBadStream publishes good readings mixed with malformed JSON, a
// NaN, a 1 MB payload, a timestamp in 2099 and an unknown sensor, through a
// real broker, the subscriber and door validation: every good reading
// arrives, every bad one is counted under its reason.
func TestMixedBadStream(t *testing.T) {
	checkNoLeak(t)
	b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	addr := b.Addr()

	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := clock.New(clock.Options{
		Now:    func() time.Time { return now },
		Status: func() (bool, bool) { return true, true },
	})
	s, err := New(Config{Broker: "tcp://" + addr, Subscriptions: []Subscription{
		{Topic: "site/+/up", QoS: 1, JSON: decode.JSONMapping{SensorField: "id", TimeField: "ts", TimeFormat: decode.TimeUnixMS}},
	}}, Options{Logger: testLogger(t), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	max := 85.0
	// The door is the rules engine's first stage: the readings go through
	// an engine whose one window (a day, holding every reading here) shows
	// what passed, and how.
	eng, err := rules.New(rules.Config{Windows: []rules.WindowConfig{{Name: "day", Sensor: "*", Metric: "*", Type: rules.Tumbling,
		Size: 24 * time.Hour, Time: rules.EventTime, Late: rules.LateDrop}}},
		rules.Options{Door: &rules.Door{Validation: rules.Validation{KnownSensorsOnly: true}, Sensors: map[string]rules.SensorSpec{
			"gh-1": {Ranges: map[string]rules.Range{"temp": {Max: &max}}}, "gh-2": {},
		}, Clock: clk}})
	if err != nil {
		t.Fatal(err)
	}
	raw := make(chan ingest.Reading, 16)
	sink := &summarySink{}
	vdone := make(chan error, 1)
	go func() { vdone <- eng.Run(context.Background(), raw, sink) }()
	stop := running(t, s, raw)
	mqtttest.WaitFor(t, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "subscription")

	ms := now.UnixMilli()
	good := func(id string, i int) string {
		return fmt.Sprintf(`{"id":%q,"ts":%d,"temp":%d}`, id, ms-int64(i)*1000, 20+i)
	}
	msgs := []string{
		good("gh-1", 0),
		`{"id":"gh-1","ts":` + fmt.Sprint(ms) + `,"temp":`, // malformed
		good("gh-2", 1),
		`{"id":"gh-1","ts":` + fmt.Sprint(ms) + `,"temp":NaN}`,              // not finite
		`{"id":"gh-1","pad":"` + strings.Repeat("x", 1<<20) + `","temp":1}`, // 1 MB
		good("gh-1", 2),
		`{"id":"gh-2","ts":` + fmt.Sprint(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()) + `,"temp":5}`, // future: flagged
		`{"id":"intruder","ts":` + fmt.Sprint(ms) + `,"temp":1}`,                                                  // unknown sensor
		`{"id":"gh-1","ts":` + fmt.Sprint(ms) + `,"temp":150}`,                                                    // out of range
		good("gh-2", 3),
	}
	for _, m := range msgs {
		if err := b.Publish("site/gw/up", []byte(m), false, 1); err != nil {
			t.Fatal(err)
		}
	}
	// 10 messages, one malformed and one too large: 8 readings at the door.
	mqtttest.WaitFor(t, waitLimit, func() bool { return eng.DoorStats().Checked == 8 }, "the door's checks")
	stop()
	close(raw)
	if err := <-vdone; err != nil {
		t.Fatal(err)
	}
	if len(sink.s) != 2 {
		t.Fatalf("summaries %+v", sink.s)
	}
	for _, sm := range sink.s {
		switch sm.Sensor {
		case "gh-1":
			if sm.Count != 2 || sm.Min != 20 || sm.Max != 22 || sm.Quality != 0 || sm.Rejected != 2 {
				t.Errorf("gh-1 summary %+v", sm)
			}
		case "gh-2":
			// The future reading got the arrival time and its flag.
			if sm.Count != 3 || sm.Min != 5 || sm.Max != 23 || sm.Quality != ingest.QualityFutureTime || sm.LastTime != now.UnixNano() {
				t.Errorf("gh-2 summary %+v", sm)
			}
		default:
			t.Errorf("summary of %q", sm.Sensor)
		}
	}
	st := s.Stats()
	if st.DecodeErrors[decode.ReasonMalformed] != 1 || st.DecodeErrors[decode.ReasonTooLarge] != 1 || st.Received != uint64(len(msgs)) {
		t.Errorf("subscriber stats %+v", st)
	}
	vs := eng.DoorStats()
	if vs.Rejected[rules.ReasonNotFinite] != 1 || vs.Rejected[rules.ReasonUnknownSensor] != 1 ||
		vs.Rejected[rules.ReasonOutOfRange] != 1 || vs.FutureTime != 1 || vs.Passed != 5 {
		t.Errorf("validator stats %+v", vs)
	}
}

// summarySink keeps copies of the summaries of an engine.
type summarySink struct{ s []ingest.Summary }

func (k *summarySink) Summary(_ context.Context, s *ingest.Summary) error {
	cp := *s
	cp.Quantiles, cp.Sketch = nil, nil
	k.s = append(k.s, cp)
	return nil
}

func (k *summarySink) Alert(context.Context, *ingest.Alert) error { return nil }
