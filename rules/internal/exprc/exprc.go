// Package exprc compiles the expressions of the rules engine
// (filter conditions, derive formulas).
//
// Expressions (filter conditions, derive formulas) use the expr language
// (github.com/expr-lang/expr), compiled and type-checked once at load time.
// The environment:
//
//	value    float   the reading's value
//	sensor   string  sensor id
//	metric   string  metric name
//	unit     string  unit
//	time     int     event time, Unix ns
//	quality  int     quality flags
//	meta     map     static metadata of the sensor (meta.zone, meta["location"])
//	<input>  float   derive stages: the latest value of each input metric
//
// plus the functions sqrt, exp, ln, log10, pow, hypot and dewpoint(t, rh)
// (Magnus formula, °C and %RH -> °C) besides expr's builtins (abs, min,
// max, round, floor, ceil, ...).
//
// Expressions made only of numbers, strings, booleans, the variables above
// (except time, an integer),
// arithmetic, comparisons, logic, the conditional operator and the numeric
// functions are compiled further into Go closures that do not allocate;
// anything else runs on expr's VM (which allocates a little per run).
package exprc

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"

	"github.com/sensorgate/sensorgate/ingest"
)

// Env is what an expression sees for one evaluation.
type Env struct {
	R    ingest.Reading
	Vars []float64 // derive inputs, by slot
	Meta map[string]string
}

// Program is a compiled expression. Not safe for concurrent use (its VM
// and environment are reused).
type Program struct {
	src  string
	prog *vm.Program
	vars []string
	cond func(*Env) bool    // fast path, boolean result
	num  func(*Env) float64 // fast path, numeric result
	vm   vm.VM
	env  map[string]any // VM fallback environment, reused
}

var errNotBool = errors.New("expression result is not a boolean")

// numFuncs take one or two arguments (y is unused by the one-argument ones).
var numFuncs = map[string]func(x, y float64) float64{
	"sqrt":     func(x, _ float64) float64 { return math.Sqrt(x) },
	"exp":      func(x, _ float64) float64 { return math.Exp(x) },
	"ln":       func(x, _ float64) float64 { return math.Log(x) },
	"log10":    func(x, _ float64) float64 { return math.Log10(x) },
	"pow":      math.Pow,
	"hypot":    math.Hypot,
	"dewpoint": DewPoint,
}

var numFuncArity = map[string]int{"sqrt": 1, "exp": 1, "ln": 1, "log10": 1, "pow": 2, "hypot": 2, "dewpoint": 2}

// DewPoint returns the dew point in °C for a temperature in °C and a
// relative humidity in percent (Magnus formula with the Sonntag 1990
// constants, good to about 0.35 °C from -45 to 60 °C).
func DewPoint(t, rh float64) float64 {
	const a, b = 17.62, 243.12
	g := math.Log(rh/100) + a*t/(b+t)
	return b * g / (a - g)
}

func toFloat(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case float32:
		return float64(x), nil
	case int32:
		return float64(x), nil
	case uint64:
		return float64(x), nil
	}
	return 0, fmt.Errorf("not a number: %T", v)
}

func exprOptions(vars []string, wantBool bool) []expr.Option {
	env := map[string]any{
		"value": 0.0, "sensor": "", "metric": "", "unit": "", "time": 0, "quality": 0,
		"meta": map[string]string{},
	}
	for _, v := range vars {
		env[v] = 0.0
	}
	opts := []expr.Option{expr.Env(env), expr.DisableBuiltin("now")}
	if wantBool {
		opts = append(opts, expr.AsBool())
	} else {
		opts = append(opts, expr.AsFloat64())
	}
	for name, fn := range numFuncs {
		n := numFuncArity[name]
		f := fn
		var typ any = new(func(float64) float64)
		if n == 2 {
			typ = new(func(float64, float64) float64)
		}
		opts = append(opts, expr.Function(name, func(params ...any) (any, error) {
			var a [2]float64
			for i, p := range params {
				x, err := toFloat(p)
				if err != nil {
					return nil, err
				}
				a[i] = x
			}
			return f(a[0], a[1]), nil
		}, typ))
	}
	return opts
}

