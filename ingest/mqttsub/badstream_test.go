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
	"github.com/sensorgate/sensorgate/ingest/validate"
)

// TestMixedBadStream publishes good readings mixed with malformed JSON, a
// NaN, a 1 MB payload, a timestamp in 2099 and an unknown sensor, through a
// real broker, the subscriber and door validation: every good reading
// arrives, every bad one is counted under its reason.
func TestMixedBadStream(t *testing.T) {
	checkNoLeak(t)
	addr := freeAddr(t)
	b := startMochi(t, addr, nil)
	defer b.Close()

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
	v, err := validate.New(validate.Config{KnownSensorsOnly: true}, map[string]validate.SensorSpec{
		"gh-1": {Ranges: map[string]validate.Range{"temp": {Max: &max}}}, "gh-2": {},
	}, validate.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	raw := make(chan ingest.Reading, 16)
	out := make(chan ingest.Reading, 16)
	ctx, cancel := context.WithCancel(context.Background())
	vdone := make(chan error, 1)
	go func() { vdone <- v.Run(ctx, raw, out) }()
	defer func() {
		cancel()
		<-vdone
	}()
	running(t, s, raw)
	waitFor(t, "subscription", func() bool { return len(b.Topics.Subscribers("site/x/up").Subscriptions) > 0 })

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
	got := collect(t, out, 5)
	var future int
	for i, r := range got {
		switch {
		case r.Quality.Has(ingest.QualityFutureTime):
			future++
			if r.Sensor != "gh-2" || r.Time != now.UnixNano() || r.OrigTime != time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano() {
				t.Errorf("future reading %+v", r)
			}
		case r.Quality != 0 || r.Value < 20 || r.Value > 23:
			t.Errorf("reading %d: %+v", i, r)
		}
	}
	if future != 1 {
		t.Errorf("%d future readings, want 1", future)
	}
	select {
	case r := <-out:
		t.Fatalf("unexpected extra reading %+v", r)
	case <-time.After(200 * time.Millisecond):
	}
	st := s.Stats()
	if st.DecodeErrors[decode.ReasonMalformed] != 1 || st.DecodeErrors[decode.ReasonTooLarge] != 1 || st.Received != uint64(len(msgs)) {
		t.Errorf("subscriber stats %+v", st)
	}
	vs := v.Stats()
	if vs.Rejected[validate.ReasonNotFinite] != 1 || vs.Rejected[validate.ReasonUnknownSensor] != 1 ||
		vs.Rejected[validate.ReasonOutOfRange] != 1 || vs.FutureTime != 1 || vs.Passed != 5 {
		t.Errorf("validator stats %+v", vs)
	}
}
