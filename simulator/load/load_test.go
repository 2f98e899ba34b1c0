package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/simulator"
	"github.com/sensorgate/sensorgate/test/leak"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// startBroker starts an in-process MQTT broker on a free port and returns
// its URL.
func startBroker(t *testing.T) string {
	t.Helper()
	return mqtttest.StartBroker(t, mqtttest.BrokerOptions{}).URL()
}

// subscriber is a plain MQTT subscriber that decodes what the load
// generator sends and aggregates it per sensor and metric.
type subscriber struct {
	mu        sync.Mutex
	format    string
	messages  uint64
	malformed uint64
	got       map[string]map[string]*Agg
	win       map[string]*Agg // by sensor/metric/start, windows of testWindow
	lastTS    map[string]int64
	client    mqtt.Client
}

func subscribe(t *testing.T, url, format string) *subscriber {
	t.Helper()
	s := &subscriber{format: format, got: map[string]map[string]*Agg{}, win: map[string]*Agg{}, lastTS: map[string]int64{}}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("truth-sub").SetOrderMatters(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	tok := c.Subscribe("sensors/+/telemetry", 1, func(_ mqtt.Client, m mqtt.Message) {
		sensor := strings.Split(m.Topic(), "/")[1]
		s.add(sensor, m.Payload())
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	s.client = c
	t.Cleanup(func() { c.Disconnect(100) })
	return s
}

func (s *subscriber) add(sensor string, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messages++
	vals := map[string]float64{}
	var ts int64
	switch s.format {
	case FormatJSON:
		var m map[string]float64
		if json.Unmarshal(p, &m) != nil {
			s.malformed++
			return
		}
		ts = int64(m["ts"]) * int64(time.Millisecond)
		delete(m, "ts")
		vals = m
	case FormatSenML:
		var recs []struct {
			BN string  `json:"bn"`
			BT float64 `json:"bt"`
			N  string  `json:"n"`
			V  float64 `json:"v"`
		}
		if json.Unmarshal(p, &recs) != nil {
			s.malformed++
			return
		}
		if recs[0].BN != sensor+":" {
			panic("senml base name " + recs[0].BN)
		}
		ts = int64(math.Round(recs[0].BT*1e3)) * int64(time.Millisecond)
		for _, r := range recs {
			vals[r.N] = r.V
		}
	case FormatMsgpack:
		var rb ingest.ReadingBatch
		if _, err := rb.UnmarshalMsg(p); err != nil {
			s.malformed++
			return
		}
		for _, r := range rb.Readings {
			if r.Sensor != sensor {
				panic("msgpack sensor " + r.Sensor)
			}
			vals[r.Metric] = r.Value
			ts = r.Time
		}
	}
	if ts <= 0 {
		panic("no timestamp")
	}
	s.lastTS[sensor] = ts
	if s.got[sensor] == nil {
		s.got[sensor] = map[string]*Agg{}
	}
	for k, v := range vals {
		a := s.got[sensor][k]
		if a == nil {
			a = &Agg{}
			s.got[sensor][k] = a
		}
		a.add(v)
		wk := fmt.Sprintf("%s/%s/%d", sensor, k, ts/int64(testWindow)*int64(testWindow))
		if s.win[wk] == nil {
			s.win[wk] = &Agg{}
		}
		s.win[wk].add(v)
	}
}

// testWindow is the truth window of the round-trip test: several windows
// in its 1.5 s run.
const testWindow = 500 * time.Millisecond

func (s *subscriber) count() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.messages
}

// check compares what the subscriber got with the truth.
func (s *subscriber) check(t *testing.T, tr Truth) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.count() < tr.Messages && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.messages != tr.Messages || s.malformed != tr.Malformed {
		t.Fatalf("subscriber got %d messages (%d malformed), truth says %d (%d malformed)", s.messages, s.malformed, tr.Messages, tr.Malformed)
	}
	if len(s.got) != len(tr.Sensors) {
		t.Fatalf("subscriber saw %d sensors, truth %d", len(s.got), len(tr.Sensors))
	}
	var total Agg
	for sensor, metrics := range tr.Sensors {
		for metric, want := range metrics {
			got := s.got[sensor][metric]
			if got == nil {
				got = &Agg{}
			}
			if got.Count != want.Count || got.Min != want.Min || got.Max != want.Max ||
				math.Abs(got.Sum-want.Sum) > 1e-9*math.Max(1, math.Abs(want.Sum)) {
				t.Errorf("%s/%s: subscriber %+v, truth %+v", sensor, metric, *got, want)
			}
			total.merge(want)
		}
	}
	if total.Count != tr.Total.Count || total.Min != tr.Total.Min || total.Max != tr.Total.Max {
		t.Errorf("total %+v, sum of sensors %+v", tr.Total, total)
	}
	// Per window: the subscriber's windows (from the payload's own time)
	// are exactly the truth's.
	if tr.Window != testWindow || len(tr.Windows) != len(s.win) || len(tr.Windows) < 3*len(tr.Sensors) {
		t.Fatalf("truth has %d windows of %v, subscriber %d", len(tr.Windows), tr.Window, len(s.win))
	}
	var wtotal uint64
	for _, w := range tr.Windows {
		got := s.win[fmt.Sprintf("%s/%s/%d", w.Sensor, w.Metric, w.Start)]
		if got == nil || w.End != w.Start+int64(testWindow) || w.Start%int64(testWindow) != 0 ||
			got.Count != w.Count || got.Min != w.Min || got.Max != w.Max || math.Abs(got.Sum-w.Sum) > 1e-9*math.Max(1, math.Abs(w.Sum)) {
			t.Errorf("window %s/%s/%d: subscriber %+v, truth %+v", w.Sensor, w.Metric, w.Start, got, w)
		}
		wtotal += w.Count
	}
	if wtotal != tr.Total.Count {
		t.Errorf("windows count %d readings, total %d", wtotal, tr.Total.Count)
	}
}

func TestRunLoadTruthMatchesSubscriber(t *testing.T) {
	before := runtime.NumGoroutine()
	url := startBroker(t)
	for _, tc := range []struct {
		format string
		qos    byte
		paho   bool
	}{{FormatJSON, 0, false}, {FormatSenML, 1, false}, {FormatMsgpack, 0, true}} {
		format := tc.format
		t.Run(format, func(t *testing.T) {
			sub := subscribe(t, url, format)
			var progress []Progress
			res, err := Run(context.Background(), Config{
				Broker: url, ClientID: "load-" + format, Sensors: 6, Rate: 600, Duration: time.Second + 500*time.Millisecond,
				QoS: tc.qos, Paho: tc.paho, Format: format, Seed: 3, Connections: 4, TruthWindow: testWindow,
				Progress: func(p Progress) { progress = append(progress, p) },
			})
			if err != nil {
				t.Fatal(err)
			}
			// The count is exact: rate × duration messages, none lost.
			if res.Sent != 900 || res.Errors != 0 || res.Truth.Messages != 900 {
				t.Fatalf("sent %d (errors %d), want 900", res.Sent, res.Errors)
			}
			if res.Truth.Total.Count != 1800 || len(res.Truth.Sensors) != 6 {
				t.Fatalf("truth %+v", res.Truth.Total)
			}
			if res.Rate <= 0 || res.Elapsed < 1500*time.Millisecond {
				t.Fatalf("rate %v elapsed %v", res.Rate, res.Elapsed)
			}
			if len(progress) == 0 {
				t.Fatal("no progress report")
			}
			sub.check(t, res.Truth)
			// The truth file round-trips.
			path := filepath.Join(t.TempDir(), "truth.json")
			if err := res.Truth.WriteFile(path); err != nil {
				t.Fatal(err)
			}
			back, err := ReadTruth(path)
			if err != nil {
				t.Fatal(err)
			}
			if back.Total != res.Truth.Total || back.Sensors["sim-0003"]["humidity"] != res.Truth.Sensors["sim-0003"]["humidity"] ||
				len(back.Windows) != len(res.Truth.Windows) || back.Windows[3] != res.Truth.Windows[3] {
				t.Fatalf("truth file round trip: %+v", back.Total)
			}
		})
	}
	leak.Wait(t, before+12) // the broker's own goroutines stay until cleanup
}

func TestRunLoadFaults(t *testing.T) {
	url := startBroker(t)
	sub := subscribe(t, url, FormatJSON)
	res, err := Run(context.Background(), Config{TruthWindow: testWindow,
		Broker: url, Sensors: 4, Rate: 2000, Duration: time.Second, QoS: 1, Seed: 5,
		Faults: simulator.Faults{MalformedProb: 0.02, DuplicateProb: 0.03, DropoutProb: 0.01, OutOfOrderProb: 0.05},
	})
	if err != nil {
		t.Fatal(err)
	}
	tr := res.Truth
	if tr.Malformed == 0 || tr.Duplicates == 0 || tr.Dropouts == 0 || tr.OutOfOrder == 0 {
		t.Fatalf("faults not injected: %+v", tr)
	}
	// Every scheduled sample was either dropped or sent (twice if duplicated).
	if tr.Messages != 2000-tr.Dropouts+tr.Duplicates {
		t.Fatalf("messages %d, want 2000 - %d dropouts + %d duplicates", tr.Messages, tr.Dropouts, tr.Duplicates)
	}
	sub.check(t, tr)
}

func TestRunLoadRepeatable(t *testing.T) {
	url := startBroker(t)
	cfg := Config{Broker: url, Sensors: 3, Rate: 300, Duration: 200 * time.Millisecond, Seed: 8,
		Metrics: map[string]simulator.Signal{"m": {Model: simulator.ModelRandomWalk, Base: 1, Step: 1}}}
	a, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.Truth.Total != b.Truth.Total || a.Truth.Total.Count != 60 {
		t.Fatalf("same seed, different truth: %+v vs %+v", a.Truth.Total, b.Truth.Total)
	}
}

func TestRunLoadCancel(t *testing.T) {
	url := startBroker(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result)
	go func() {
		res, err := Run(ctx, Config{Broker: url, Sensors: 2, Rate: 100})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case res := <-done:
		if res.Sent == 0 || res.Truth.Messages != res.Sent {
			t.Fatalf("result %+v", res)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not stop on cancel")
	}
}

func TestLoadConfigValidate(t *testing.T) {
	var c Config
	c.Topic = "a/+/b"
	c.Format = "xml"
	c.QoS = 3
	c.Sensors = -1
	c.Defaults()
	err := c.Validate()
	var paths []string
	for _, e := range ingest.FlattenErrors(err) {
		var fe *ingest.FieldError
		if !errors.As(e, &fe) {
			t.Fatal(e)
		}
		paths = append(paths, fe.Path)
	}
	want := "broker,sensors,rate,qos,format,topic,topic"
	if strings.Join(paths, ",") != want {
		t.Fatalf("paths %v, want %s", paths, want)
	}
	if _, err := Run(context.Background(), Config{Broker: "tcp://127.0.0.1:1", Sensors: 1, Rate: 1}); err == nil {
		t.Fatal("Run connected to a closed port")
	}
	if got := SensorID(0, 20000); got != "sim-00001" {
		t.Fatalf("SensorID %q", got)
	}
	if got := SensorID(41, 100); got != "sim-0042" {
		t.Fatalf("SensorID %q", got)
	}
}

func TestEncodePayload(t *testing.T) {
	s := newLoadSensor(simulator.NewSampler(1, "gh-1", simulator.SensorConfig{Interval: time.Second, Metrics: map[string]simulator.Signal{
		"temperature": {Unit: "°C"}, "humidity": {Unit: "%"}}}), "t")
	s.vals[0], s.vals[1] = 55.5, 21.25
	ts := int64(1700000000123456789)
	for _, tc := range []struct{ format, want string }{
		{FormatJSON, `{"ts":1700000000123,"humidity":55.5,"temperature":21.25}`},
		{FormatSenML, `[{"bn":"gh-1:","bt":1700000000.123,"n":"humidity","u":"%RH","v":55.5},{"n":"temperature","u":"Cel","v":21.25}]`},
	} {
		if got := string(encodePayload(nil, tc.format, s, ts)); got != tc.want {
			t.Errorf("%s: %s\nwant %s", tc.format, got, tc.want)
		}
		if json.Valid(malform(encodePayload(nil, tc.format, s, ts), tc.format)) {
			t.Errorf("%s: malformed payload is valid JSON", tc.format)
		}
	}
	var rb ingest.ReadingBatch
	if _, err := rb.UnmarshalMsg(encodePayload(nil, FormatMsgpack, s, ts)); err != nil || len(rb.Readings) != 2 ||
		rb.Readings[1] != (ingest.Reading{Sensor: "gh-1", Metric: "temperature", Value: 21.25, Unit: "°C", Time: ts}) {
		t.Fatalf("msgpack: %+v %v", rb, err)
	}
	if _, err := rb.UnmarshalMsg(malform(encodePayload(nil, FormatMsgpack, s, ts), FormatMsgpack)); err == nil {
		t.Fatal("malformed msgpack decoded")
	}
	// Encoding into a reused buffer does not allocate.
	buf := make([]byte, 0, 512)
	for _, f := range []string{FormatJSON, FormatSenML, FormatMsgpack} {
		if a := testing.AllocsPerRun(100, func() { buf = encodePayload(buf[:0], f, s, ts) }); a != 0 {
			t.Errorf("%s: %v allocations per payload", f, a)
		}
	}
}

func TestRunLoadBrokerDies(t *testing.T) {
	for _, qos := range []byte{0, 1} {
		b := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
		seen := b.Record("sensors/#")
		done := make(chan Result)
		go func() {
			res, err := Run(context.Background(), Config{Broker: b.URL(), Sensors: 4, Rate: 5000, Duration: 4 * time.Second, QoS: qos})
			if err != nil {
				t.Error(err)
			}
			done <- res
		}()
		// The broker dies once the run is under way.
		seen.WaitLen(t, 20*time.Second, 100)
		b.Stop()
		select {
		case res := <-done:
			// Everything after the broker died failed or was never sent.
			if res.Sent >= 20000 || res.Errors == 0 {
				t.Fatalf("qos %d: sent %d errors %d after the broker died", qos, res.Sent, res.Errors)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("qos %d: Run hung after the broker died", qos)
		}
	}
}
