package decode

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sensorgate/sensorgate/ingest"
)

func TestSenML(t *testing.T) {
	const a = arrival
	bt := int64(1320067464) * 1e9
	noT := ingest.QualityNoEventTime
	dev := "urn:dev:ow:10e2073a01080063"
	tests := []struct {
		name    string
		m       SenMLMapping
		topic   string
		payload string
		want    []ingest.Reading
		reason  string
		skipped int
	}{
		{
			name:    "RFC 8428 5.1.1 single datapoint",
			payload: `[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]`,
			want:    []ingest.Reading{{Sensor: dev, Metric: "Cel", Value: 23.1, Unit: "Cel", Time: a, Arrival: a, Quality: noT}},
		},
		{
			name:    "RFC 8428 5.1.1 with default_metric",
			m:       SenMLMapping{DefaultMetric: "temperature"},
			payload: `[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]`,
			want:    []ingest.Reading{{Sensor: dev, Metric: "temperature", Value: 23.1, Unit: "Cel", Time: a, Arrival: a, Quality: noT}},
		},
		{
			name: "RFC 8428 5.1.2 multiple datapoints",
			payload: `[
			  {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
			  {"n":"current","u":"A","v":1.2}
			]`,
			want: []ingest.Reading{
				{Sensor: dev, Metric: "voltage", Value: 120.1, Unit: "V", Time: a, Arrival: a, Quality: noT},
				{Sensor: dev, Metric: "current", Value: 1.2, Unit: "A", Time: a, Arrival: a, Quality: noT},
			},
		},
		{
			name: "RFC 8428 5.1.3 multiple measurements (base time, base unit)",
			payload: `[
			  {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,"bu":"%RH","v":20},
			  {"u":"lon","v":24.30621},
			  {"u":"lat","v":60.07965},
			  {"t":60,"v":20.3},
			  {"u":"lon","t":60,"v":24.30622},
			  {"u":"lat","t":60,"v":60.07965},
			  {"t":120,"v":20.7},
			  {"u":"lon","t":120,"v":24.30623},
			  {"u":"lat","t":120,"v":60.07966},
			  {"u":"%EL","t":150,"v":98},
			  {"t":180,"v":21.2},
			  {"u":"lon","t":180,"v":24.30628},
			  {"u":"lat","t":180,"v":60.07967}
			]`,
			want: []ingest.Reading{
				{Sensor: dev, Metric: "%RH", Value: 20, Unit: "%RH", Time: bt, Arrival: a},
				{Sensor: dev, Metric: "lon", Value: 24.30621, Unit: "lon", Time: bt, Arrival: a},
				{Sensor: dev, Metric: "lat", Value: 60.07965, Unit: "lat", Time: bt, Arrival: a},
				{Sensor: dev, Metric: "%RH", Value: 20.3, Unit: "%RH", Time: bt + 60e9, Arrival: a},
				{Sensor: dev, Metric: "lon", Value: 24.30622, Unit: "lon", Time: bt + 60e9, Arrival: a},
				{Sensor: dev, Metric: "lat", Value: 60.07965, Unit: "lat", Time: bt + 60e9, Arrival: a},
				{Sensor: dev, Metric: "%RH", Value: 20.7, Unit: "%RH", Time: bt + 120e9, Arrival: a},
				{Sensor: dev, Metric: "lon", Value: 24.30623, Unit: "lon", Time: bt + 120e9, Arrival: a},
				{Sensor: dev, Metric: "lat", Value: 60.07966, Unit: "lat", Time: bt + 120e9, Arrival: a},
				{Sensor: dev, Metric: "%EL", Value: 98, Unit: "%EL", Time: bt + 150e9, Arrival: a},
				{Sensor: dev, Metric: "%RH", Value: 21.2, Unit: "%RH", Time: bt + 180e9, Arrival: a},
				{Sensor: dev, Metric: "lon", Value: 24.30628, Unit: "lon", Time: bt + 180e9, Arrival: a},
				{Sensor: dev, Metric: "lat", Value: 60.07967, Unit: "lat", Time: bt + 180e9, Arrival: a},
			},
		},
		{
			name: "RFC 8428 5.1.5 multiple data types: vs skipped, vb kept, vd skipped",
			payload: `[
			  {"bn":"urn:dev:ow:10e2073a01080063:","n":"temperature","u":"Cel","v":23.1},
			  {"n":"label","vs":"Machine Room"},
			  {"n":"open","vb":false},
			  {"n":"nfc-reader","vd":"aGkgCg"}
			]`,
			want: []ingest.Reading{
				{Sensor: dev, Metric: "temperature", Value: 23.1, Unit: "Cel", Time: a, Arrival: a, Quality: noT},
				{Sensor: dev, Metric: "open", Value: 0, Time: a, Arrival: a, Quality: noT},
			},
		},
		{
			name:    "vb skipped, numeric vs kept",
			m:       SenMLMapping{BoolValues: SenMLSkip, StringValues: SenMLKeep},
			payload: `[{"bn":"d/","n":"open","vb":true},{"n":"level","vs":"12.5"}]`,
			want:    []ingest.Reading{{Sensor: "d", Metric: "level", Value: 12.5, Time: a, Arrival: a, Quality: noT}},
		},
		{
			name:    "relative times, base value and base sum",
			payload: `[{"bn":"m:","bv":100,"bs":1000,"n":"a","v":1,"t":-5},{"n":"b","v":-1,"t":0},{"n":"c","s":5,"t":2.5}]`,
			want: []ingest.Reading{
				{Sensor: "m", Metric: "a", Value: 101, Time: a - 5e9, Arrival: a},
				{Sensor: "m", Metric: "b", Value: 99, Time: a, Arrival: a},
				{Sensor: "m", Metric: "c", Value: 1005, Time: a + 25e8, Arrival: a},
			},
		},
		{
			name:    "sensor from topic, metric from the full name",
			m:       SenMLMapping{SensorTopicSegment: intp(1)},
			topic:   "senml/node-9",
			payload: `[{"bn":"env/","n":"temp","v":1,"t":1700000000.5}]`,
			want:    []ingest.Reading{{Sensor: "node-9", Metric: "env/temp", Value: 1, Time: 1700000000500000000, Arrival: a}},
		},
		{
			name:    "escaped names",
			payload: `[{"bn":"caf\u00e9:","n":"t\u00b0","v":1}]`,
			want:    []ingest.Reading{{Sensor: "café", Metric: "t°", Value: 1, Time: a, Arrival: a, Quality: noT}},
		},
		{name: "must-understand label", payload: `[{"n":"x","v":1,"foo_":1}]`, reason: ReasonMalformed, skipped: 1},
		{name: "not an array", payload: `{"n":"x","v":1}`, reason: ReasonMalformed, skipped: 1},
		{name: "syntax", payload: `[{"n":"x","v":1}`, reason: ReasonMalformed, skipped: 1},
		{
			name:    "wrong value type skips one record",
			payload: `[{"n":"x","v":"1"},{"n":"y","v":2}]`,
			want:    []ingest.Reading{{Sensor: "y", Metric: "value", Value: 2, Time: a, Arrival: a, Quality: noT}},
			reason:  ReasonBadValue, skipped: 1,
		},
		{name: "no value", payload: `[{"n":"x"}]`, reason: ReasonNoMetrics, skipped: 1},
		{name: "no name", payload: `[{"v":1}]`, reason: ReasonNoSensor, skipped: 1},
		{name: "bad numeric vs", m: SenMLMapping{StringValues: SenMLKeep}, payload: `[{"n":"x","vs":"on"}]`, reason: ReasonBadValue, skipped: 1},
		{name: "time too large", payload: `[{"n":"x","v":1,"t":1e300}]`, reason: ReasonBadTime, skipped: 1},
		{name: "empty pack", payload: `[]`, reason: ReasonNoMetrics, skipped: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SenML(&tt.m, tt.topic, []byte(tt.payload), a, nil)
			checkErr(t, err, tt.reason, tt.skipped)
			if !sameReadings(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func checkErr(t *testing.T, err error, reason string, skipped int) {
	t.Helper()
	if reason == "" {
		if err != nil {
			t.Fatalf("err = %v", err)
		}
		return
	}
	var de *Error
	if !errors.As(err, &de) || de.Reason != reason || de.Skipped != skipped {
		t.Fatalf("err = %v, want reason %s skipped %d", err, reason, skipped)
	}
}

func TestSenMLValidate(t *testing.T) {
	m := SenMLMapping{SensorTopicSegment: intp(-1), BoolValues: "maybe"}
	if err := m.Validate(); len(ingest.FlattenErrors(err)) != 2 {
		t.Errorf("err = %v", err)
	}
}

func TestSenMLSteadyStateDoesNotAllocate(t *testing.T) {
	d, _ := NewSenML(SenMLMapping{})
	p := []byte(`[{"bn":"urn:dev:ow:10e2073a01080063:","bt":1.320067464e+09,"n":"voltage","u":"V","v":120.1},{"n":"current","u":"A","v":1.2,"t":1}]`)
	out, _ := d.Decode("", p, 1, nil)
	allocs := testing.AllocsPerRun(200, func() {
		var err error
		if out, err = d.Decode("", p, 1, out[:0]); err != nil || len(out) != 2 {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocs per decode", allocs)
	}
}

func FuzzSenML(f *testing.F) {
	for _, s := range []string{
		`[{"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},{"n":"current","u":"A","v":1.2}]`,
		`[{"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,"bu":"%RH","v":20},{"u":"lon","v":24.30621},{"t":60,"v":20.3}]`,
		`[{"bn":"x:","n":"label","vs":"Machine Room"},{"n":"open","vb":false},{"n":"nfc","vd":"aGkgCg"},{"n":"s","s":4,"bs":1}]`,
		`[{"n":"caf\u00e9","v":1,"x_":1}]`, `[]`, `[{}]`, `{`,
	} {
		f.Add([]byte(s))
	}
	ds := []*SenMLDecoder{}
	for _, m := range []SenMLMapping{{}, {SensorTopicSegment: intp(0), StringValues: SenMLKeep}} {
		d, err := NewSenML(m)
		if err != nil {
			f.Fatal(err)
		}
		ds = append(ds, d)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, d := range ds {
			out, err := d.Decode("gw/x", payload, 9, nil)
			var de *Error
			if err != nil && !errors.As(err, &de) {
				t.Fatalf("error is not *Error: %v", err)
			}
			for _, r := range out {
				if r.Sensor == "" || r.Metric == "" || r.Arrival != 9 {
					t.Fatalf("bad reading %+v", r)
				}
			}
		}
	})
}

func BenchmarkSenML(b *testing.B) {
	d, _ := NewSenML(SenMLMapping{})
	p := []byte(`[{"bn":"urn:dev:ow:10e2073a01080063:","bt":1.320067464e+09,"n":"voltage","u":"V","v":120.1},{"n":"current","u":"A","v":1.2,"t":1},{"n":"power","u":"W","v":144.12,"t":1}]`)
	out, _ := d.Decode("", p, 1, nil)
	n := len(out)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		out, _ = d.Decode("", p, 1, out[:0])
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/reading")
}

// TestSenMLResolvedFormMatches: RFC 8428 section 5.1.4 gives the resolved
// form of the pack of 5.1.3 (every record with its full name, unit and
// absolute time). Both must decode to the same readings.
func TestSenMLResolvedFormMatches(t *testing.T) {
	packed := `[
	  {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,"bu":"%RH","v":20},
	  {"u":"lon","v":24.30621},
	  {"u":"lat","v":60.07965},
	  {"t":60,"v":20.3},
	  {"u":"lon","t":60,"v":24.30622},
	  {"u":"lat","t":60,"v":60.07965},
	  {"t":120,"v":20.7},
	  {"u":"lon","t":120,"v":24.30623},
	  {"u":"lat","t":120,"v":60.07966},
	  {"u":"%EL","t":150,"v":98},
	  {"t":180,"v":21.2},
	  {"u":"lon","t":180,"v":24.30628},
	  {"u":"lat","t":180,"v":60.07967}
	]`
	var resolved strings.Builder
	resolved.WriteString("[")
	for i, r := range []struct {
		u string
		t int
		v string
	}{
		{"%RH", 0, "20"}, {"lon", 0, "24.30621"}, {"lat", 0, "60.07965"},
		{"%RH", 60, "20.3"}, {"lon", 60, "24.30622"}, {"lat", 60, "60.07965"},
		{"%RH", 120, "20.7"}, {"lon", 120, "24.30623"}, {"lat", 120, "60.07966"},
		{"%EL", 150, "98"},
		{"%RH", 180, "21.2"}, {"lon", 180, "24.30628"}, {"lat", 180, "60.07967"},
	} {
		if i > 0 {
			resolved.WriteString(",")
		}
		fmt.Fprintf(&resolved, `{"n":"urn:dev:ow:10e2073a01080063","u":%q,"t":%d,"v":%s}`, r.u, 1320067464+r.t, r.v)
	}
	resolved.WriteString("]")
	d, _ := NewSenML(SenMLMapping{})
	a, err1 := d.Decode("", []byte(packed), arrival, nil)
	b, err2 := d.Decode("", []byte(resolved.String()), arrival, nil)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if len(a) != 13 || !sameReadings(a, b) {
		t.Fatalf("packed   %+v\nresolved %+v", a, b)
	}
}
