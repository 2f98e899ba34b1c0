package uplink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/internal/secret"
	"github.com/sensorgate/sensorgate/test/leak"
	"github.com/sensorgate/sensorgate/uplink/internal/uplinktest"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		paths []string // expected FieldError paths; nil = valid
	}{
		{"mqtt ok", Config{Type: "mqtt", URL: "tcp://127.0.0.1:1883"}, nil},
		{"http ok", Config{Type: "http", URL: "https://example.com/in"}, nil},
		{"stdout ok", Config{Type: "stdout"}, nil},
		{"no type", Config{}, []string{"name", "type"}},
		{"bad type", Config{Type: "kafka"}, []string{"type"}},
		{"mqtt no url", Config{Type: "mqtt"}, []string{"url"}},
		{"mqtt http url", Config{Type: "mqtt", URL: "http://x"}, []string{"url"}},
		{"http mqtt url", Config{Type: "http", URL: "tcp://x:1"}, []string{"url"}},
		{"bad lane", Config{Type: "stdout", Lanes: []string{"alerts", "dead", "nope", "alerts"}}, []string{"lanes[1]", "lanes[2]", "lanes[3]"}},
		{"topic wildcard", Config{Type: "mqtt", URL: "tcp://h:1", Topic: "a/+/b"}, []string{"topic"}},
		{"topic placeholder", Config{Type: "mqtt", URL: "tcp://h:1", Topic: "a/{gw}"}, []string{"topic"}},
		{"status placeholder", Config{Type: "mqtt", URL: "tcp://h:1", StatusTopic: "s/{sensor}"}, []string{"status_topic"}},
		{"qos 2", Config{Type: "mqtt", URL: "tcp://h:1", QoS: 2}, []string{"qos"}},
		{"two passwords", Config{Type: "mqtt", URL: "tcp://h:1", Password: "a", PasswordEnv: "B"}, []string{"password"}},
		{"format", Config{Type: "stdout", Format: "xml"}, []string{"format"}},
		{"max message bytes", Config{Type: "mqtt", URL: "tcp://h:1", MaxMessageBytes: -1}, []string{"max_message_bytes"}},
		{"negatives", Config{Type: "mqtt", URL: "tcp://h:1", MaxInflight: -1, BatchSize: -1, BatchBytes: -1,
			Backoff: Backoff{Min: -1, Max: -2}}, []string{"max_inflight", "batch_size", "batch_bytes", "backoff.min", "backoff.max"}},
		{"cert without key", Config{Type: "mqtt", URL: "ssl://h:1", TLS: TLS{CertFile: "c.pem"}}, []string{"tls.cert_file"}},
		{"two tokens", Config{Type: "http", URL: "http://h", TokenFile: "f", TokenEnv: "E"}, []string{"token_file"}},
		{"bad header", Config{Type: "http", URL: "http://h", Headers: map[string]string{"a b": "x"}}, []string{"headers"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			c.Defaults()
			err := c.Validate()
			var got []string
			for _, e := range ingest.FlattenErrors(err) {
				var fe *ingest.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("not a FieldError: %v", e)
				}
				got = append(got, fe.Path)
			}
			if !reflect.DeepEqual(got, tt.paths) {
				t.Errorf("paths = %v, want %v (err: %v)", got, tt.paths, err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := Config{Type: "http", URL: "http://h"}
	c.Defaults()
	if c.Name != "http" || c.BatchSize != DefaultHTTPBatch || c.Topic != DefaultTopic || c.QoS != 1 ||
		!reflect.DeepEqual(c.Lanes, []string{"alerts", "summaries", "raw"}) || c.Format != "json" {
		t.Errorf("defaults: %+v", c)
	}
	d := c
	d.Defaults()
	if !reflect.DeepEqual(c, d) {
		t.Error("Defaults is not idempotent")
	}
}

func TestValidateRouting(t *testing.T) {
	two := []Config{
		{Name: "cloud", Type: "mqtt", URL: "tcp://h:1", Lanes: []string{"alerts", "summaries"}},
		{Name: "console", Type: "stdout"},
	}
	AssignDefaultLanes(two)
	if !reflect.DeepEqual(two[1].Lanes, []string{"raw"}) {
		t.Fatalf("console lanes = %v", two[1].Lanes)
	}
	cfgs := append(two, Config{Name: "api", Type: "http", URL: "http://h", Lanes: []string{"summaries"}},
		Config{Name: "cloud", Type: "stdout", Lanes: []string{"raw"}})
	for i := range cfgs {
		cfgs[i].Defaults()
	}
	err := ValidateRouting(cfgs)
	var paths []string
	for _, e := range ingest.FlattenErrors(err) {
		var fe *ingest.FieldError
		if errors.As(e, &fe) {
			paths = append(paths, fe.Path)
		}
	}
	want := []string{"[2].lanes", "[3].name", "[3].lanes"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("paths = %v, want %v (%v)", paths, want, err)
	}
	if err := ValidateRouting(cfgs[:2]); err != nil {
		t.Errorf("valid routing: %v", err)
	}
}

// fill sets every settable field of v (recursively) to a non-zero value.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.String:
		v.SetString("v\"\\\n<é>" + string(rune('a'+*n%26)))
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(*n) * 1e9)
	case reflect.Uint, reflect.Uint64, reflect.Uint32, reflect.Uint16, reflect.Uint8:
		v.SetUint(uint64(*n))
	case reflect.Float64:
		v.SetFloat(float64(*n) + 0.25)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			fill(v.Field(i), n)
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := 0; i < 2; i++ {
			fill(s.Index(i), n)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for i := 0; i < 3; i++ {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(k, n)
			fill(e, n)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	}
}

func jsonMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("invalid JSON %s: %v", b, err)
	}
	return m
}

