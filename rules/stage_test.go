package rules

import (
	"errors"
	"slices"
	"testing"

	"github.com/sensorgate/sensorgate/ingest"
)

func TestStageValidatePaths(t *testing.T) {
	cases := []struct {
		name, yaml string
		paths      []string
	}{
		{"ok", `
stages:
  - {type: filter, expr: "value > 0"}
  - {type: range, min: 0}
  - {type: calibrate, scale: 2}
  - {type: calibrate, poly: [1, 2]}
  - {type: convert, to: degC, from: degF}
  - {type: deadband, delta: 1}
  - {type: rate}
  - {type: derive, inputs: [a, b], expr: "a + b", output: c}
  - {type: rename, to_metric: x}
  - {type: tag, tags: {zone: n}}
  - {type: dedup}`, nil},
		{"bad", `
stages:
  - {type: filtre}
  - {type: filter, expr: "value >"}
  - {type: filter, expr: "value + 1"}
  - {type: range, action: drop, delta: 1}
  - {type: range, min: 5, max: 1}
  - {type: calibrate}
  - {type: calibrate, scale: 1, poly: [1]}
  - {type: convert, to: furlong}
  - {type: convert, from: degC, to: kPa}
  - {type: deadband, delta: -1, max_silence: -1s}
  - {type: rate, per: -1s}
  - {type: derive, inputs: [t, t], expr: "t * nope", max_age: -1s}
  - {type: derive, inputs: [value], expr: "1"}
  - {type: rename, sensor: "["}
  - {type: tag}
  - {type: dedup, size: 100}`,
			[]string{"stages[0].type", "stages[1].expr", "stages[2].expr", "stages[3].delta", "stages[3]", "stages[3].action",
				"stages[4].max", "stages[5]", "stages[6].poly", "stages[7].to", "stages[8].from",
				"stages[9].delta", "stages[9].max_silence", "stages[10].per",
				"stages[11].inputs[1]", "stages[11].output", "stages[11].max_age", "stages[11].expr",
				"stages[12].output", "stages[12].expr", "stages[13].sensor", "stages[13]", "stages[14].tags", "stages[15].size"}},
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
				t.Errorf("paths\n got %q\nwant %q\nerr: %v", got, tc.paths, err)
			}
		})
	}
}

func TestDerivedAndFilterAllocs(t *testing.T) {
	cfg := parseConfig(t, `
stages:
  - {type: filter, metric: "*", expr: "value > -100 && sensor startsWith 's'"}
  - {type: range, metric: temperature, min: -40, max: 85}
  - {type: convert, metric: temperature, to: degF}
  - {type: calibrate, metric: humidity, scale: 1.01, offset: -0.5}
  - {type: derive, inputs: [temperature, humidity], expr: "dewpoint((temperature - 32) * 5 / 9, humidity)", output: dew_point, unit: degC}
  - {type: rate, metric: temperature, output: "{metric}_rate"}
  - {type: dedup}
  - {type: deadband, metric: dew_point, delta: 0}
alerts:
  - {id: hot, metric: temperature, above: 1000}
windows:
  - {name: 10s, size: 10s, lateness: 1s}
  - {name: 1m, type: hopping, size: 1m, slide: 10s}
`)
	e, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	em := newEmitter(t.Context(), discard{})
	var i int64
	sensors := []string{"sa", "sb", "sc", "sd", "se"}
	step := func() {
		m := "temperature"
		if i%2 == 1 {
			m = "humidity"
		}
		r := ingest.Reading{Sensor: sensors[i%5], Metric: m, Value: float64(20 + i%7), Time: i * 1e7, Unit: "degC"}
		i++
		if err := e.process(em, &r); err != nil {
			t.Fatal(err)
		}
	}
	for range 50_000 {
		step()
	}
	if st := e.Stats(); st.Derived == 0 || st.ExprErrors != 0 {
		t.Fatalf("stats %+v", st)
	}
	if n := testing.AllocsPerRun(10_000, step); n != 0 {
		t.Fatalf("%v allocations per reading with all stages", n)
	}
}
