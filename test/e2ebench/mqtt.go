package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sensorgate/sensorgate/simulator/load"
)

// probeSensor is the sensor id of the readiness probe; it is not part of
// the simulator's truth and is left out of the comparison.
const probeSensor = "e2ebench-probe"

// connect opens a paho client. Handlers run on paho's router goroutine in
// order (as in ingest/mqttsub): the handlers here are short, and this is
// paho's cheapest path, so the bare subscriber's ceiling is not lowered by
// a goroutine per message.
func connect(url, id string) (paho.Client, error) {
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).SetOrderMatters(true)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("connect %s: %v", url, tok.Error())
	}
	return c, nil
}

func subscribe(c paho.Client, filter string, qos byte, h paho.MessageHandler) error {
	tok := c.Subscribe(filter, qos, h)
	if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		return fmt.Errorf("subscribe %s: %v", filter, tok.Error())
	}
	return nil
}

// counter is the bare subscriber of the broker-alone runs: it counts
// messages and the times of the first and the last one.
type counter struct {
	n           atomic.Uint64
	first, last atomic.Int64 // Unix ns
}

func (c *counter) handle(_ paho.Client, _ paho.Message) {
	t := time.Now().UnixNano()
	if c.n.Add(1) == 1 {
		c.first.Store(t)
	}
	c.last.Store(t)
}

// rate is the delivered rate between the first and the last message.
func (c *counter) rate() float64 {
	n := c.n.Load()
	d := time.Duration(c.last.Load() - c.first.Load())
	if n < 2 || d <= 0 {
		return 0
	}
	return float64(n-1) / d.Seconds()
}

// envelope is one record as the MQTT uplink publishes it (uplink/doc.go,
// format json).
type envelope struct {
	RecordID string       `json:"record_id"`
	Kind     string       `json:"kind"`
	Summary  *summaryJSON `json:"summary"`
}

type summaryJSON struct {
	ID     string  `json:"id"`
	Rev    int     `json:"rev"`
	Sensor string  `json:"sensor"`
	Metric string  `json:"metric"`
	Count  uint64  `json:"count"`
	Sum    float64 `json:"sum"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// collector keeps what the gateway publishes upstream.
type collector struct {
	mu       sync.Mutex
	records  map[string]bool // record ids seen
	byID     map[string]summaryJSON
	dupes    int // records received more than once (at-least-once delivery)
	bad      int // payloads that did not parse
	others   int // records that are not summaries
	lastRecv time.Time

	brokerDropped atomic.Int64 // last $SYS/broker/publish/messages/dropped, -1 unknown
}

func newCollector() *collector {
	c := &collector{records: map[string]bool{}, byID: map[string]summaryJSON{}}
	c.brokerDropped.Store(-1)
	return c
}

func (c *collector) handle(_ paho.Client, m paho.Message) {
	p := bytes.TrimSpace(m.Payload())
	var envs []envelope
	if len(p) > 0 && p[0] == '[' {
		if json.Unmarshal(p, &envs) != nil {
			envs = nil
		}
	} else {
		var e envelope
		if json.Unmarshal(p, &e) == nil {
			envs = []envelope{e}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastRecv = time.Now()
	if envs == nil {
		c.bad++
		return
	}
	for _, e := range envs {
		if c.records[e.RecordID] {
			c.dupes++
			continue
		}
		c.records[e.RecordID] = true
		if e.Summary == nil {
			c.others++
			continue
		}
		if old, ok := c.byID[e.Summary.ID]; !ok || e.Summary.Rev > old.Rev {
			c.byID[e.Summary.ID] = *e.Summary
		}
	}
}

func (c *collector) handleSys(_ paho.Client, m paho.Message) {
	if v, err := strconv.ParseInt(string(m.Payload()), 10, 64); err == nil {
		c.brokerDropped.Store(v)
	}
}

// idleFor is how long ago the last record arrived (or since start).
func (c *collector) idleFor(since time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.lastRecv
	if t.Before(since) {
		t = since
	}
	return time.Since(t)
}

// comparison is the summaries checked against the simulator's truth file.
type comparison struct {
	Summaries      int    `json:"summaries"`
	Counted        uint64 `json:"counted"`      // readings in the summaries (probe excluded)
	Lost           uint64 `json:"lost"`         // sum over keys of sent - counted where positive
	Excess         uint64 `json:"excess"`       // sum over keys of counted - sent where positive
	KeysShort      int    `json:"keys_short"`   // sensor+metric keys with fewer readings than sent
	KeysExcess     int    `json:"keys_excess"`  // keys with more
	KeysMissing    int    `json:"keys_missing"` // keys sent but without any summary
	ValueMismatch  int    `json:"value_mismatch"`
	UnknownKeys    int    `json:"unknown_keys"` // summaries for keys the simulator never sent
	DuplicateRecs  int    `json:"duplicate_records"`
	BadPayloads    int    `json:"bad_payloads"`
	NonSummaryRecs int    `json:"non_summary_records"`
}

type key struct{ sensor, metric string }

type agg struct {
	count    uint64
	sum      float64
	min, max float64
}

// compare checks the collected summaries against truth: per sensor and
// metric the counts must match exactly; when they do, min, max and sum must
// match too (sum within a relative 1e-9, as summation order differs).
func (c *collector) compare(tr *load.Truth) comparison {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := map[key]*agg{}
	var cmp comparison
	for _, s := range c.byID {
		if s.Sensor == probeSensor {
			continue
		}
		cmp.Summaries++
		k := key{s.Sensor, s.Metric}
		a := got[k]
		if a == nil {
			a = &agg{min: s.Min, max: s.Max}
			got[k] = a
		}
		a.count += s.Count
		a.sum += s.Sum
		a.min = math.Min(a.min, s.Min)
		a.max = math.Max(a.max, s.Max)
		cmp.Counted += s.Count
	}
	for sensor, metrics := range tr.Sensors {
		for metric, want := range metrics {
			if want.Count == 0 {
				continue
			}
			g := got[key{sensor, metric}]
			switch {
			case g == nil:
				cmp.KeysMissing++
				cmp.KeysShort++
				cmp.Lost += want.Count
				continue
			case g.count < want.Count:
				cmp.KeysShort++
				cmp.Lost += want.Count - g.count
			case g.count > want.Count:
				cmp.KeysExcess++
				cmp.Excess += g.count - want.Count
			default:
				if g.min != want.Min || g.max != want.Max || math.Abs(g.sum-want.Sum) > 1e-9*math.Max(1, math.Abs(want.Sum)) {
					cmp.ValueMismatch++
				}
			}
		}
	}
	for k := range got {
		if tr.Sensors[k.sensor][k.metric].Count == 0 {
			cmp.UnknownKeys++
		}
	}
	cmp.DuplicateRecs, cmp.BadPayloads, cmp.NonSummaryRecs = c.dupes, c.bad, c.others
	return cmp
}

var errNotReady = errors.New("gateway not ingesting")