// The hand-written JSON of Summary and Alert must match encoding/json on
// their struct tags, for fully populated and for zero values (omitempty).
// Populating by reflection catches fields added to ingest later.
func TestJSONMatchesStructTags(t *testing.T) {
	for _, zero := range []bool{false, true} {
		var s ingest.Summary
		var a ingest.Alert
		if !zero {
			n := 0
			fill(reflect.ValueOf(&s).Elem(), &n)
			fill(reflect.ValueOf(&a).Elem(), &n)
		}
		for _, c := range []struct {
			mine []byte
			v    any
		}{{appendSummaryJSON(nil, &s), &s}, {appendAlertJSON(nil, &a), &a}} {
			want, err := json.Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			if got, exp := jsonMap(t, c.mine), jsonMap(t, want); !reflect.DeepEqual(got, exp) {
				t.Errorf("zero=%v %T:\n got %s\nwant %s", zero, c.v, c.mine, want)
			}
		}
	}
}

func TestJSONStringAndFloats(t *testing.T) {
	for _, s := range []string{"", "plain", "q\"b\\s", "\x00\x01\x1f\t\r\n", "é€😀", "bad\xffutf8", "\u2028\u2029"} {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q -> %s: %v", s, b, err)
		}
		want, _ := json.Marshal(s)
		var w string
		json.Unmarshal(want, &w)
		if got != w {
			t.Errorf("%q: got %q want %q", s, got, w)
		}
	}
	s := uplinktest.Summary(1)
	s.Min = math.Inf(1)
	s.Mean = math.NaN()
	m := jsonMap(t, appendSummaryJSON(nil, s))
	if m["min"] != nil || m["mean"] != nil {
		t.Errorf("non-finite values must be null: %v %v", m["min"], m["mean"])
	}
}

