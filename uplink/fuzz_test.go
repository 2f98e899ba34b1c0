package uplink

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/uplink/internal/uplinktest"
)

// FuzzEncode: any outbox payload that DecodeRecord accepts encodes to
// valid JSON, MessagePack and SenML, and the topic rendered for it has no
// wildcards or empty levels.
func FuzzEncode(f *testing.F) {
	f.Add(uplinktest.SummaryRecord(f, 1))
	f.Add(uplinktest.AlertRecord(f, 2))
	f.Add(uplinktest.ReadingsRecord(f, 3))
	f.Add([]byte("S\x80"))
	f.Add([]byte{'R', 0x81, 0xa1, 'r', 0x90})
	f.Fuzz(func(t *testing.T, payload []byte) {
		dec, err := ingest.DecodeRecord(payload)
		if err != nil {
			return
		}
		it := []Record{{Record: buffer.Record{Lane: buffer.LaneRaw, Seq: 1, ID: "e-raw-1", Payload: payload}, Decoded: dec}}
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
		if !ValidTopic(topic) || strings.Contains(topic, "//") {
			t.Fatalf("bad topic %q", topic)
		}
	})
}

// FuzzTemplate: validation and rendering of topic templates never panic,
// and a template that validates renders to a topic without wildcards.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{DefaultTopic, "a/{sensor}/{metric}", "{", "}{", "{{lane}}", "a/{x", "#", "plain"} {
		f.Add(s, "s/1+#")
		f.Add(s, "bad\x01\xff\xef\xbf\xbf\ufdd0id")
	}
	f.Fuzz(func(t *testing.T, tmpl, sensor string) {
		err := validateTemplate(tmpl, placeholders)
		tt := compileTopic(tmpl)
		it := &Record{Record: buffer.Record{Lane: buffer.LaneSummaries}, Decoded: ingest.Record{Kind: ingest.KindSummary, Summary: &ingest.Summary{Sensor: sensor}}}
		out := tt.render("gw", "n", it)
		if err == nil && utf8.ValidString(tmpl) && !strings.ContainsFunc(tmpl, func(r rune) bool { return !levelRune(r, utf8.RuneLen(r)) && r != '/' }) && !ValidTopic(out) && out != "" {
			t.Fatalf("template %q renders %q", tmpl, out)
		}
		// Whatever the sensor name, the level it renders is valid.
		if lv := topicLevel(sensor); !ValidTopic(lv) || strings.Contains(lv, "/") || len(lv) > maxLevel {
			t.Fatalf("sensor %q renders level %q", sensor, lv)
		}
	})
}

// Encoding into a reused buffer does not allocate for records without
// metadata maps (a map's keys are sorted, which allocates).
func TestEncodeAllocs(t *testing.T) {
	s := uplinktest.Summary(1)
	s.Meta = nil
	sp, _ := ingest.AppendSummary(nil, s)
	for name, payload := range map[string][]byte{"summary": sp, "alert": uplinktest.AlertRecord(t, 1), "readings": uplinktest.ReadingsRecord(t, 20)} {
		dec, err := ingest.DecodeRecord(payload)
		if err != nil {
			t.Fatal(err)
		}
		items := []Record{{Record: buffer.Record{Lane: buffer.LaneRaw, ID: "x-raw-1", Payload: payload}, Decoded: dec}}
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
	dec, _ := ingest.DecodeRecord(uplinktest.SummaryRecord(b, 1))
	items := []Record{{Record: buffer.Record{Lane: buffer.LaneSummaries, ID: "x-summaries-1"}, Decoded: dec}}
	e := encoder{format: FormatJSON, gateway: "gw-1"}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = e.appendPayload(buf[:0], items)
	}
	b.SetBytes(int64(len(buf)))
}
