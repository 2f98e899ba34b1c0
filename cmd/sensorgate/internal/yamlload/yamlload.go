package yamlload

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sensorgate/sensorgate/ingest"
)

// Error is one problem in a config file, located by key path and line.
type Error struct {
	Path string // "rules.windows[1].size"; empty for document-level errors
	Line int    // 1-based; 0 when unknown
	Msg  string
}

func (e Error) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	return b.String()
}

// Errors is every problem found in one config file, in line order.
type Errors []Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Doc is a parsed document plus the key-path index used to put line
// numbers on errors found after decoding.
type Doc struct {
	root  *yaml.Node
	lines map[string]int // key path -> line of its key (or item)
	// valueLines maps a line to the path of the first scalar value on it,
	// to translate yaml's line-only type errors into key paths.
	valueLines map[int]string
}

// Parse parses data and expands ${VAR} references in scalar values with
// getenv. A missing variable is an error (an empty secret is worse than a
// refusal to start); ${VAR:-default} supplies a default.
func Parse(data []byte, getenv func(string) (string, bool)) (*Doc, Errors) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Errors{yamlSyntaxError(err)}
	}
	d := &Doc{root: &root, lines: map[string]int{}, valueLines: map[int]string{}}
	if root.Kind == 0 { // empty file
		return d, nil
	}
	var errs Errors
	var big *Error // the first mapping too large to decode
	pairs := 0
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			// yaml's decoder compares every key of a mapping with every
			// other: 100,000 keys (1.2 MB) took 38 s.
			k := len(n.Content) / 2
			pairs += k * (k - 1) / 2
			switch {
			case big != nil:
			case k > MaxMappingKeys:
				big = &Error{Path: path, Line: n.Line, Msg: fmt.Sprintf("mapping of %d keys: at most %d keys a mapping", k, MaxMappingKeys)}
			case pairs > maxKeyPairs:
				big = &Error{Path: path, Line: n.Line, Msg: fmt.Sprintf("config: mappings too large to decode in all (the equivalent of more than ten of %d keys)", MaxMappingKeys)}
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := joinKey(path, k.Value)
				if _, dup := d.lines[p]; dup {
					errs = append(errs, Error{Path: p, Line: k.Line, Msg: "duplicate key"})
				}
				d.lines[p] = k.Line
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := path + "[" + strconv.Itoa(i) + "]"
				d.lines[p] = c.Line
				walk(c, p)
			}
		case yaml.ScalarNode:
			if _, seen := d.valueLines[n.Line]; !seen {
				d.valueLines[n.Line] = path
			}
			if strings.Contains(n.Value, "${") {
				v, err := expandEnv(n.Value, getenv)
				if err != nil {
					errs = append(errs, Error{Path: path, Line: n.Line, Msg: err.Error()})
				}
				n.Value = v
				if n.Tag == "!!str" || n.Tag == "" {
					// The expanded text decides the type, as if written inline:
					// port: ${PORT} is an int.
					n.Tag = ""
					n.Style = 0
					var probe yaml.Node
					if yaml.Unmarshal([]byte(v), &probe) == nil && len(probe.Content) == 1 && probe.Content[0].Kind == yaml.ScalarNode {
						n.Tag = probe.Content[0].Tag
					} else {
						n.Tag = "!!str"
					}
				}
			}
		case yaml.AliasNode:
			// Aliases share their anchor's values; the anchor was walked.
		}
	}
	walk(&root, "")
	if big != nil {
		return nil, Errors{*big}
	}
	return d, errs
}

// MaxMappingKeys bounds the keys of one mapping, and maxKeyPairs the key
// comparisons of all (some 40 ms of decoding): ten mappings of the
// largest size. A real config's largest mappings (tags, metrics) have tens.
const (
	MaxMappingKeys = 1000
	maxKeyPairs    = 10 * MaxMappingKeys * (MaxMappingKeys - 1) / 2
)

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

func expandEnv(s string, getenv func(string) (string, bool)) (string, error) {
	var missing []string
	out := envRef.ReplaceAllStringFunc(s, func(m string) string {
		g := envRef.FindStringSubmatch(m)
		if v, ok := getenv(g[1]); ok {
			return v
		}
		if g[2] != "" {
			return g[3]
		}
		missing = append(missing, g[1])
		return ""
	})
	if len(missing) > 0 {
		return out, fmt.Errorf("environment variable %s is not set (use ${%s:-default} for a default)", missing[0], missing[0])
	}
	if strings.Contains(out, "${") {
		return out, errors.New("malformed ${...} reference (want ${NAME} or ${NAME:-default})")
	}
	return out, nil
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func yamlSyntaxError(err error) Error {
	msg := err.Error()
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Error{Line: line, Msg: "syntax error: " + m[2]}
	}
	return Error{Msg: strings.TrimPrefix(msg, "yaml: ")}
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Decode checks d against out's type for unknown keys, then decodes it into
// out. out must be a pointer to a struct.
func (d *Doc) Decode(out any) Errors {
	if d.root.Kind == 0 {
		return nil
	}
	var errs Errors
	k := keyCheck{budget: MaxNodes}
	k.check(d.root, reflect.TypeOf(out), "", &errs)
	if k.budget < 0 {
		// The tree an alias bomb expands to is what decoding would build
		// too: stop before it, with the reason instead of a hung validate.
		return Errors{{Msg: fmt.Sprintf("config: too many nodes after alias expansion (> %d): a YAML alias bomb?", MaxNodes)}}
	}
	if err := d.root.Decode(out); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			errs = append(errs, Error{Msg: err.Error()})
		} else {
			for _, s := range te.Errors {
				errs = append(errs, d.typeError(s))
			}
		}
	}
	return errs
}