func TestEnvelopeFormats(t *testing.T) {
	ob := uplinktest.NewOutbox()
	ob.Append(context.Background(), buffer.LaneSummaries, uplinktest.SummaryRecord(t, 7))
	ob.Append(context.Background(), buffer.LaneAlerts, uplinktest.AlertRecord(t, 3))
	ob.Append(context.Background(), buffer.LaneRaw, uplinktest.ReadingsRecord(t, 3))
	var items []Record
	for _, l := range []buffer.Lane{buffer.LaneAlerts, buffer.LaneSummaries, buffer.LaneRaw} {
		rs, _ := ob.Read(l, 0, 10)
		dec, err := ingest.DecodeRecord(rs[0].Payload)
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, Record{Record: rs[0], Decoded: dec})
	}
	e := encoder{format: FormatJSON, gateway: "gw-1"}
	single := jsonMap(t, e.appendPayload(nil, items[1:2]))
	if single["record_id"] != "e1-1-1" || single["gateway"] != "gw-1" || single["kind"] != "summary" || single["lane"] != "summaries" {
		t.Errorf("envelope: %v", single)
	}
	if sm := single["summary"].(map[string]any); sm["id"] != "sum-7" || sm["sensor"] != "s1" {
		t.Errorf("summary body: %v", sm)
	}
	var arr []map[string]any
	if err := json.Unmarshal(e.appendPayload(nil, items), &arr); err != nil || len(arr) != 3 {
		t.Fatalf("batch: %v %v", arr, err)
	}
	if arr[0]["kind"] != "alert" || arr[2]["kind"] != "readings" || len(arr[2]["readings"].([]any)) != 3 {
		t.Errorf("batch: %v", arr)
	}
	r0 := arr[2]["readings"].([]any)[0].(map[string]any)
	if r0["sensor"] != "s1" || r0["metric"] != "humidity" || r0["value"] != 0.5 || r0["unit"] != "%RH" {
		t.Errorf("reading: %v", r0)
	}
	e.array = true
	if b := e.appendPayload(nil, items[:1]); b[0] != '[' {
		t.Errorf("array mode must always give an array: %s", b)
	}

	// MessagePack: the envelope is a map and the body the record's own msgp.
	mp := encoder{format: FormatMsgpack, gateway: "gw-1"}
	b := mp.appendPayload(nil, items[1:2])
	var js bytes.Buffer
	if _, err := msgp.UnmarshalAsJSON(&js, b); err != nil {
		t.Fatalf("msgpack: %v", err)
	}
	m := jsonMap(t, js.Bytes())
	if m["record_id"] != "e1-1-1" || m["kind"] != "summary" {
		t.Errorf("msgpack envelope: %v", m)
	}
	sz, n := msgp.Locate("summary", b), 0
	var back ingest.Summary
	if _, err := back.UnmarshalMsg(sz); err != nil || back.ID != "sum-7" {
		t.Errorf("msgpack body: %v %+v", err, back)
	}
	_ = n
	b = mp.appendPayload(nil, items)
	if sz, _, err := msgp.ReadArrayHeaderBytes(b); err != nil || sz != 3 {
		t.Errorf("msgpack batch: %d %v", sz, err)
	}

	// SenML: a JSON array of records with base names and times in seconds.
	sn := encoder{format: FormatSenML, gateway: "gw-1"}
	var pack []map[string]any
	d := json.NewDecoder(bytes.NewReader(sn.appendPayload(nil, items)))
	d.UseNumber()
	if err := d.Decode(&pack); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range pack {
		if n, ok := r["n"].(string); ok {
			names = append(names, n)
		}
	}
	joined := strings.Join(names, ",")
	for _, want := range []string{"temperature:alert:hot", "temperature:count", "temperature:mean", "temperature:p99", "humidity"} {
		if !strings.Contains(joined, want) {
			t.Errorf("senml names %v lack %s", names, want)
		}
	}
	if pack[0]["bn"] != "gw-1:s1:" || pack[0]["record_id"] != "e1-0-1" || pack[0]["bt"].(json.Number).String() != "1000000000.000000003" {
		t.Errorf("senml base: %v", pack[0])
	}
}

func TestAppendSeconds(t *testing.T) {
	for ns, want := range map[int64]string{0: "0", 1e9: "1", 1500000000: "1.5", 1700000000123456789: "1700000000.123456789", 10: "0.00000001"} {
		if got := string(appendSeconds(nil, ns)); got != want {
			t.Errorf("%d: %s want %s", ns, got, want)
		}
	}
}

func TestTopicTemplate(t *testing.T) {
	rs := []Record{
		{Record: buffer.Record{Lane: buffer.LaneSummaries}, Decoded: ingest.Record{Kind: ingest.KindSummary, Summary: &ingest.Summary{Sensor: "a/b+c", Metric: "t"}}},
		{Record: buffer.Record{Lane: buffer.LaneRaw}, Decoded: ingest.Record{Kind: ingest.KindReadings, Readings: &ingest.ReadingBatch{Readings: []ingest.Reading{{Sensor: "x", Metric: "m"}, {Sensor: "y", Metric: "m"}}}}},
	}
	tt := compileTopic("gw/{gateway}/{lane}/{kind}/{sensor}/{metric}/{name}")
	if tt.fixed {
		t.Error("template with {sensor} is not fixed")
	}
	if got := tt.render("g1", "up", &rs[0]); got != "gw/g1/summaries/summary/a_b_c/t/up" {
		t.Error(got)
	}
	if got := tt.render("g1", "up", &rs[1]); got != "gw/g1/raw/readings/mixed/m/up" {
		t.Error(got)
	}
	if got := compileTopic("plain").render("g", "n", nil); got != "plain" {
		t.Error(got)
	}
}

