package yamlload

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
)

type testWindow struct {
	Size time.Duration `yaml:"size"`
}

type testRule struct {
	ID     string     `yaml:"id"`
	Above  float64    `yaml:"above"`
	Window testWindow `yaml:"window"`
}

type testCfg struct {
	Name  string            `yaml:"name"`
	Port  int               `yaml:"port"`
	Rules []testRule        `yaml:"rules"`
	Tags  map[string]string `yaml:"tags"`
	Pass  string            `yaml:"password"`
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoaderReportsTypoAndWrongTypeWithLines(t *testing.T) {
	src := `name: gw
port: 1883
rules:
  - id: hot
    above: 30
  - id: cold
    abvoe: 5
    above: chilly
    window:
      size: ten
`
	d, errs := Parse([]byte(src), env(nil))
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	var c testCfg
	errs = Sort(d.Decode(&c))
	want := []string{
		`rules[1].abvoe: unknown key (did you mean "above"?) (line 7)`,
		`rules[1].above: must be a number, got "chilly" (line 8)`,
		`rules[1].window.size: must be a duration like 10s or 1m30s, got "ten" (line 10)`,
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors:\n%v", len(errs), errs)
	}
	for i, w := range want {
		if errs[i].Error() != w {
			t.Errorf("error %d:\n got %s\nwant %s", i, errs[i], w)
		}
	}
}

func TestLoaderEnvExpansion(t *testing.T) {
	src := "password: ${PW}\nport: ${PORT}\nname: ${NAME:-gw-default}\n"
	d, errs := Parse([]byte(src), env(map[string]string{"PW": "a#b: c", "PORT": "8883"}))
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	var c testCfg
	if errs := d.Decode(&c); len(errs) != 0 {
		t.Fatal(errs)
	}
	// A secret with YAML syntax in it stays a plain string.
	if c.Pass != "a#b: c" || c.Port != 8883 || c.Name != "gw-default" {
		t.Fatalf("%+v", c)
	}
	_, errs = Parse([]byte("name: x\npassword: ${MISSING}\n"), env(nil))
	if len(errs) != 1 || errs[0].Line != 2 || errs[0].Path != "password" || !strings.Contains(errs[0].Msg, "MISSING is not set") {
		t.Fatalf("missing env: %v", errs)
	}
}

func TestLoaderSyntaxError(t *testing.T) {
	_, errs := Parse([]byte("name: gw\nrules:\n  - id: a\n   bad: [\n"), env(nil))
	if len(errs) != 1 || errs[0].Line == 0 || !strings.Contains(errs[0].Msg, "syntax error") {
		t.Fatalf("%v", errs)
	}
}

func TestLoaderDuplicateKeyAndUnknownTopLevel(t *testing.T) {
	d, errs := Parse([]byte("name: a\nname: b\n"), env(nil))
	if len(errs) == 0 || errs[0].Msg != "duplicate key" || errs[0].Line != 2 {
		t.Fatalf("%v", errs)
	}
	d, _ = Parse([]byte("nmae: a\nzzzzzzzz: 1\n"), env(nil))
	var c testCfg
	errs = Sort(d.Decode(&c))
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), `did you mean "name"`) || !strings.Contains(errs[1].Msg, "known keys:") {
		t.Fatalf("%v", errs)
	}
}

func TestLocateValidationErrors(t *testing.T) {
	d, _ := Parse([]byte("name: gw\nrules:\n  - id: a\n    window:\n      size: 0s\n  - id: b\n"), env(nil))
	err := ingest.PrefixErrors("rules[0]", ingest.FieldErrorf("window.size", "must be > 0"))
	err = errors.Join(err, ingest.PrefixErrors("rules[1]", ingest.FieldErrorf("window.size", "is required")))
	errs := d.Locate(err)
	if errs[0].Error() != "rules[0].window.size: must be > 0 (line 5)" {
		t.Fatal(errs[0])
	}
	// A missing key is reported at its nearest parent.
	if errs[1].Error() != "rules[1].window.size: is required (line 6)" {
		t.Fatal(errs[1])
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("name: gw\nport: 1\nrules: [{id: a, above: 1, window: {size: 1s}}]\n"))
	f.Add([]byte("a: &x {b: 1}\nc: *x\n<<: *x\n"))
	f.Add([]byte("password: ${PW:-x}\n"))
	f.Add([]byte("- [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, errs := Parse(data, env(map[string]string{"PW": "s"}))
		if len(errs) > 0 {
			return
		}
		var c testCfg
		for _, e := range d.Decode(&c) {
			_ = e.Error()
		}
	})
}

