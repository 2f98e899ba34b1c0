package exprc

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sensorgate/sensorgate/ingest"
)

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
	env := func() *Env {
		v := rng.NormFloat64() * 20
		if rng.IntN(5) == 0 {
			v = math.Round(v)
		}
		return &Env{
			R: ingest.Reading{Sensor: sensors[rng.IntN(4)], Metric: []string{"humidity", "t"}[rng.IntN(2)],
				Value: v, Unit: units[rng.IntN(4)], Quality: ingest.Quality(rng.IntN(2))},
			Vars: []float64{rng.NormFloat64() * 30, rng.Float64() * 100},
			Meta: metas[rng.IntN(3)],
		}
	}
	for _, src := range conds {
		p, err := Compile(src, nil, true)
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
			slow, err := p.Bool(e)
			p.cond, _ = closureCompiler{}.boolean(p.prog.Node())
			if err != nil || fast != slow {
				t.Fatalf("%s on %+v: fast %v, vm %v (%v)", src, e, fast, slow, err)
			}
		}
	}
	for _, src := range nums {
		vars := []string{"t", "rh"}
		p, err := Compile(src, vars, false)
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
			slow, err := p.Num(e)
			p.num = fastFn
			if err != nil || !(fast == slow || math.IsNaN(fast) && math.IsNaN(slow) || close9(fast, slow)) {
				t.Fatalf("%s on %+v: fast %v, vm %v (%v)", src, e, fast, slow, err)
			}
		}
	}
	// Outside the subset: the VM runs it.
	p, err := Compile("metric matches '^hum' && len(sensor) > 1", nil, true)
	if err != nil || p.cond != nil {
		t.Fatalf("matches: %v, fast path %v", err, p.cond != nil)
	}
	if ok, err := p.Bool(&Env{R: ingest.Reading{Sensor: "ab", Metric: "humidity"}}); err != nil || !ok {
		t.Fatalf("vm: %v %v", ok, err)
	}
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
		p, err := Compile(src, []string{"x", "y"}, true)
		if err != nil || p.cond == nil {
			return
		}
		env := &Env{R: ingest.Reading{Sensor: "a", Metric: "m", Value: x, Unit: "degC"}, Vars: []float64{x, y}, Meta: map[string]string{"zone": "x"}}
		fast := p.cond(env)
		cond := p.cond
		p.cond = nil
		slow, err := p.Bool(env)
		p.cond = cond
		if err != nil {
			return // the VM refused at run time (e.g. a type it checks dynamically)
		}
		if fast != slow {
			t.Fatalf("%q with x=%v y=%v: fast %v, vm %v", src, x, y, fast, slow)
		}
	})
}

func close9(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}
