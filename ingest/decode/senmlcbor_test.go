package decode

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/sensorgate/sensorgate/ingest"
)

// cbor builds test payloads from hex with spaces and "text" literals.
func cbor(t testing.TB, parts ...string) []byte {
	t.Helper()
	var out []byte
	for _, p := range parts {
		if strings.HasPrefix(p, `"`) {
			s := strings.Trim(p, `"`)
			if len(s) < 24 {
				out = append(out, 0x60|byte(len(s)))
			} else {
				out = append(out, 0x78, byte(len(s)))
			}
			out = append(out, s...)
			continue
		}
		b, err := hex.DecodeString(strings.ReplaceAll(p, " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

func TestSenMLCBOR(t *testing.T) {
	const a = arrival
	noT := ingest.QualityNoEventTime
	dev := "urn:dev:ow:10e2073a01080063"
	// RFC 8428 section 6: the CBOR form of the example of section 5.1.2:
	// [{-2: "urn:dev:ow:10e2073a01080063:", 0: "voltage", 1: "V", 2: 120.1},
	//  {0: "current", 1: "A", 2: 1.2}]
	rfc := cbor(t, "82 a4 21", `"urn:dev:ow:10e2073a01080063:"`, "00", `"voltage"`, "01", `"V"`, "02 fb 405e066666666666",
		"a3 00", `"current"`, "01", `"A"`, "02 fb 3ff3333333333333")
	if rfc[4] != 0x1c || len(rfc) != 0x4e {
		t.Fatalf("test vector built wrong: % x", rfc)
	}
	tests := []struct {
		name    string
		m       SenMLMapping
		payload []byte
		want    []ingest.Reading
		reason  string
	}{
		{name: "RFC 8428 section 6 example", payload: rfc, want: []ingest.Reading{
			{Sensor: dev, Metric: "voltage", Value: 120.1, Unit: "V", Time: a, Arrival: a, Quality: noT},
			{Sensor: dev, Metric: "current", Value: 1.2, Unit: "A", Time: a, Arrival: a, Quality: noT},
		}},
		{
			name: "indefinite containers, ints, half and single floats, base time, tags, vb, vd, vs",
			// [_ {-2:"d:", -3: 1320067464, 0:"t", 2: half 1.5, 6: -10}, {0:"u", 2: float32 0.25, 100: tag(1) 5},
			//    {0:"open", 4: true}, {0:"img", 8: h'01'}, {0:"lbl", 3: "x"} ]
			payload: cbor(t, "9f", "bf 21", `"d:"`, "22 1a 4eaea188 00", `"t"`, "02 f9 3e00 06 29 ff",
				"a3 00", `"u"`, "02 fa 3e800000 18 64 c1 05",
				"a2 00", `"open"`, "04 f5",
				"a2 00", `"img"`, "08 41 01",
				"a2 00", `"lbl"`, "03", `"x"`, "ff"),
			want: []ingest.Reading{
				{Sensor: "d", Metric: "t", Value: 1.5, Time: (1320067464 - 10) * 1e9, Arrival: a},
				{Sensor: "d", Metric: "u", Value: 0.25, Time: 1320067464 * 1e9, Arrival: a},
				{Sensor: "d", Metric: "open", Value: 1, Time: 1320067464 * 1e9, Arrival: a},
			},
		},
		{name: "must-understand text label", payload: cbor(t, "81 a2 00", `"x"`, "02 01", `"foo_"`, "01"), reason: ReasonMalformed},
		{name: "unknown text label ignored", payload: cbor(t, "81 a3 00", `"x"`, "02 01", `"foo"`, "01"),
			want: []ingest.Reading{{Sensor: "x", Metric: "value", Value: 1, Time: a, Arrival: a, Quality: noT}}},
		{name: "not an array", payload: cbor(t, "a1 00 01"), reason: ReasonMalformed},
		{name: "truncated", payload: rfc[:len(rfc)-4], reason: ReasonMalformed},
		{name: "trailing", payload: append(append([]byte(nil), rfc...), 0), reason: ReasonMalformed},
		{name: "huge count", payload: cbor(t, "9b ffffffffffffffff"), reason: ReasonMalformed},
		{name: "value is text", payload: cbor(t, "81 a2 00", `"x"`, "02", `"1"`), reason: ReasonBadValue},
		{name: "JSON is not CBOR", payload: []byte(`[{"n":"x","v":1}]`), reason: ReasonMalformed},
	}
	d, err := NewSenML(SenMLMapping{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.DecodeCBOR("", tt.payload, a, nil)
			checkErr(t, err, tt.reason, 1)
			if !sameReadings(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestHalfFloat(t *testing.T) {
	for h, want := range map[uint16]float64{0x3c00: 1, 0xc000: -2, 0x7bff: 65504, 0x0001: 5.960464477539063e-08, 0x3555: 0.333251953125} {
		if got := halfToFloat(h); got != want {
			t.Errorf("half %#04x = %v, want %v", h, got, want)
		}
	}
}

func TestSenMLCBORSteadyStateDoesNotAllocate(t *testing.T) {
	d, _ := NewSenML(SenMLMapping{})
	p := cbor(t, "82 a4 21", `"urn:dev:ow:10e2073a01080063:"`, "00", `"voltage"`, "01", `"V"`, "02 fb 405e066666666666",
		"a3 00", `"current"`, "01", `"A"`, "02 fb 3ff3333333333333")
	out, _ := d.DecodeCBOR("", p, 1, nil)
	if allocs := testing.AllocsPerRun(200, func() { out, _ = d.DecodeCBOR("", p, 1, out[:0]) }); allocs != 0 || len(out) != 2 {
		t.Errorf("%v allocs (%d readings)", allocs, len(out))
	}
}

func FuzzSenMLCBOR(f *testing.F) {
	f.Add(cbor(f, "82 a4 21", `"urn:dev:ow:10e2073a01080063:"`, "00", `"voltage"`, "01", `"V"`, "02 fb 405e066666666666",
		"a3 00", `"current"`, "01", `"A"`, "02 fb 3ff3333333333333"))
	f.Add(cbor(f, "9f bf 21", `"d:"`, "22 1a 4eaea188 00", `"t"`, "02 f9 3e00 06 29 ff a1 00 5f 41 01 ff ff"))
	f.Add([]byte{0x81, 0xa1, 0x00, 0x7f, 0x61, 0x61, 0xff})
	d, _ := NewSenML(SenMLMapping{StringValues: SenMLKeep})
	f.Fuzz(func(t *testing.T, payload []byte) {
		out, err := d.DecodeCBOR("t", payload, 4, nil)
		var de *Error
		if err != nil && !errors.As(err, &de) {
			t.Fatalf("not *Error: %v", err)
		}
		for _, r := range out {
			if r.Sensor == "" || r.Metric == "" || r.Arrival != 4 {
				t.Fatalf("bad reading %+v", r)
			}
		}
	})
}

func BenchmarkSenMLCBOR(b *testing.B) {
	d, _ := NewSenML(SenMLMapping{})
	p := cbor(b, "83 a5 21", `"urn:dev:ow:10e2073a01080063:"`, "22 fb 41d3aba862000000 00", `"voltage"`, "01", `"V"`, "02 fb 405e066666666666",
		"a3 00", `"current"`, "01", `"A"`, "02 fb 3ff3333333333333", "a3 00", `"power"`, "01", `"W"`, "02 fb 406203d70a3d70a4")
	out, err := d.DecodeCBOR("", p, 1, nil)
	if err != nil || len(out) != 3 {
		b.Fatal(err, len(out))
	}
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		out, _ = d.DecodeCBOR("", p, 1, out[:0])
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*3), "ns/reading")
}