// billionLaughs is the classic alias bomb: nine levels of ten aliases each
// expand 1 KB of YAML to 10^9 strings.
const billionLaughs = `l: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]
l1: &a1 [*a0,*a0,*a0,*a0,*a0,*a0,*a0,*a0,*a0,*a0]
l2: &a2 [*a1,*a1,*a1,*a1,*a1,*a1,*a1,*a1,*a1,*a1]
l3: &a3 [*a2,*a2,*a2,*a2,*a2,*a2,*a2,*a2,*a2,*a2]
l4: &a4 [*a3,*a3,*a3,*a3,*a3,*a3,*a3,*a3,*a3,*a3]
l5: &a5 [*a4,*a4,*a4,*a4,*a4,*a4,*a4,*a4,*a4,*a4]
l6: &a6 [*a5,*a5,*a5,*a5,*a5,*a5,*a5,*a5,*a5,*a5]
l7: &a7 [*a6,*a6,*a6,*a6,*a6,*a6,*a6,*a6,*a6,*a6]
l8: &a8 [*a7,*a7,*a7,*a7,*a7,*a7,*a7,*a7,*a7,*a7]
l9: &a9 [*a8,*a8,*a8,*a8,*a8,*a8,*a8,*a8,*a8,*a8]
`

// The key check follows aliases, so a type as deep as the bomb walks all
// of it unless the walk is bounded.
func TestLoaderRefusesBillionLaughs(t *testing.T) {
	type deep [][][][][][][][][][]string
	var c struct {
		L  []string `yaml:"l"`
		L1 deep     `yaml:"l1"`
		L2 deep     `yaml:"l2"`
		L3 deep     `yaml:"l3"`
		L4 deep     `yaml:"l4"`
		L5 deep     `yaml:"l5"`
		L6 deep     `yaml:"l6"`
		L7 deep     `yaml:"l7"`
		L8 deep     `yaml:"l8"`
		L9 deep     `yaml:"l9"`
	}
	d, errs := Parse([]byte(billionLaughs), env(nil))
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	errs = d.Decode(&c)
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, "too many nodes after alias expansion (> 100000): a YAML alias bomb?") {
		t.Fatalf("got %v, want the alias bomb refused", errs)
	}
}

// Only expansion counts: a large document written out in full (its size
// is the caller's to bound) is checked whole, and so is one whose anchors
// are shared a modest number of times.
func TestLoaderLargePlainDocumentIsNoBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range MaxNodes {
		fmt.Fprintf(&b, "  - {id: r%d, above: 1}\n", i)
	}
	b.WriteString("  - &r {id: a, above: 1, window: {size: 1s}}\n")
	for range 1000 {
		b.WriteString("  - *r\n")
	}
	d, errs := Parse([]byte(b.String()), env(nil))
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	var c testCfg
	if errs := d.Decode(&c); len(errs) != 0 {
		t.Fatal(errs)
	}
	if len(c.Rules) != MaxNodes+1001 {
		t.Fatalf("decoded %d rules", len(c.Rules))
	}
}

// yaml's decoder is quadratic in the keys of a mapping: Parse refuses a
// mapping past MaxMappingKeys, and many mappings near it, before decoding.
func TestLoaderRefusesHugeMappings(t *testing.T) {
	one := func(keys int) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range keys {
			fmt.Fprintf(&b, "k%d: v, ", i)
		}
		b.WriteString("}")
		return b.String()
	}
	if _, errs := Parse([]byte("tags: "+one(MaxMappingKeys)+"\n"), env(nil)); len(errs) != 0 {
		t.Fatalf("a mapping at the limit: %v", errs)
	}
	for _, tc := range []struct{ doc, want string }{
		{"name: x\ntags: " + one(MaxMappingKeys+1) + "\n", "tags: mapping of 1001 keys: at most 1000 keys a mapping (line 2)"},
		{"rules:\n" + strings.Repeat("  - "+one(MaxMappingKeys)+"\n", 11), "rules[10]: config: mappings too large to decode in all"},
	} {
		d, errs := Parse([]byte(tc.doc), env(nil))
		if d != nil || len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
			t.Errorf("got %v, want %q", errs, tc.want)
		}
	}
}
