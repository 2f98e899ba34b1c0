package rules

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/rules/window"
)

func TestConfigDefaults(t *testing.T) {
	c := parseConfig(t, `
alerts:
  - {id: hot, above: 30}
windows:
  - {size: 10s}
  - {type: session, gap: 1m}
  - {name: h, type: hopping, size: 1m, late: revise, aggregates: [quantiles]}
`)
	a := c.Alerts[0]
	if a.Sensor != "*" || a.Metric != "*" || a.Severity != "warning" || *a.ClearBelow != 30 {
		t.Errorf("alert defaults %+v", a)
	}
	w := c.Windows
	if w[0].Name != "10s" || w[0].Type != Tumbling || w[0].Time != EventTime || w[0].Late != LateDrop {
		t.Errorf("window defaults %+v", w[0])
	}
	if w[1].Name != "session-1m0s" {
		t.Errorf("session name %q", w[1].Name)
	}
	if w[2].Slide != time.Minute || w[2].Retention != 10*time.Minute || !slices.Equal(w[2].Quantiles, window.DefaultQuantiles()) || w[2].SketchAccuracy != 0.01 {
		t.Errorf("hopping defaults %+v", w[2])
	}
}

func TestConfigValidatePaths(t *testing.T) {
	cases := []struct {
		name, yaml string
		paths      []string
	}{
		{"ok", `
alerts: [{id: a, above: 1}, {id: b, below: 1, clear_above: 2}]
windows: [{size: 10s}, {name: x, type: hopping, size: 10s, slide: 5s}, {type: session, gap: 5s}]`, nil},
		{"alert", `
alerts:
  - {above: 1}
  - {id: x}
  - {id: x, above: 1, clear_below: 2, hold: -1s}
  - {id: y, below: 1, clear_below: 0, sensor: "[", renotify: -1s}
  - {id: z, above: 1, below: 0}`,
			[]string{"alerts[0].id", "alerts[1]", "alerts[2].id", "alerts[2].clear_below", "alerts[2].hold",
				"alerts[3].sensor", "alerts[3].clear_below", "alerts[3].renotify", "alerts[4].below"}},
		{"windows", `
windows:
  - {name: a}
  - {name: a, size: 1s, type: sliding}
  - {name: b, size: 1s, lateness: -1s, time: wall, late: keep}
  - {name: c, type: hopping, size: 1s, slide: 2s}
  - {name: d, type: session}
  - {name: e, size: 1s, aggregates: [p99], quantiles: [2]}
  - {name: f, size: 1s, aggregates: [quantiles], quantiles: [1.5], sketch_accuracy: 2}
  - {name: g, size: 1s, late: revise, retention: -1s}
  - {name: h, type: session, gap: 1s, late: revise}`,
			[]string{"windows[0].size", "windows[1].name", "windows[1].type", "windows[2].lateness",
				"windows[2].time", "windows[2].late", "windows[3].slide", "windows[4].gap",
				"windows[5].aggregates[0]", "windows[5].quantiles", "windows[6].quantiles[0]",
				"windows[6].sketch_accuracy", "windows[7].retention", "windows[8].late"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeConfig([]byte(tc.yaml))
			var got []string
			for _, e := range ingest.FlattenErrors(err) {
				var fe *ingest.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("not a FieldError: %v", e)
				}
				got = append(got, fe.Path)
			}
			if !slices.Equal(got, tc.paths) {
				t.Errorf("paths\n got %v\nwant %v\nerr: %v", got, tc.paths, err)
			}
		})
	}
}

func TestConfigUnknownKey(t *testing.T) {
	_, err := decodeConfig([]byte("windows: [{size: 10s, sise: 1s}]"))
	if err == nil || !strings.Contains(err.Error(), "sise") {
		t.Fatalf("unknown key accepted: %v", err)
	}
}

func TestConfigValidateLimits(t *testing.T) {
	cases := []struct {
		name, yaml string
		path, msg  string
	}{
		{"1ns window", `windows: [{size: 1ns}]`, "windows[0].size", "must be at least 100ms, got 1ns"},
		{"99ms window", `windows: [{size: 99ms}]`, "windows[0].size", "must be at least 100ms"},
		{"1ms slide", `windows: [{type: hopping, size: 1s, slide: 1ms}]`, "windows[0].slide", "must be at least 100ms"},
		{"1us gap", `windows: [{type: session, gap: 1us}]`, "windows[0].gap", "must be at least 100ms"},
		{"max_routes", `max_routes: 1000000000000`, "max_routes", "must be between 1 and 1000000"},
		{"windows", "windows: [" + strings.Repeat("{size: 1m}, ", MaxRules) + "{size: 1m}]", "windows", "at most 1000 rules, got 1001"},
		{"alerts", "alerts: [" + strings.Repeat("{id: a, above: 1}, ", MaxRules+1) + "]", "alerts", "at most 1000 rules, got 1001"},
		{"stages", "stages: [" + strings.Repeat("{type: filter, expr: 'true'}, ", MaxRules+1) + "]", "stages", "at most 1000 rules, got 1001"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeConfig([]byte(tc.yaml))
			errs := ingest.FlattenErrors(err)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(errs), err)
			}
			var fe *ingest.FieldError
			if !errors.As(errs[0], &fe) || fe.Path != tc.path || !strings.Contains(fe.Err.Error(), tc.msg) {
				t.Fatalf("got %v, want %s: ...%s", errs[0], tc.path, tc.msg)
			}
		})
	}
	// At the limits, all is well.
	if _, err := decodeConfig([]byte(`max_routes: 1000000
windows: [{size: 100ms}, {name: h, type: hopping, size: 1s, slide: 100ms}, {type: session, gap: 100ms}]`)); err != nil {
		t.Fatal(err)
	}
}
