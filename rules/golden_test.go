package rules

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/rules/window"
)

var update = flag.Bool("update", false, "rewrite the expected.jsonl files of the golden cases")

// Golden cases live in testdata/<case>/:
//
//	config.yaml     the rules section (decoded with unknown keys rejected)
//	meta.yaml       optional: sensor -> static metadata (Options.Meta)
//	input.jsonl     one reading or one clock tick per line:
//	                {"sensor": "a", "metric": "m", "value": 1.5, "unit": "u", "t": 12.5}
//	                {"tick": 20}          set the wall clock (s since the epoch or RFC 3339) and tick
//	                value may be "NaN"/"+Inf"; t and arrival are seconds since the epoch or RFC 3339;
//	                lines starting with # are comments
//	rollup          optional marker file: the sink's output is encoded as
//	                outbox records and passed through RollUp before printing
//	expected.jsonl  what the sink got, in order: {"alert": {...}} or {"summary": {...}};
//	                {"input_closed": true} marks where the flush after the input closed begins
//	                (numbers compared with a relative tolerance of 1e-9)
func TestGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/*/config.yaml")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, cfgPath := range dirs {
		dir := filepath.Dir(cfgPath)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			got := runGolden(t, dir)
			expPath := filepath.Join(dir, "expected.jsonl")
			if *update {
				if err := os.WriteFile(expPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(expPath)
			if err != nil {
				t.Fatal(err)
			}
			compareJSONL(t, got, want)
		})
	}
}

type goldenLine struct {
	Sensor  string          `json:"sensor"`
	Metric  string          `json:"metric"`
	Value   json.RawMessage `json:"value"`
	Unit    string          `json:"unit"`
	T       json.RawMessage `json:"t"`
	Arrival json.RawMessage `json:"arrival"`
	Quality ingest.Quality  `json:"quality"`
	Tick    json.RawMessage `json:"tick"`
}

func goldenTime(raw json.RawMessage) (time.Time, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return time.Parse(time.RFC3339Nano, s)
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return time.Time{}, err
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))), nil
}

func goldenValue(raw json.RawMessage) (float64, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return strconv.ParseFloat(s, 64)
	}
	var f float64
	err := json.Unmarshal(raw, &f)
	return f, err
}

func runGolden(t *testing.T, dir string) []byte {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := decodeConfig(src)
	if err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	var meta func(string) map[string]string
	if b, err := os.ReadFile(filepath.Join(dir, "meta.yaml")); err == nil {
		m := map[string]map[string]string{}
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatalf("meta.yaml: %v", err)
		}
		meta = func(s string) map[string]string { return m[s] }
	}
	beforeClose := -1
	h := newHarness(t, cfg, meta, func(e *Engine) {
		// Runs on the engine goroutine when the input has closed.
		e.flushHook = func(s Sink) { beforeClose = len(s.(*collect).order) }
	})
	f, err := os.Open(filepath.Join(dir, "input.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var gl goldenLine
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&gl); err != nil {
			t.Fatalf("input.jsonl:%d: %v", ln, err)
		}
		if gl.Tick != nil {
			now, err := goldenTime(gl.Tick)
			if err != nil {
				t.Fatalf("input.jsonl:%d: tick: %v", ln, err)
			}
			h.tickAt(now)
			continue
		}
		r := ingest.Reading{Sensor: gl.Sensor, Metric: gl.Metric, Unit: gl.Unit, Quality: gl.Quality}
		if r.Value, err = goldenValue(gl.Value); err != nil {
			t.Fatalf("input.jsonl:%d: value: %v", ln, err)
		}
		ts, err := goldenTime(gl.T)
		if err != nil {
			t.Fatalf("input.jsonl:%d: t: %v", ln, err)
		}
		r.Time = ts.UnixNano()
		if gl.Arrival != nil {
			at, err := goldenTime(gl.Arrival)
			if err != nil {
				t.Fatalf("input.jsonl:%d: arrival: %v", ln, err)
			}
			r.Arrival = at.UnixNano()
		}
		h.send(r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if err := h.close(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	var records []any
	var si, ai int
	for i, k := range h.sink.order {
		if i == beforeClose {
			records = append(records, map[string]any{"input_closed": true})
		}
		if k == "A" {
			records = append(records, map[string]any{"alert": &h.sink.alerts[ai]})
			ai++
		} else {
			records = append(records, map[string]any{"summary": &h.sink.summaries[si]})
			si++
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "rollup")); err == nil {
		records = goldenRollUp(t, records)
	}
	var out bytes.Buffer
	for _, rec := range records {
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(b)
		out.WriteByte('\n')
	}
	return out.Bytes()
}

// goldenRollUp encodes the sink's output as outbox records, rolls them up
// and decodes the result.
func goldenRollUp(t *testing.T, records []any) []any {
	var payloads [][]byte
	for _, rec := range records {
		m := rec.(map[string]any)
		var b []byte
		var err error
		switch {
		case m["alert"] != nil:
			b, err = ingest.AppendAlert(nil, m["alert"].(*ingest.Alert))
		case m["summary"] != nil:
			b, err = ingest.AppendSummary(nil, m["summary"].(*ingest.Summary))
		default:
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		payloads = append(payloads, b)
	}
	rolled, err := window.RollUp(payloads)
	if err != nil {
		t.Fatal(err)
	}
	var out []any
	for _, p := range rolled {
		r, err := ingest.DecodeRecord(p)
		if err != nil {
			t.Fatal(err)
		}
		if r.Alert != nil {
			out = append(out, map[string]any{"alert": r.Alert})
		} else {
			out = append(out, map[string]any{"summary": r.Summary})
		}
	}
	return out
}

func compareJSONL(t *testing.T, got, want []byte) {
	t.Helper()
	gl := splitLines(got)
	wl := splitLines(want)
	for i := range max(len(gl), len(wl)) {
		switch {
		case i >= len(gl):
			t.Errorf("line %d missing: %s", i+1, wl[i])
			continue
		case i >= len(wl):
			t.Errorf("line %d unexpected: %s", i+1, gl[i])
			continue
		}
		var g, w any
		if err := json.Unmarshal([]byte(gl[i]), &g); err != nil {
			t.Fatalf("got line %d: %v", i+1, err)
		}
		if err := json.Unmarshal([]byte(wl[i]), &w); err != nil {
			t.Fatalf("expected line %d: %v", i+1, err)
		}
		if d := jsonDiff("", g, w); d != "" {
			t.Errorf("line %d: %s\n got: %s\nwant: %s", i+1, d, gl[i], wl[i])
		}
	}
}

func splitLines(b []byte) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// jsonDiff describes the first difference between two decoded JSON values;
// numbers are equal within a relative tolerance of 1e-9.
func jsonDiff(path string, g, w any) string {
	switch wv := w.(type) {
	case map[string]any:
		gv, ok := g.(map[string]any)
		if !ok {
			return path + ": not an object"
		}
		for k := range wv {
			if _, ok := gv[k]; !ok {
				return path + "." + k + ": missing"
			}
		}
		for k := range gv {
			if _, ok := wv[k]; !ok {
				return path + "." + k + ": unexpected"
			}
			if d := jsonDiff(path+"."+k, gv[k], wv[k]); d != "" {
				return d
			}
		}
	case []any:
		gv, ok := g.([]any)
		if !ok || len(gv) != len(wv) {
			return path + ": array length"
		}
		for i := range wv {
			if d := jsonDiff(fmt.Sprintf("%s[%d]", path, i), gv[i], wv[i]); d != "" {
				return d
			}
		}
	case float64:
		gv, ok := g.(float64)
		if !ok || math.Abs(gv-wv) > 1e-9*math.Max(1, math.Max(math.Abs(gv), math.Abs(wv))) {
			return fmt.Sprintf("%s: %v, want %v", path, g, w)
		}
	default:
		if g != w {
			return fmt.Sprintf("%s: %v, want %v", path, g, w)
		}
	}
	return ""
}