var (
	typeErrLineRe = regexp.MustCompile(`^line (\d+): (.*)$`)
	unmarshalRe   = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (.+)$")
)

// typeError turns one of yaml's type errors into a Error with a key
// path and a message an operator understands.
func (d *Doc) typeError(s string) Error {
	m := typeErrLineRe.FindStringSubmatch(s)
	if m == nil {
		return Error{Msg: s}
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[2]
	if strings.Contains(msg, "not found in type") {
		// The key check already reported the unknown key with its path.
		return Error{}
	}
	if u := unmarshalRe.FindStringSubmatch(msg); u != nil {
		msg = fmt.Sprintf("must be %s, got %q", describeGoType(u[3]), u[2])
	}
	return Error{Path: d.valueLines[line], Line: line, Msg: msg}
}

func describeGoType(t string) string {
	switch {
	case t == "time.Duration":
		return "a duration like 10s or 1m30s"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "uint"):
		return "a whole number >= 0"
	case strings.HasPrefix(t, "int"):
		return "a whole number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	}
	return "of type " + t
}

var (
	durationType    = reflect.TypeOf(time.Duration(0))
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
)

// MaxNodes bounds the nodes the key check visits through aliases,
// counting every node an alias points to each time it is reached. Aliases
// are followed so that keys under an anchor are checked where they are
// used, and a handful of nested aliases ("billion laughs") expand a 1 KB
// file to billions of nodes. Nodes written out in the file do not count:
// their number is the file's size, which the caller bounds. A config that
// shares a block of ten fields among a thousand rules visits 20,000.
const MaxNodes = 100_000

// keyCheck walks a document against a Go type with a budget of nodes
// visited through aliases.
type keyCheck struct {
	budget  int // nodes left; < 0 once exceeded
	aliased int // depth of aliases being followed
}

// check reports every mapping key in n that t has no field for. Types
// with their own UnmarshalYAML are trusted to check themselves.
func (kc *keyCheck) check(n *yaml.Node, t reflect.Type, path string, errs *Errors) {
	if kc.budget < 0 {
		return
	}
	if kc.aliased > 0 {
		if kc.budget--; kc.budget < 0 {
			return
		}
	}
	for t.Kind() == reflect.Pointer {
		if t.Implements(unmarshalerType) {
			return
		}
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || t == durationType {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			kc.check(c, t, path, errs)
		}
	case yaml.AliasNode:
		kc.aliased++
		kc.check(n.Alias, t, path, errs)
		kc.aliased--
	case yaml.MappingNode:
		switch t.Kind() {
		case reflect.Struct:
			fields := yamlFields(t)
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := joinKey(path, k.Value)
				if k.Value == "<<" { // merge key: one mapping or a list of them
					if m := resolveAlias(v); m.Kind == yaml.SequenceNode {
						for _, c := range m.Content {
							kc.check(c, t, path, errs)
						}
					} else {
						kc.check(v, t, path, errs)
					}
					continue
				}
				ft, ok := fields[k.Value]
				if !ok {
					*errs = append(*errs, Error{Path: p, Line: k.Line, Msg: "unknown key" + suggest(k.Value, fields)})
					continue
				}
				kc.check(v, ft, p, errs)
			}
		case reflect.Map:
			for i := 0; i+1 < len(n.Content); i += 2 {
				kc.check(n.Content[i+1], t.Elem(), joinKey(path, n.Content[i].Value), errs)
			}
		}
	case yaml.SequenceNode:
		if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			for i, c := range n.Content {
				kc.check(c, t.Elem(), path+"["+strconv.Itoa(i)+"]", errs)
			}
		}
	}
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// yamlFields maps the yaml key names of struct t (following ",inline") to
// their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(","+opts+",", ",inline,") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range yamlFields(ft) {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name) // yaml.v3's default
		}
		out[name] = f.Type
	}
	return out
}

// suggest names the closest known key when the unknown one looks like a typo.
func suggest(key string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return " (known keys: " + strings.Join(names, ", ") + ")"
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Locate turns validation errors (ingest.FieldError trees with full paths)
// into Errors with the line of the nearest key path the file has.
func (d *Doc) Locate(err error) Errors {
	var out Errors
	for _, e := range ingest.FlattenErrors(err) {
		var fe *ingest.FieldError
		if errors.As(e, &fe) {
			out = append(out, Error{Path: fe.Path, Line: d.lineOf(fe.Path), Msg: fe.Err.Error()})
			continue
		}
		out = append(out, Error{Msg: e.Error()})
	}
	return out
}

// lineOf returns the line of path, or of its longest prefix that the file
// has (a missing key is reported where its parent is).
func (d *Doc) lineOf(path string) int {
	for p := path; p != ""; {
		if l, ok := d.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

// Sort orders errors by line (unknown lines last) and drops empties
// and duplicates.
func Sort(es Errors) Errors {
	out := es[:0]
	seen := map[Error]bool{}
	for _, e := range es {
		if e == (Error{}) || seen[e] {
			continue
		}
		seen[e] = true
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool {
		li, lj := out[i].Line, out[j].Line
		if li == 0 || lj == 0 {
			return li != 0 && lj == 0
		}
		return li < lj
	})
	return out
}