func TestRunTwice(t *testing.T) {
	ob := uplinktest.NewOutbox()
	u, err := New(Config{Type: "stdout"}, ob, &lineTransport{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := uplinktest.Run(t, u)
	uplinktest.WaitFor(t, "running", func() bool { return u.running.Load() })
	if err := u.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run: %v", err)
	}
	stop()
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Config{Type: "mqtt"}, uplinktest.NewOutbox(), &lineTransport{}, Options{}); err == nil {
		t.Error("invalid config accepted")
	}
	if _, err := New(Config{Type: "mqtt", URL: "tcp://h:1", PasswordFile: "/nonexistent"}, uplinktest.NewOutbox(), &lineTransport{}, Options{}); !errors.Is(err, secret.ErrMissing) {
		t.Errorf("missing password file: %v", err)
	}
	if _, err := New(Config{Type: "http", URL: "http://h", TokenEnv: "SENSORGATE_TEST_UNSET_TOKEN"}, uplinktest.NewOutbox(), &lineTransport{}, Options{}); !errors.Is(err, secret.ErrMissing) {
		t.Errorf("missing token env: %v", err)
	}
	if _, err := New(Config{Type: "mqtt", URL: "ssl://h:1", TLS: TLS{CAFile: "/nonexistent"}}, uplinktest.NewOutbox(), &lineTransport{}, Options{}); err == nil ||
		!strings.Contains(err.Error(), "tls.ca_file") {
		t.Errorf("missing CA: %v", err)
	}
	if _, err := New(Config{Type: "stdout"}, uplinktest.NewOutbox(), nil, Options{}); err == nil {
		t.Error("nil transport accepted")
	}
}

// The core owns the loop: records come in priority order, a bad record is
// dead-lettered, a session that fails is followed by another after the
// backoff, which re-reads from the oldest unacknowledged record, and
// everything ends acknowledged exactly as often as it was confirmed.
func TestCoreRestartsSessions(t *testing.T) {
	leak.Check(t)
	ob := uplinktest.NewOutbox()
	ctx := context.Background()
	for i := 0; i < 6; i++ {
		ob.Append(ctx, buffer.LaneSummaries, uplinktest.SummaryRecord(t, i))
	}
	ob.Append(ctx, buffer.LaneSummaries, []byte("Sgarbage"))
	ob.Append(ctx, buffer.LaneAlerts, uplinktest.AlertRecord(t, 1))
	tr := &lineTransport{fails: 2, failAfter: 3}
	cfg := Config{Type: "stdout", Backoff: Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond}, PollInterval: 10 * time.Millisecond}
	u, err := New(cfg, ob, tr, Options{Gateway: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	stop := uplinktest.Run(t, u)
	uplinktest.WaitFor(t, "outbox drained", func() bool {
		return ob.Count(buffer.LaneSummaries)+ob.Count(buffer.LaneAlerts) == 0
	})
	stop()
	ls, sessions := tr.snapshot()
	if sessions != 3 {
		t.Errorf("%d sessions, want 3 (two failed)", sessions)
	}
	var kinds []string
	for _, l := range ls {
		kinds = append(kinds, jsonMap(t, []byte(l))["kind"].(string))
	}
	if kinds[0] != "alert" || len(kinds) != 7 {
		t.Errorf("lines %v, want the alert first and 7 in all", kinds)
	}
	st := u.Stats()
	if st.Acked != 7 || st.BadRecords != 1 || st.DeadLettered != 1 || ob.Count(buffer.LaneDead) != 1 ||
		st.Connects != 3 || st.Disconnects != 3 || st.Connected || !strings.Contains(st.LastError, "failing as told") {
		t.Errorf("stats %+v", st)
	}
	if n := ob.Subscribers(); n != 0 {
		t.Errorf("%d subscriptions left after Run", n)
	}
}