// Compile compiles src (wantBool: a condition, else a number); vars are the derive inputs.
func Compile(src string, vars []string, wantBool bool) (*Program, error) {
	for _, v := range vars {
		switch v {
		case "value", "sensor", "metric", "unit", "time", "quality", "meta":
			return nil, fmt.Errorf("input %q shadows a built-in variable", v)
		}
	}
	prog, err := expr.Compile(src, exprOptions(vars, wantBool)...)
	if err != nil {
		return nil, err
	}
	p := &Program{src: src, prog: prog, vars: vars}
	c := closureCompiler{vars: vars}
	if wantBool {
		p.cond, _ = c.boolean(prog.Node())
	} else {
		p.num, _ = c.number(prog.Node())
	}
	return p, nil
}

func (p *Program) vmEnv(env *Env) map[string]any {
	if p.env == nil {
		p.env = map[string]any{}
	}
	m := p.env
	r := &env.R
	m["value"] = r.Value
	m["sensor"] = r.Sensor
	m["metric"] = r.Metric
	m["unit"] = r.Unit
	m["time"] = int(r.Time)
	m["quality"] = int(r.Quality)
	meta := env.Meta
	if meta == nil {
		meta = map[string]string{}
	}
	m["meta"] = meta
	for i, v := range p.vars {
		m[v] = env.Vars[i]
	}
	return m
}

// Bool evaluates a condition.
func (p *Program) Bool(env *Env) (bool, error) {
	if p.cond != nil {
		return p.cond(env), nil
	}
	out, err := p.vm.Run(p.prog, p.vmEnv(env))
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, errNotBool
	}
	return b, nil
}

// Num evaluates a number.
func (p *Program) Num(env *Env) (float64, error) {
	if p.num != nil {
		return p.num(env), nil
	}
	out, err := p.vm.Run(p.prog, p.vmEnv(env))
	if err != nil {
		return 0, err
	}
	return toFloat(out)
}

// closureCompiler turns the supported subset of a checked expr AST into Go
// closures. Each method returns ok=false for anything outside the subset;
// the caller then uses the VM.
type closureCompiler struct{ vars []string }

type (
	numFn  = func(*Env) float64
	boolFn = func(*Env) bool
	strFn  = func(*Env) string
)

func constNum(n ast.Node) (float64, bool) {
	switch x := n.(type) {
	case *ast.IntegerNode:
		return float64(x.Value), true
	case *ast.FloatNode:
		return x.Value, true
	case *ast.ConstantNode:
		f, err := toFloat(x.Value)
		return f, err == nil
	}
	return 0, false
}

