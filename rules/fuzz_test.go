package rules

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/sensorgate/sensorgate/ingest"
)

// FuzzConfig: any YAML either fails to decode or validate with an error, or
// builds an engine that processes readings without panicking.
func FuzzConfig(f *testing.F) {
	dirs, _ := filepath.Glob("testdata/*/config.yaml")
	for _, d := range dirs {
		if b, err := os.ReadFile(d); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(m1Config))
	f.Add([]byte("stages: [{type: derive, inputs: [a], expr: 'a / 0', output: b}]\nwindows: [{size: 1ns}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := decodeConfig(b)
		if err != nil {
			return
		}
		e, err := New(cfg, Options{})
		if err != nil {
			t.Fatalf("validated config rejected by New: %v", err)
		}
		em := newEmitter(t.Context(), discard{})
		for i, m := range []string{"temperature", "humidity", "a", "m", "temperature"} {
			for _, v := range []float64{-1e300, 0, 21.5, math.NaN(), 1e300} {
				r := ingest.Reading{Sensor: "gh-1", Metric: m, Value: v, Unit: "degC", Time: int64(i) * 1e9}
				if err := e.process(em, &r); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := e.tick(em); err != nil {
			t.Fatal(err)
		}
		if err := e.flush(em); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzExpr: an expression that compiles gives the same result on the
// closure fast path as on expr's VM.
func FuzzExpr(f *testing.F) {
	for _, s := range []string{
		"value > 1 && sensor == 'a'", "-value ** 2 < 3 || !(unit endsWith 'C')", "meta.zone == 'x' ? value > 0 : value < 0",
		"abs(value) >= floor(value)", "sqrt(value) > ln(value + 3)", "x * y - pow(x, 2) > hypot(x, y)",
		"sensor in ['a', 'b'] && round(x) in [1, 2.5]", "quality in [0, 3] or unit not in ['K']",
	} {
		f.Add(s, 1.5, -2.0)
	}
	f.Fuzz(func(t *testing.T, src string, x, y float64) {
		p, err := compileExpr(src, []string{"x", "y"}, true)
		if err != nil || p.cond == nil {
			return
		}
		env := &evalEnv{r: ingest.Reading{Sensor: "a", Metric: "m", Value: x, Unit: "degC"}, vars: []float64{x, y}, meta: map[string]string{"zone": "x"}}
		fast := p.cond(env)
		cond := p.cond
		p.cond = nil
		slow, err := p.evalBool(env)
		p.cond = cond
		if err != nil {
			return // the VM refused at run time (e.g. a type it checks dynamically)
		}
		if fast != slow {
			t.Fatalf("%q with x=%v y=%v: fast %v, vm %v", src, x, y, fast, slow)
		}
	})
}
