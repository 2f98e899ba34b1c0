package rules

import (
	"errors"
	"math"
	"math/rand/v2"
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

// TestExprFastPathMatchesVM checks that the closures compiled from the expr
// AST give what expr's VM gives, on random readings.
func TestExprFastPathMatchesVM(t *testing.T) {
	conds := []string{
		"value > 10 && value <= 20.5",
		"!(value < 0) || sensor == 'x'",
		"sensor startsWith 'gh' and metric != 'humidity'",
		"unit endsWith 'C' or unit contains 'Pa'",
		"meta.zone == 'north' && meta['row'] >= '2'",
		"value * 2 + 1 > abs(value) ? true : false",
		"-value ** 2 < -4 || sqrt(abs(value)) > 3",
		"quality == 0 && sensor < 'm'",
		"floor(value) == ceil(value)",
		"sensor in ['gh-1', 'a'] && metric not in ['t']",
		"round(value) in [1, 2, 3.0, -4] || value in [0.5]",
		"unit in ['degC'] ? quality in [1] : !(sensor in ['x', 'zeta'])",
	}
	nums := []string{
		"value * 9 / 5 + 32",
		"dewpoint(t, rh)",
		"(t > 0 ? t : -t) + exp(rh / 100) - ln(rh + 1) + log10(rh + 1)",
		"pow(t, 2) + hypot(t, rh) - t ^ 3 / 7",
		"rh > 90 ? t : -1000",
	}
	rng := rand.New(rand.NewPCG(7, 7))
	sensors := []string{"gh-1", "x", "a", "zeta"}
	units := []string{"degC", "hPa", "", "m"}
	metas := []map[string]string{nil, {"zone": "north", "row": "3"}, {"zone": "south"}}
	env := func() *evalEnv {
		v := rng.NormFloat64() * 20
		if rng.IntN(5) == 0 {
			v = math.Round(v)
		}
		return &evalEnv{
			r: ingest.Reading{Sensor: sensors[rng.IntN(4)], Metric: []string{"humidity", "t"}[rng.IntN(2)],
				Value: v, Unit: units[rng.IntN(4)], Quality: ingest.Quality(rng.IntN(2))},
			vars: []float64{rng.NormFloat64() * 30, rng.Float64() * 100},
			meta: metas[rng.IntN(3)],
		}
	}
	for _, src := range conds {
		p, err := compileExpr(src, nil, true)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if p.cond == nil {
			t.Fatalf("%s: no fast path", src)
		}
		for range 500 {
			e := env()
			fast := p.cond(e)
			p.cond = nil
			slow, err := p.evalBool(e)
			p.cond, _ = closureCompiler{}.boolean(p.prog.Node())
			if err != nil || fast != slow {
				t.Fatalf("%s on %+v: fast %v, vm %v (%v)", src, e, fast, slow, err)
			}
		}
	}
	for _, src := range nums {
		vars := []string{"t", "rh"}
		p, err := compileExpr(src, vars, false)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if p.num == nil {
			t.Fatalf("%s: no fast path", src)
		}
		fastFn := p.num
		for range 500 {
			e := env()
			fast := fastFn(e)
			p.num = nil
			slow, err := p.evalNum(e)
			p.num = fastFn
			if err != nil || !(fast == slow || math.IsNaN(fast) && math.IsNaN(slow) || close9(fast, slow)) {
				t.Fatalf("%s on %+v: fast %v, vm %v (%v)", src, e, fast, slow, err)
			}
		}
	}
	// Outside the subset: the VM runs it.
	p, err := compileExpr("metric matches '^hum' && len(sensor) > 1", nil, true)
	if err != nil || p.cond != nil {
		t.Fatalf("matches: %v, fast path %v", err, p.cond != nil)
	}
	if ok, err := p.evalBool(&evalEnv{r: ingest.Reading{Sensor: "ab", Metric: "humidity"}}); err != nil || !ok {
		t.Fatalf("vm: %v %v", ok, err)
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