func (c closureCompiler) number(n ast.Node) (numFn, bool) {
	if v, ok := constNum(n); ok {
		return func(*Env) float64 { return v }, true
	}
	switch x := n.(type) {
	case *ast.IdentifierNode:
		switch x.Value {
		case "value":
			return func(e *Env) float64 { return e.R.Value }, true
		case "quality":
			return func(e *Env) float64 { return float64(e.R.Quality) }, true
		}
		for i, v := range c.vars {
			if v == x.Value {
				return func(e *Env) float64 { return e.Vars[i] }, true
			}
		}
	case *ast.UnaryNode:
		a, ok := c.number(x.Node)
		if !ok {
			return nil, false
		}
		switch x.Operator {
		case "-":
			return func(e *Env) float64 { return -a(e) }, true
		case "+":
			return a, true
		}
	case *ast.BinaryNode:
		a, ok1 := c.number(x.Left)
		b, ok2 := c.number(x.Right)
		if !ok1 || !ok2 {
			return nil, false
		}
		switch x.Operator {
		case "+":
			return func(e *Env) float64 { return a(e) + b(e) }, true
		case "-":
			return func(e *Env) float64 { return a(e) - b(e) }, true
		case "*":
			return func(e *Env) float64 { return a(e) * b(e) }, true
		case "/":
			return func(e *Env) float64 { return a(e) / b(e) }, true
		case "**", "^":
			return func(e *Env) float64 { return math.Pow(a(e), b(e)) }, true
		}
	case *ast.CallNode:
		id, ok := x.Callee.(*ast.IdentifierNode)
		if !ok {
			return nil, false
		}
		fn, ok := numFuncs[id.Value]
		if !ok || len(x.Arguments) != numFuncArity[id.Value] {
			return nil, false
		}
		return c.call(fn, x.Arguments)
	case *ast.BuiltinNode:
		switch x.Name {
		case "abs":
			return c.call(func(x, _ float64) float64 { return math.Abs(x) }, x.Arguments)
		case "ceil":
			return c.call(func(x, _ float64) float64 { return math.Ceil(x) }, x.Arguments)
		case "floor":
			return c.call(func(x, _ float64) float64 { return math.Floor(x) }, x.Arguments)
		case "round":
			return c.call(func(x, _ float64) float64 { return math.Round(x) }, x.Arguments)
		}
	case *ast.ConditionalNode:
		cond, ok := c.boolean(x.Cond)
		a, ok1 := c.number(x.Exp1)
		b, ok2 := c.number(x.Exp2)
		if ok && ok1 && ok2 {
			return func(e *Env) float64 {
				if cond(e) {
					return a(e)
				}
				return b(e)
			}, true
		}
	}
	return nil, false
}

func (c closureCompiler) call(fn func(x, y float64) float64, args []ast.Node) (numFn, bool) {
	switch len(args) {
	case 1:
		a, ok := c.number(args[0])
		if !ok {
			return nil, false
		}
		return func(e *Env) float64 { return fn(a(e), 0) }, true
	case 2:
		a, ok1 := c.number(args[0])
		b, ok2 := c.number(args[1])
		if !ok1 || !ok2 {
			return nil, false
		}
		return func(e *Env) float64 { return fn(a(e), b(e)) }, true
	}
	return nil, false
}

func (c closureCompiler) str(n ast.Node) (strFn, bool) {
	switch x := n.(type) {
	case *ast.StringNode:
		s := x.Value
		return func(*Env) string { return s }, true
	case *ast.ConstantNode:
		if s, ok := x.Value.(string); ok {
			return func(*Env) string { return s }, true
		}
	case *ast.IdentifierNode:
		switch x.Value {
		case "sensor":
			return func(e *Env) string { return e.R.Sensor }, true
		case "metric":
			return func(e *Env) string { return e.R.Metric }, true
		case "unit":
			return func(e *Env) string { return e.R.Unit }, true
		}
	case *ast.MemberNode:
		id, ok := x.Node.(*ast.IdentifierNode)
		key, ok2 := x.Property.(*ast.StringNode)
		if ok && ok2 && id.Value == "meta" && !x.Method {
			k := key.Value
			return func(e *Env) string { return e.Meta[k] }, true
		}
	case *ast.ChainNode:
		return c.str(x.Node)
	}
	return nil, false
}

