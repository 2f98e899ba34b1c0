package decode

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
)

func intp(i int) *int { return &i }

const arrival = int64(1_700_000_999_000_000_000)

func TestJSONMapping(t *testing.T) {
	ts := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	tests := []struct {
		name    string
		m       JSONMapping
		topic   string
		payload string
		want    []ingest.Reading
		reason  string // expected error reason, "" for none
		skipped int
	}{
		{
			name:    "all numeric top-level fields",
			m:       JSONMapping{SensorField: "id", TimeField: "ts", TimeFormat: TimeUnixS},
			payload: `{"id":"gh-1","ts":1714564800,"temp":21.5,"hum":40,"note":"x","nested":{"a":1},"ok":true}`,
			want: []ingest.Reading{
				{Sensor: "gh-1", Metric: "temp", Value: 21.5, Time: ts, Arrival: arrival},
				{Sensor: "gh-1", Metric: "hum", Value: 40, Time: ts, Arrival: arrival},
			},
		},
		{
			name: "nested paths, units, ms time",
			m: JSONMapping{SensorField: "meta.id", TimeField: "meta.ts", TimeFormat: TimeUnixMS,
				Metrics: map[string]MetricField{"temperature": {Field: "env.temp", Unit: "°C"}, "rh": {Field: "env.hum", Unit: "%"}}},
			payload: `{"env":{"temp":-3.25,"hum":"55.5","other":[1,2,{"x":null}]},"meta":{"ts":1714564800000,"id":42}}`,
			want: []ingest.Reading{
				{Sensor: "42", Metric: "temperature", Value: -3.25, Unit: "°C", Time: ts, Arrival: arrival},
				{Sensor: "42", Metric: "rh", Value: 55.5, Unit: "%", Time: ts, Arrival: arrival},
			},
		},
		{
			name:    "sensor from topic, no time",
			m:       JSONMapping{SensorTopicSegment: intp(1), Metrics: map[string]MetricField{"temp": {}}},
			topic:   "sensors/dev-7/telemetry",
			payload: ` { "temp" : 1e2 , "hum": 3 } `,
			want:    []ingest.Reading{{Sensor: "dev-7", Metric: "temp", Value: 100, Time: arrival, Arrival: arrival, Quality: ingest.QualityNoEventTime}},
		},
		{
			name:    "field wins over topic",
			m:       JSONMapping{SensorField: "id", SensorTopicSegment: intp(0)},
			topic:   "t",
			payload: `[{"id":"a","v":1},{"v":2}]`,
			want: []ingest.Reading{
				{Sensor: "a", Metric: "v", Value: 1, Time: arrival, Arrival: arrival, Quality: ingest.QualityNoEventTime},
				{Sensor: "t", Metric: "v", Value: 2, Time: arrival, Arrival: arrival, Quality: ingest.QualityNoEventTime},
			},
		},
		{
			name:    "rfc3339 with offset and fraction, auto",
			m:       JSONMapping{SensorField: "id", TimeField: "t"},
			payload: `{"id":"s","t":"2024-05-01T14:00:00.5+02:00","v":1}`,
			want:    []ingest.Reading{{Sensor: "s", Metric: "v", Value: 1, Time: ts + 5e8, Arrival: arrival}},
		},
		{
			name:    "auto ms, ns, fractional s, numeric string",
			m:       JSONMapping{SensorField: "id", TimeField: "t"},
			payload: `[{"id":"a","t":1714564800000,"v":1},{"id":"b","t":1714564800000000000,"v":2},{"id":"c","t":1714564800.25,"v":3},{"id":"d","t":"1714564800","v":4}]`,
			want: []ingest.Reading{
				{Sensor: "a", Metric: "v", Value: 1, Time: ts, Arrival: arrival},
				{Sensor: "b", Metric: "v", Value: 2, Time: ts, Arrival: arrival},
				{Sensor: "c", Metric: "v", Value: 3, Time: ts + 25e7, Arrival: arrival},
				{Sensor: "d", Metric: "v", Value: 4, Time: ts, Arrival: arrival},
			},
		},
		{
			name:    "bool and null metrics, escaped keys and ids",
			m:       JSONMapping{SensorField: "i\"d", Metrics: map[string]MetricField{"door": {}, "gone": {}}},
			payload: `{"i\"d":"caf\u00e9\ud83d\ude00","door":true,"gone":null}`,
			want:    []ingest.Reading{{Sensor: "café😀", Metric: "door", Value: 1, Time: arrival, Arrival: arrival, Quality: ingest.QualityNoEventTime}},
		},
		{
			name:    "NaN and Infinity pass through to validation",
			m:       JSONMapping{SensorField: "id"},
			payload: `{"id":"s","a":NaN,"b":-Infinity,"c":1e999}`,
			want: []ingest.Reading{
				{Sensor: "s", Metric: "a", Value: math.NaN(), Time: arrival, Arrival: arrival, Quality: ingest.QualityNoEventTime},
				{Sensor: "s", Metric: "b", Value: math.Inf(-1), Time: arrival, Arrival: arrival, Quality: ingest.QualityNoEventTime},
				{Sensor: "s", Metric: "c", Value: math.Inf(1), Time: arrival, Arrival: arrival, Quality: ingest.QualityNoEventTime},
			},
		},
		{
			name:    "one bad object of three is skipped",
			m:       JSONMapping{SensorField: "id", TimeField: "t", TimeFormat: TimeRFC3339},
			payload: `[{"id":"a","v":1},{"id":"b","t":"yesterday","v":2},{"id":"c","v":3}]`,
			want: []ingest.Reading{
				{Sensor: "a", Metric: "v", Value: 1, Time: arrival, Arrival: arrival, Quality: ingest.QualityNoEventTime},
				{Sensor: "c", Metric: "v", Value: 3, Time: arrival, Arrival: arrival, Quality: ingest.QualityNoEventTime},
			},
			reason: ReasonBadTime, skipped: 1,
		},
		{name: "malformed", m: JSONMapping{SensorField: "id"}, payload: `{"id":"a","v":1`, reason: ReasonMalformed, skipped: 1},
		{name: "malformed in array drops all", m: JSONMapping{SensorField: "id"}, payload: `[{"id":"a","v":1},{"id":}]`, reason: ReasonMalformed, skipped: 1},
		{name: "trailing garbage", m: JSONMapping{SensorField: "id"}, payload: `{"id":"a","v":1}x`, reason: ReasonMalformed, skipped: 1},
		{name: "empty", m: JSONMapping{SensorField: "id"}, payload: ` `, reason: ReasonMalformed, skipped: 1},
		{name: "scalar", m: JSONMapping{SensorField: "id"}, payload: `3`, reason: ReasonMalformed, skipped: 1},
		{name: "array of scalars", m: JSONMapping{SensorField: "id"}, payload: `[3]`, reason: ReasonMalformed, skipped: 1},
		{name: "empty array", m: JSONMapping{SensorField: "id"}, payload: `[]`},
		{name: "no sensor", m: JSONMapping{SensorField: "id"}, payload: `{"v":1}`, reason: ReasonNoSensor, skipped: 1},
		{name: "topic too short", m: JSONMapping{SensorTopicSegment: intp(3)}, topic: "a/b", payload: `{"v":1}`, reason: ReasonNoSensor, skipped: 1},
		{name: "sensor is an object", m: JSONMapping{SensorField: "id"}, payload: `{"id":{},"v":1}`, reason: ReasonNoSensor, skipped: 1},
		{name: "no metrics", m: JSONMapping{SensorField: "id"}, payload: `{"id":"a","s":"x"}`, reason: ReasonNoMetrics, skipped: 1},
		{name: "bad value", m: JSONMapping{SensorField: "id", Metrics: map[string]MetricField{"v": {}}}, payload: `{"id":"a","v":"high"}`, reason: ReasonBadValue, skipped: 1},
		{name: "value is array", m: JSONMapping{SensorField: "id", Metrics: map[string]MetricField{"v": {}}}, payload: `{"id":"a","v":[1]}`, reason: ReasonBadValue, skipped: 1},
		{name: "time overflow", m: JSONMapping{SensorField: "id", TimeField: "t", TimeFormat: TimeUnixS}, payload: `{"id":"a","t":99999999999999,"v":1}`, reason: ReasonBadTime, skipped: 1},
		{name: "too deep", m: JSONMapping{SensorField: "a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a"},
			payload: strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70), reason: ReasonTooLarge, skipped: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := JSON(&tt.m, tt.topic, []byte(tt.payload), arrival, nil)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else {
				var de *Error
				if !errors.As(err, &de) {
					t.Fatalf("err = %v, want *Error with reason %s", err, tt.reason)
				}
				if de.Reason != tt.reason || de.Skipped != tt.skipped {
					t.Fatalf("err = %v (reason %s skipped %d), want reason %s skipped %d", err, de.Reason, de.Skipped, tt.reason, tt.skipped)
				}
				if !errors.Is(err, &Error{Reason: tt.reason}) {
					t.Fatalf("errors.Is does not match reason")
				}
			}
			if !sameReadings(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func sameReadings(a, b []ingest.Reading) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if math.IsNaN(x.Value) && math.IsNaN(y.Value) {
			x.Value, y.Value = 0, 0
		}
		if x != y {
			return false
		}
	}
	return true
}

func TestJSONAppendsAndKeepsPrefix(t *testing.T) {
	d, err := NewJSON(JSONMapping{SensorField: "id"})
	if err != nil {
		t.Fatal(err)
	}
	prev := []ingest.Reading{{Sensor: "keep"}}
	out, err := d.Decode("", []byte(`{"id":"x","v":1`), 0, prev)
	if err == nil || len(out) != 1 || out[0].Sensor != "keep" {
		t.Fatalf("malformed payload must leave out unchanged: %v %+v", err, out)
	}
	out, err = d.Decode("", []byte(`{"id":"x","v":1}`), 0, out)
	if err != nil || len(out) != 2 || out[0].Sensor != "keep" || out[1].Sensor != "x" {
		t.Fatalf("append: %v %+v", err, out)
	}
}

func TestJSONMappingValidate(t *testing.T) {
	tests := []struct {
		m     JSONMapping
		paths []string
	}{
		{JSONMapping{SensorField: "id"}, nil},
		{JSONMapping{SensorTopicSegment: intp(0), TimeFormat: TimeUnixNS}, nil},
		{JSONMapping{}, []string{"sensor_field"}},
		{JSONMapping{SensorField: "a..b", SensorTopicSegment: intp(-1)}, []string{"sensor_field", "sensor_topic_segment"}},
		{JSONMapping{SensorField: "id", TimeField: "id", TimeFormat: "weird"}, []string{"time_field", "time_format"}},
		{JSONMapping{SensorField: "id", Metrics: map[string]MetricField{"a": {Field: "x"}, "b": {Field: "x"}}}, []string{"metrics.b.field"}},
		{JSONMapping{SensorField: "id", Metrics: map[string]MetricField{"a": {Field: "id"}}}, []string{"metrics.a.field"}},
		{JSONMapping{SensorField: "env", Metrics: map[string]MetricField{"a": {Field: "env.t"}}}, []string{"metrics"}},
	}
	for i, tt := range tests {
		err := tt.m.Validate()
		var got []string
		for _, e := range ingest.FlattenErrors(err) {
			var fe *ingest.FieldError
			if !errors.As(e, &fe) {
				t.Fatalf("%d: %v is not a FieldError", i, e)
			}
			got = append(got, fe.Path)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.paths) {
			t.Errorf("%d: paths %v, want %v (%v)", i, got, tt.paths, err)
		}
	}
}

func TestRFC3339MatchesTimePackage(t *testing.T) {
	for _, s := range []string{
		"2024-05-01T12:00:00Z", "1970-01-01T00:00:00Z", "2000-02-29T23:59:59.999999999-23:59",
		"1969-12-31T23:59:59.5Z", "2099-01-01T00:00:00+05:30", "0001-01-01T00:00:00Z", "2262-04-11T23:47:16Z",
		"1677-09-21T00:12:44Z", "2024-05-01 12:00:00.1234567891z",
	} {
		got, ok := parseRFC3339([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, strings.Replace(strings.Replace(s, " ", "T", 1), "z", "Z", 1))
		inRange := err == nil && want.Year() > 1677 && want.Year() < 2262
		if ok != inRange {
			t.Errorf("%s: ok=%v, time.Parse err=%v", s, ok, err)
			continue
		}
		if ok && got != want.UnixNano() && !strings.Contains(s, "1234567891") {
			t.Errorf("%s: %d, want %d", s, got, want.UnixNano())
		}
	}
	for _, s := range []string{"2024-02-30T00:00:00Z", "2024-05-01T24:00:00Z", "2024-05-01T12:00:00", "2024-05-01T12:00:00+0200", "2024-05-01T12:00:60Z", "2024-05-01T12:00:00.Z"} {
		if _, ok := parseRFC3339([]byte(s)); ok {
			t.Errorf("%s: accepted", s)
		}
	}
}

func TestJSONSteadyStateDoesNotAllocate(t *testing.T) {
	d, err := NewJSON(JSONMapping{SensorField: "id", TimeField: "ts", TimeFormat: TimeUnixMS,
		Metrics: map[string]MetricField{"temp": {Field: "env.temp", Unit: "°C"}, "hum": {Field: "env.hum", Unit: "%"}}})
	if err != nil {
		t.Fatal(err)
	}
	all, _ := NewJSON(JSONMapping{SensorField: "id", TimeField: "ts"})
	p1 := []byte(`{"id":"gh-17","ts":1714564800123,"env":{"temp":21.75,"hum":40.5},"rssi":-70}`)
	p2 := []byte(`[{"id":"gh-17","ts":"2024-05-01T12:00:00.5Z","temp":21.75,"hum":40.5},{"id":"gh-18","ts":1714564800,"temp":1}]`)
	out := make([]ingest.Reading, 0, 16)
	for _, c := range []struct {
		d *JSONDecoder
		p []byte
	}{{d, p1}, {all, p2}} {
		out, _ = c.d.Decode("", c.p, 1, out[:0]) // warm the interner
		allocs := testing.AllocsPerRun(200, func() {
			var err error
			if out, err = c.d.Decode("", c.p, 1, out[:0]); err != nil || len(out) < 2 {
				t.Fatalf("decode: %v %d", err, len(out))
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per decode, want 0", c.p, allocs)
		}
	}
}

// TestJSONAgreesWithEncodingJSON checks that the scanner accepts exactly
// what encoding/json accepts for objects without NaN/Infinity tokens.
func TestJSONAgreesWithEncodingJSON(t *testing.T) {
	d, _ := NewJSON(JSONMapping{SensorTopicSegment: intp(0)})
	for _, p := range []string{
		`{"a":1}`, `{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":[1,]}`, `{"a":1,}`,
		`{,}`, `{"a" 1}`, `{"a":tru}`, `{"a":{"b":[true,false,null,"s",{}]}}`, "{\"a\":\"\t\"}", `{"a":1e+5}`, `{"a":1E}`, `[{"a":1},]`,
	} {
		_, err := d.Decode("t", []byte(p), 0, nil)
		var de *Error
		malformed := errors.As(err, &de) && de.Reason == ReasonMalformed
		if malformed == json.Valid([]byte(p)) {
			t.Errorf("%s: malformed=%v but encoding/json valid=%v (%v)", p, malformed, json.Valid([]byte(p)), err)
		}
	}
}

func FuzzJSON(f *testing.F) {
	for _, s := range []string{
		`{"id":"gh-1","ts":1714564800,"temp":21.5,"hum":40}`,
		`[{"meta":{"id":42,"ts":"2024-05-01T12:00:00Z"},"env":{"temp":-3.25,"hum":"55"}}]`,
		`{"id":"a\u00e9","v":NaN,"w":-Infinity,"x":1e999}`,
		`{"id":{},"v":[1,{"a":null}]}`, `[]`, `{`, `"x"`,
	} {
		f.Add([]byte(s), "site/s1/temp")
	}
	ds := []*JSONDecoder{}
	for _, m := range []JSONMapping{
		{SensorField: "id", TimeField: "ts"},
		{SensorField: "meta.id", TimeField: "meta.ts", Metrics: map[string]MetricField{"t": {Field: "env.temp"}, "h": {Field: "env.hum"}, "v": {}}},
		{SensorTopicSegment: intp(1), TimeField: "ts", TimeFormat: TimeRFC3339},
	} {
		d, err := NewJSON(m)
		if err != nil {
			f.Fatal(err)
		}
		ds = append(ds, d)
	}
	f.Fuzz(func(t *testing.T, payload []byte, topic string) {
		for _, d := range ds {
			out, err := d.Decode(topic, payload, 7, nil)
			var de *Error
			if err != nil && !errors.As(err, &de) {
				t.Fatalf("error is not *Error: %v", err)
			}
			if err == nil && len(out) > 0 && !json.Valid(payload) && !strings.ContainsAny(string(payload), "NI") {
				t.Fatalf("accepted invalid JSON %q", payload)
			}
			for _, r := range out {
				if r.Sensor == "" || r.Metric == "" && d.all == false || r.Arrival != 7 {
					t.Fatalf("bad reading %+v", r)
				}
			}
		}
	})
}

func BenchmarkJSON(b *testing.B) {
	cases := []struct {
		name    string
		m       JSONMapping
		payload string
	}{
		{"mapped", JSONMapping{SensorField: "id", TimeField: "ts", TimeFormat: TimeUnixMS,
			Metrics: map[string]MetricField{"temp": {Field: "env.temp", Unit: "°C"}, "hum": {Field: "env.hum", Unit: "%"}}},
			`{"id":"gh-17","ts":1714564800123,"env":{"temp":21.75,"hum":40.5},"rssi":-70}`},
		{"all-numeric", JSONMapping{SensorField: "id", TimeField: "ts"},
			`{"id":"gh-17","ts":1714564800123,"temperature":21.75,"humidity":40.5,"pressure":1013.25}`},
		{"topic-single", JSONMapping{SensorTopicSegment: intp(1), TimeField: "ts"},
			`{"ts":1714564800,"value":21.75}`},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			d, err := NewJSON(c.m)
			if err != nil {
				b.Fatal(err)
			}
			p := []byte(c.payload)
			out := make([]ingest.Reading, 0, 8)
			out, _ = d.Decode("sensors/gh-17/telemetry", p, 1, out)
			n := len(out)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				out, _ = d.Decode("sensors/gh-17/telemetry", p, 1, out[:0])
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/reading")
		})
	}
}

func TestFastFloatMatchesStrconv(t *testing.T) {
	for _, s := range []string{"0", "-0", "1", "21.75", "-3.25", "0.1", "123456789012345", "1234567.89012345", "0.000000000000001",
		"99999.99999", "-0.30000000000000004", "1.5e3", "1234567890123456", "7.", ".5", "-"} {
		want, err := strconv.ParseFloat(s, 64)
		got, ok := parseFloat([]byte(s))
		if (err == nil) != ok || ok && (got != want || math.Signbit(got) != math.Signbit(want)) {
			t.Errorf("%s: got %v %v, strconv %v %v", s, got, ok, want, err)
		}
	}
}

func FuzzParseFloat(f *testing.F) {
	for _, s := range []string{"21.75", "-0.1", "123456789012345", "1e5", "0.000001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if end, _, ok := scanNumber([]byte(s), 0); !ok || end != len(s) || strings.ContainsAny(s, "NI") {
			return
		}
		want, _ := strconv.ParseFloat(s, 64)
		got, ok := parseFloat([]byte(s))
		if !ok || got != want {
			t.Fatalf("%s: %v, strconv %v", s, got, want)
		}
	})
}
