package units

import (
	"fmt"
	"slices"
	"strings"
)

// unit is a measurement unit: value_in_base = v*factor + offset.
type unit struct {
	name   string
	dim    string
	factor float64
	offset float64
}

// Units known to the convert stage, by dimension. The first name is the
// canonical one; the others are accepted aliases (matched exactly).
var unitTable = []struct {
	names  []string
	dim    string
	factor float64
	offset float64
}{
	// Temperature (base: kelvin).
	{[]string{"degC", "C", "°C", "celsius", "Cel"}, "temperature", 1, 273.15},
	{[]string{"degF", "F", "°F", "fahrenheit", "[degF]"}, "temperature", 5.0 / 9.0, 273.15 - 32*5.0/9.0},
	{[]string{"K", "kelvin"}, "temperature", 1, 0},
	// Pressure (base: pascal).
	{[]string{"Pa", "pascal"}, "pressure", 1, 0},
	{[]string{"hPa"}, "pressure", 100, 0},
	{[]string{"kPa"}, "pressure", 1e3, 0},
	{[]string{"MPa"}, "pressure", 1e6, 0},
	{[]string{"bar"}, "pressure", 1e5, 0},
	{[]string{"mbar"}, "pressure", 100, 0},
	{[]string{"psi"}, "pressure", 6894.757293168361, 0},
	{[]string{"atm"}, "pressure", 101325, 0},
	{[]string{"mmHg", "Torr"}, "pressure", 133.322387415, 0},
	{[]string{"inHg"}, "pressure", 3386.389, 0},
	// Length (base: metre).
	{[]string{"m", "metre", "meter"}, "length", 1, 0},
	{[]string{"km"}, "length", 1e3, 0},
	{[]string{"cm"}, "length", 1e-2, 0},
	{[]string{"mm"}, "length", 1e-3, 0},
	{[]string{"um", "µm"}, "length", 1e-6, 0},
	{[]string{"in", "inch"}, "length", 0.0254, 0},
	{[]string{"ft", "foot"}, "length", 0.3048, 0},
	{[]string{"yd", "yard"}, "length", 0.9144, 0},
	{[]string{"mi", "mile"}, "length", 1609.344, 0},
	// Volume (base: cubic metre).
	{[]string{"m3", "m³"}, "volume", 1, 0},
	{[]string{"L", "l", "litre", "liter"}, "volume", 1e-3, 0},
	{[]string{"mL", "ml"}, "volume", 1e-6, 0},
	{[]string{"cm3", "cm³"}, "volume", 1e-6, 0},
	{[]string{"gal", "gal_us"}, "volume", 3.785411784e-3, 0},
	{[]string{"gal_imp"}, "volume", 4.54609e-3, 0},
	{[]string{"ft3", "ft³"}, "volume", 0.028316846592, 0},
	// Energy (base: joule).
	{[]string{"J", "joule"}, "energy", 1, 0},
	{[]string{"kJ"}, "energy", 1e3, 0},
	{[]string{"MJ"}, "energy", 1e6, 0},
	{[]string{"Wh"}, "energy", 3600, 0},
	{[]string{"kWh"}, "energy", 3.6e6, 0},
	{[]string{"MWh"}, "energy", 3.6e9, 0},
	{[]string{"cal"}, "energy", 4.184, 0},
	{[]string{"kcal"}, "energy", 4184, 0},
	{[]string{"BTU", "Btu"}, "energy", 1055.05585262, 0},
}

var units = func() map[string]unit {
	m := map[string]unit{}
	for _, u := range unitTable {
		for _, n := range u.names {
			m[n] = unit{name: u.names[0], dim: u.dim, factor: u.factor, offset: u.offset}
		}
	}
	return m
}()

// lookup finds a unit by name or alias.
func lookup(name string) (unit, bool) {
	u, ok := units[name]
	return u, ok
}

// Known reports whether name is a unit (or an alias of one) that
// Conversion knows.
func Known(name string) bool {
	_, ok := lookup(name)
	return ok
}

// Conversion returns a and b with to = a*from + b.
func Conversion(from, to string) (a, b float64, err error) {
	fu, ok := lookup(from)
	if !ok {
		return 0, 0, fmt.Errorf("unknown unit %q", from)
	}
	tu, ok := lookup(to)
	if !ok {
		return 0, 0, fmt.Errorf("unknown unit %q", to)
	}
	if fu.dim != tu.dim {
		return 0, 0, fmt.Errorf("cannot convert %s (%s) to %s (%s)", from, fu.dim, to, tu.dim)
	}
	// base = v*ff + fo; to = (base - to)/tf
	a = fu.factor / tu.factor
	b = (fu.offset - tu.offset) / tu.factor
	return a, b, nil
}

// List gives the canonical names of the units Conversion knows, by
// dimension ("temperature: degC, degF, K").
func List() []string {
	dims := map[string][]string{}
	var order []string
	for _, u := range unitTable {
		if _, ok := dims[u.dim]; !ok {
			order = append(order, u.dim)
		}
		dims[u.dim] = append(dims[u.dim], u.names[0])
	}
	var out []string
	for _, d := range order {
		out = append(out, d+": "+strings.Join(slices.Clip(dims[d]), ", "))
	}
	return out
}
