package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// upSummary is what the restart tests read of a summary upstream.
type upSummary struct {
	ID     string `json:"id"`
	Rev    uint32 `json:"rev"`
	Sensor string `json:"sensor"`
	Metric string `json:"metric"`
	Count  uint64 `json:"count"`
}

func upSummaries(t *testing.T, payload []byte) []upSummary {
	t.Helper()
	type msg struct {
		Summary *upSummary `json:"summary"`
	}
	var many []msg
	if p := bytes.TrimSpace(payload); len(p) > 0 && p[0] == '[' {
		if err := json.Unmarshal(p, &many); err != nil {
			t.Fatal(err)
		}
	} else {
		var one msg
		if err := json.Unmarshal(p, &one); err != nil {
			t.Fatal(err)
		}
		many = []msg{one}
	}
	var out []upSummary
	for _, m := range many {
		if m.Summary != nil && m.Summary.Sensor != "probe" {
			out = append(out, *m.Summary)
		}
	}
	return out
}

// TestMainStopKeepsWindows: a clean stop keeps the open windows in the
// outbox's state instead of emitting partial summaries; the next start
// restores them before it takes input, so a window open across the
// restart is summarised once, with the readings of both runs (a partial
// summary under the same id would lose half of them to an upstream that
// upserts by id).
func TestMainStopKeepsWindows(t *testing.T) {
	source := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	publishProbe(t, source)
	upstream := mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
	rec := upstream.Record("up/gw-main/summaries")
	mk := func(dir string) string { return mainConfig(dir, source.URL(), upstream.URL(), "5s") }

	tm := startMain(t, mk, nil)
	p := tm.pipeline()
	waitIngesting(t, p)
	base := p.engine.Stats().Readings
	s := &sender{b: source, sent: map[string]uint64{}}
	for range 2 {
		s.round(t, 4)
	}
	waitRules(t, p, base+s.n)
	if err := tm.stop(); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Messages()); n != 0 {
		t.Fatalf("a clean stop sent %d summary messages upstream; open windows must stay in the store", n)
	}

	tm2 := startMainIn(t, tm.dir, mk, nil, func(m *Main) { m.FlushOnStop = true })
	p2 := tm2.pipeline()
	if st := p2.engine.Stats(); st.OpenWindows == 0 {
		t.Fatalf("the restart restored no open windows: %+v", st)
	}
	waitIngesting(t, p2)
	base2 := p2.engine.Stats().Readings
	sent1 := s.n
	s.round(t, 4)
	waitRules(t, p2, base2+(s.n-sent1))
	if err := tm2.stop(); err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	ids := map[string]upSummary{}
	for _, m := range rec.Messages() {
		for _, sm := range upSummaries(t, m.Payload) {
			if prev, ok := ids[sm.ID]; ok && prev.Rev == sm.Rev {
				t.Fatalf("summary %s sent twice at rev %d: %+v and %+v", sm.ID, sm.Rev, prev, sm)
			}
			ids[sm.ID] = sm
			got[sm.Sensor+"/"+sm.Metric] += sm.Count
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(s.sent) {
		t.Fatalf("upstream counts per sensor/metric %v, sent %v", got, s.sent)
	}
}
