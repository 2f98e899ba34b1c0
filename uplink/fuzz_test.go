package uplink

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
)

// FuzzEncode: any outbox payload that DecodeRecord accepts encodes to
// valid JSON, MessagePack and SenML, and the topic rendered for it has no
// wildcards or empty levels.
func FuzzEncode(f *testing.F) {
	f.Add(mustSummary(f, 1))
	f.Add(mustAlert(f, 2))
	f.Add(mustReadings(f, 3))
	f.Add([]byte("S\x80"))
	f.Add([]byte{'R', 0x81, 0xa1, 'r', 0x90})
	f.Fuzz(func(t *testing.T, payload []byte) {
		dec, err := ingest.DecodeRecord(payload)
		if err != nil {
			return
		}
		it := []item{{rec: buffer.Record{Lane: buffer.LaneRaw, Seq: 1, ID: "e-raw-1", Payload: payload}, dec: dec}}
		for _, format := range []string{FormatJSON, FormatSenML} {
			e := encoder{format: format, gateway: "gw\"1"}
			out := e.appendPayload(nil, it)
			if !json.Valid(out) {
				t.Fatalf("%s: invalid JSON %q", format, out)
			}
		}
		e := encoder{format: FormatMsgpack, gateway: "gw"}
		out := e.appendPayload(nil, it)
		var js bytes.Buffer
		if rest, err := msgp.UnmarshalAsJSON(&js, out); err != nil || len(rest) != 0 {
			t.Fatalf("msgpack: %v, %d trailing bytes", err, len(rest))
		}
		topic := compileTopic("a/{gateway}/{lane}/{kind}/{sensor}/{metric}").render("gw", "n", &it[0])
		if strings.ContainsAny(topic, "+#\x00") || strings.Contains(topic, "//") {
			t.Fatalf("bad topic %q", topic)
		}
	})
}

// FuzzTemplate: validation and rendering of topic templates never panic,
// and a template that validates renders to a topic without wildcards.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{DefaultTopic, "a/{sensor}/{metric}", "{", "}{", "{{lane}}", "a/{x", "#", "plain"} {
		f.Add(s, "s/1+#")
	}
	f.Fuzz(func(t *testing.T, tmpl, sensor string) {
		err := validateTemplate(tmpl, placeholders)
		tt := compileTopic(tmpl)
		it := &item{rec: buffer.Record{Lane: buffer.LaneSummaries}, dec: ingest.Record{Kind: ingest.KindSummary, Summary: &ingest.Summary{Sensor: sensor}}}
		out := tt.render("gw", "n", it)
		if err == nil && strings.ContainsAny(out, "+#\x00") {
			t.Fatalf("template %q renders %q", tmpl, out)
		}
	})
}

// FuzzRetryAfter: any header value gives a delay in [0, maxRetryAfter].
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "120", "-5", "Wed, 21 Oct 2015 07:28:00 GMT", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := parseRetryAfter(v, now); d < 0 || d > maxRetryAfter {
			t.Fatalf("%q: %v", v, d)
		}
	})
}

// Encoding into a reused buffer does not allocate for records without
// metadata maps (a map's keys are sorted, which allocates).
func TestEncodeAllocs(t *testing.T) {
	s := testSummary(1)
	s.Meta = nil
	sp, _ := ingest.AppendSummary(nil, s)
	for name, payload := range map[string][]byte{"summary": sp, "alert": mustAlert(t, 1), "readings": mustReadings(t, 20)} {
		dec, err := ingest.DecodeRecord(payload)
		if err != nil {
			t.Fatal(err)
		}
		items := []item{{rec: buffer.Record{Lane: buffer.LaneRaw, ID: "x-raw-1", Payload: payload}, dec: dec}}
		for _, format := range []string{FormatJSON, FormatMsgpack} {
			e := encoder{format: format, gateway: "gw-1"}
			buf := e.appendPayload(nil, items)
			if n := testing.AllocsPerRun(100, func() { buf = e.appendPayload(buf[:0], items) }); n != 0 {
				t.Errorf("%s %s: %v allocs per record", name, format, n)
			}
		}
	}
}

func BenchmarkEncodeJSON(b *testing.B) {
	dec, _ := ingest.DecodeRecord(mustSummary(b, 1))
	items := []item{{rec: buffer.Record{Lane: buffer.LaneSummaries, ID: "x-summaries-1"}, dec: dec}}
	e := encoder{format: FormatJSON, gateway: "gw-1"}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = e.appendPayload(buf[:0], items)
	}
	b.SetBytes(int64(len(buf)))
}
