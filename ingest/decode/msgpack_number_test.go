package decode

import (
	"errors"
	"math"
	"testing"

	"github.com/sensorgate/sensorgate/ingest"
)

func batch(t testing.TB, gw string, rs ...ingest.Reading) []byte {
	t.Helper()
	b, err := (&ingest.ReadingBatch{Gateway: gw, Readings: rs}).MarshalMsg(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMsgpack(t *testing.T) {
	r1 := ingest.Reading{Sensor: "gh-1", Metric: "temp", Value: 21.5, Unit: "°C", Time: 1e18, Arrival: 5, OrigTime: 7, Quality: ingest.QualityFutureTime}
	r2 := ingest.Reading{Sensor: "gh-2", Metric: "rh", Value: -1, Time: 2e18, Arrival: 6}
	good := batch(t, "gw-7", r1, r2)
	tagged, err := ingest.AppendReadings(nil, &ingest.ReadingBatch{Gateway: "gw-7", Readings: []ingest.Reading{r1, r2}})
	if err != nil {
		t.Fatal(err)
	}
	at := func(r ingest.Reading, sensor string) ingest.Reading { r.Arrival = arrival; r.Sensor = sensor; return r }
	tests := []struct {
		name    string
		m       MsgpackMapping
		payload []byte
		want    []ingest.Reading
		reason  string
		skipped int
	}{
		{name: "batch", payload: good, want: []ingest.Reading{at(r1, "gh-1"), at(r2, "gh-2")}},
		{name: "tagged outbox record", payload: tagged, want: []ingest.Reading{at(r1, "gh-1"), at(r2, "gh-2")}},
		{name: "gateway prefix", m: MsgpackMapping{PrefixGateway: true}, payload: good, want: []ingest.Reading{at(r1, "gw-7/gh-1"), at(r2, "gw-7/gh-2")}},
		{name: "reading without sensor skipped", payload: batch(t, "", ingest.Reading{Metric: "x", Value: 1}, r2),
			want: []ingest.Reading{at(r2, "gh-2")}, reason: ReasonNoSensor, skipped: 1},
		{name: "reading without metric", payload: batch(t, "", ingest.Reading{Sensor: "x", Value: 1}), reason: ReasonNoMetrics, skipped: 1},
		{name: "empty batch", payload: batch(t, "g"), reason: ReasonNoMetrics, skipped: 1},
		{name: "truncated", payload: good[:len(good)-3], reason: ReasonMalformed, skipped: 1},
		{name: "trailing", payload: append(append([]byte(nil), good...), 0xc0), reason: ReasonMalformed, skipped: 1},
		{name: "json is not msgpack", payload: []byte(`{"r":[]}`), reason: ReasonMalformed, skipped: 1},
		{name: "huge array header", payload: []byte{0x81, 0xa1, 'r', 0xdd, 0xff, 0xff, 0xff, 0xff}, reason: ReasonMalformed, skipped: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Msgpack(&tt.m, "t", tt.payload, arrival, nil)
			checkErr(t, err, tt.reason, tt.skipped)
			if !sameReadings(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestMsgpackSteadyStateDoesNotAllocate(t *testing.T) {
	d := NewMsgpack(MsgpackMapping{PrefixGateway: true})
	var rs []ingest.Reading
	for i := range 10 {
		rs = append(rs, ingest.Reading{Sensor: "gh-1", Metric: "temp", Value: float64(i), Unit: "°C", Time: 1e18, Arrival: 5})
	}
	p := batch(t, "gw", rs...)
	out, _ := d.Decode("", p, 1, nil)
	if allocs := testing.AllocsPerRun(100, func() { out, _ = d.Decode("", p, 1, out[:0]) }); allocs != 0 || len(out) != 10 {
		t.Errorf("%v allocs per decode (%d readings)", allocs, len(out))
	}
}

func TestNumber(t *testing.T) {
	const a = arrival
	q := ingest.QualityNoEventTime
	tests := []struct {
		name    string
		m       NumberMapping
		topic   string
		payload string
		want    []ingest.Reading
		reason  string
	}{
		{"sensor and metric", NumberMapping{TopicTemplate: "site/{sensor}/{metric}", Unit: "°C"}, "site/gh-1/temp", " 21.5\n",
			[]ingest.Reading{{Sensor: "gh-1", Metric: "temp", Value: 21.5, Unit: "°C", Time: a, Arrival: a, Quality: q}}, ""},
		{"fixed metric, wildcards", NumberMapping{TopicTemplate: "+/{sensor}/#", Metric: "level"}, "a/tank-3/x/y", "-4e2",
			[]ingest.Reading{{Sensor: "tank-3", Metric: "level", Value: -400, Time: a, Arrival: a, Quality: q}}, ""},
		{"fixed sensor, default metric", NumberMapping{TopicTemplate: "meter/power", Sensor: "main"}, "meter/power", "true",
			[]ingest.Reading{{Sensor: "main", Metric: "value", Value: 1, Time: a, Arrival: a, Quality: q}}, ""},
		{"NaN passes to validation", NumberMapping{TopicTemplate: "s/{sensor}"}, "s/x", "NaN",
			[]ingest.Reading{{Sensor: "x", Metric: "value", Value: math.NaN(), Time: a, Arrival: a, Quality: q}}, ""},
		{"literal mismatch", NumberMapping{TopicTemplate: "site/{sensor}/{metric}"}, "other/gh-1/temp", "1", nil, ReasonNoSensor},
		{"too few levels", NumberMapping{TopicTemplate: "site/{sensor}/{metric}"}, "site/gh-1", "1", nil, ReasonNoSensor},
		{"too many levels", NumberMapping{TopicTemplate: "site/{sensor}/{metric}"}, "site/gh-1/t/x", "1", nil, ReasonNoSensor},
		{"empty sensor level", NumberMapping{TopicTemplate: "site/{sensor}"}, "site/", "1", nil, ReasonNoSensor},
		{"not a number", NumberMapping{TopicTemplate: "site/{sensor}"}, "site/a", "21,5", nil, ReasonMalformed},
		{"json object", NumberMapping{TopicTemplate: "site/{sensor}"}, "site/a", `{"v":1}`, nil, ReasonMalformed},
		{"empty", NumberMapping{TopicTemplate: "site/{sensor}"}, "site/a", "", nil, ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Number(&tt.m, tt.topic, []byte(tt.payload), a, nil)
			checkErr(t, err, tt.reason, 1)
			if !sameReadings(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	for _, bad := range []NumberMapping{{}, {TopicTemplate: "a/{sensor}x"}, {TopicTemplate: "#/{sensor}"}, {TopicTemplate: "a/b"}, {TopicTemplate: "{sensor}/{sensor}"}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestNumberSteadyStateDoesNotAllocate(t *testing.T) {
	d, _ := NewNumber(NumberMapping{TopicTemplate: "site/{sensor}/{metric}"})
	p := []byte("21.5")
	out, _ := d.Decode("site/gh-1/temp", p, 1, nil)
	if allocs := testing.AllocsPerRun(200, func() { out, _ = d.Decode("site/gh-1/temp", p, 1, out[:0]) }); allocs != 0 {
		t.Errorf("%v allocs per decode", allocs)
	}
}

func FuzzMsgpack(f *testing.F) {
	f.Add(batch(f, "gw-7", ingest.Reading{Sensor: "gh-1", Metric: "temp", Value: 21.5, Unit: "°C", Time: 1e18, Arrival: 5, OrigTime: 7, Quality: 3}))
	f.Add(batch(f, "", ingest.Reading{Metric: "x"}, ingest.Reading{Sensor: "s"}))
	f.Add([]byte{0x81, 0xa1, 'r', 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{'R', 0x80})
	d := NewMsgpack(MsgpackMapping{PrefixGateway: true})
	f.Fuzz(func(t *testing.T, payload []byte) {
		out, err := d.Decode("", payload, 3, nil)
		var de *Error
		if err != nil && !errors.As(err, &de) {
			t.Fatalf("not *Error: %v", err)
		}
		for _, r := range out {
			if r.Sensor == "" || r.Metric == "" || r.Arrival != 3 {
				t.Fatalf("bad reading %+v", r)
			}
		}
		// What we accept, ingest's generated decoder accepts too.
		if err == nil && len(payload) > 0 && payload[0] != 'R' {
			var rb ingest.ReadingBatch
			if _, uerr := rb.UnmarshalMsg(payload); uerr != nil {
				t.Fatalf("accepted what UnmarshalMsg rejects: %v", uerr)
			}
		}
	})
}

func FuzzNumber(f *testing.F) {
	for _, s := range [][2]string{{"site/gh-1/temp", "21.5"}, {"site/x/y", " -1e-3 "}, {"site//", "NaN"}, {"a", "true"}, {"site/a/b/c", "{}"}} {
		f.Add(s[0], []byte(s[1]))
	}
	d, _ := NewNumber(NumberMapping{TopicTemplate: "site/{sensor}/{metric}"})
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		out, err := d.Decode(topic, payload, 1, nil)
		if (err == nil) != (len(out) == 1) {
			t.Fatalf("err %v with %d readings", err, len(out))
		}
		if err == nil && (out[0].Sensor == "" || out[0].Metric == "") {
			t.Fatalf("bad reading %+v", out[0])
		}
	})
}

func BenchmarkMsgpack(b *testing.B) {
	d := NewMsgpack(MsgpackMapping{})
	var rs []ingest.Reading
	for i := range 100 {
		rs = append(rs, ingest.Reading{Sensor: "gh-" + string(rune('a'+i%10)), Metric: "temp", Value: float64(i), Unit: "°C", Time: 1e18 + int64(i), Arrival: 5})
	}
	p := batch(b, "gw", rs...)
	out, _ := d.Decode("", p, 1, nil)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		out, _ = d.Decode("", p, 1, out[:0])
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rs)), "ns/reading")
}

func BenchmarkNumber(b *testing.B) {
	d, _ := NewNumber(NumberMapping{TopicTemplate: "site/{sensor}/{metric}"})
	p := []byte("21.5")
	out, _ := d.Decode("site/gh-1/temp", p, 1, nil)
	b.ReportAllocs()
	for b.Loop() {
		out, _ = d.Decode("site/gh-1/temp", p, 1, out[:0])
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/reading")
}
