package units

import (
	"math"
	"testing"
)

func TestConversions(t *testing.T) {
	cases := []struct {
		from, to string
		v, want  float64
	}{
		{"degC", "degF", 100, 212}, {"degF", "K", 32, 273.15}, {"K", "degC", 0, -273.15},
		{"bar", "psi", 1, 14.503773773}, {"mmHg", "Pa", 760, 101325}, {"inHg", "hPa", 1, 33.86389},
		{"mi", "km", 1, 1.609344}, {"ft", "m", 10, 3.048}, {"yd", "in", 1, 36},
		{"gal", "L", 1, 3.785411784}, {"m3", "L", 1, 1000}, {"gal_imp", "gal", 1, 1.200949925},
		{"kWh", "MJ", 1, 3.6}, {"kcal", "kJ", 1, 4.184}, {"BTU", "J", 1, 1055.05585262},
	}
	for _, c := range cases {
		a, b, err := Conversion(c.from, c.to)
		if err != nil {
			t.Fatal(err)
		}
		if got := a*c.v + b; math.Abs(got-c.want) > 1e-6*math.Max(1, math.Abs(c.want)) {
			t.Errorf("%v %s = %v %s, want %v", c.v, c.from, got, c.to, c.want)
		}
	}
	if _, _, err := Conversion("degC", "m"); err == nil {
		t.Error("temperature to length converted")
	}
}