func (c closureCompiler) boolean(n ast.Node) (boolFn, bool) {
	switch x := n.(type) {
	case *ast.BoolNode:
		v := x.Value
		return func(*Env) bool { return v }, true
	case *ast.ConstantNode:
		if v, ok := x.Value.(bool); ok {
			return func(*Env) bool { return v }, true
		}
	case *ast.UnaryNode:
		if x.Operator == "!" || x.Operator == "not" {
			a, ok := c.boolean(x.Node)
			if ok {
				return func(e *Env) bool { return !a(e) }, true
			}
		}
	case *ast.ConditionalNode:
		cond, ok := c.boolean(x.Cond)
		a, ok1 := c.boolean(x.Exp1)
		b, ok2 := c.boolean(x.Exp2)
		if ok && ok1 && ok2 {
			return func(e *Env) bool {
				if cond(e) {
					return a(e)
				}
				return b(e)
			}, true
		}
	case *ast.BinaryNode:
		switch x.Operator {
		case "&&", "and", "||", "or":
			a, ok1 := c.boolean(x.Left)
			b, ok2 := c.boolean(x.Right)
			if !ok1 || !ok2 {
				return nil, false
			}
			if x.Operator == "&&" || x.Operator == "and" {
				return func(e *Env) bool { return a(e) && b(e) }, true
			}
			return func(e *Env) bool { return a(e) || b(e) }, true
		case "==", "!=", "<", "<=", ">", ">=":
			if a, ok := c.number(x.Left); ok {
				if b, ok := c.number(x.Right); ok {
					return compare(x.Operator, a, b), true
				}
			}
			if a, ok := c.str(x.Left); ok {
				if b, ok := c.str(x.Right); ok {
					return compare(x.Operator, a, b), true
				}
			}
		case "in":
			return c.in(x.Left, x.Right)
		case "startsWith", "endsWith", "contains":
			a, ok1 := c.str(x.Left)
			b, ok2 := c.str(x.Right)
			if !ok1 || !ok2 {
				return nil, false
			}
			switch x.Operator {
			case "startsWith":
				return func(e *Env) bool { return strings.HasPrefix(a(e), b(e)) }, true
			case "endsWith":
				return func(e *Env) bool { return strings.HasSuffix(a(e), b(e)) }, true
			}
			return func(e *Env) bool { return strings.Contains(a(e), b(e)) }, true
		}
	}
	return nil, false
}

// in compiles `x in [...]` for a list of string or number constants.
func (c closureCompiler) in(left, right ast.Node) (boolFn, bool) {
	var elems []any
	switch r := right.(type) {
	case *ast.ConstantNode:
		switch v := r.Value.(type) {
		case map[string]struct{}:
			if a, ok := c.str(left); ok {
				return func(e *Env) bool { _, ok := v[a(e)]; return ok }, true
			}
			return nil, false
		case map[int]struct{}:
			for n := range v {
				elems = append(elems, n)
			}
		case []any:
			elems = v
		default:
			return nil, false
		}
	case *ast.ArrayNode:
		for _, n := range r.Nodes {
			switch x := n.(type) {
			case *ast.StringNode:
				elems = append(elems, x.Value)
			case *ast.IntegerNode:
				elems = append(elems, x.Value)
			case *ast.FloatNode:
				elems = append(elems, x.Value)
			default:
				return nil, false
			}
		}
	default:
		return nil, false
	}
	strs := map[string]struct{}{}
	var nums []float64
	for _, el := range elems {
		if s, ok := el.(string); ok {
			strs[s] = struct{}{}
		} else if f, err := toFloat(el); err == nil {
			nums = append(nums, f)
		} else {
			return nil, false
		}
	}
	if a, ok := c.str(left); ok && len(nums) == 0 {
		return func(e *Env) bool { _, ok := strs[a(e)]; return ok }, true
	}
	if a, ok := c.number(left); ok && len(strs) == 0 {
		return func(e *Env) bool {
			v := a(e)
			for _, n := range nums {
				if v == n {
					return true
				}
			}
			return false
		}, true
	}
	return nil, false
}

// compare is a comparison of two numbers or two strings, made once into a
// closure so that evaluating it does not switch on the operator.
func compare[T cmp.Ordered](op string, a, b func(*Env) T) boolFn {
	switch op {
	case "==":
		return func(e *Env) bool { return a(e) == b(e) }
	case "!=":
		return func(e *Env) bool { return a(e) != b(e) }
	case "<":
		return func(e *Env) bool { return a(e) < b(e) }
	case "<=":
		return func(e *Env) bool { return a(e) <= b(e) }
	case ">":
		return func(e *Env) bool { return a(e) > b(e) }
	}
	return func(e *Env) bool { return a(e) >= b(e) }
}
