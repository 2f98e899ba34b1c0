package test

import (
	"bufio"
	"bytes"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/sensorgate/sensorgate/"

// Size limits of docs/architecture.md: past them a file or a package has
// stopped being one thing, and it is split before it grows further.
const (
	maxFileLines    = 800
	maxPackageLines = 3000
)

// importRules are the arrows docs/architecture.md forbids: a package (and,
// unless exact, any package under it) must not import the listed ones (or
// any under them; a trailing slash bans only the packages under it).
var importRules = []struct {
	from   string
	exact  bool
	banned []string
	why    string
}{
	{"ingest", true, []string{"ingest/", "rules", "buffer", "uplink", "drivers", "simulator", "cmd", "internal", "test"}, "the domain root imports no package of ours"},
	{"ingest", false, []string{"rules", "buffer", "uplink", "drivers", "simulator", "cmd"}, "the sources sit below the rest of the pipeline"},
	{"uplink", false, []string{"ingest/"}, "the uplink may use only the domain package of ingest"},
	{"buffer", false, []string{"rules", "uplink", "ingest/"}, "the outbox is byte-only"},
	{"rules", false, []string{"buffer", "uplink", "drivers", "ingest/mqttsub", "ingest/broker", "ingest/decode"}, "rules sees readings, never where they came from or where they go"},
	{"internal", false, []string{"rules", "buffer", "uplink", "drivers", "simulator", "cmd", "ingest/"}, "shared plumbing depends on nothing but the domain"},
	{"simulator", false, []string{"uplink", "buffer", "rules"}, "a source"},
	{"drivers", false, []string{"uplink", "buffer", "rules", "ingest/"}, "a source"},
}

// TestLayout holds the cut docs/architecture.md describes: file and package
// sizes, and the import arrows that must not exist.
func TestLayout(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	pkgLines := map[string]int{}
	imports := map[string]map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if generated(src) {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		lines := bytes.Count(src, []byte("\n"))
		if lines > maxFileLines {
			t.Errorf("%s: %d lines, over %d: split it", rel, lines, maxFileLines)
		}
		pkg := filepath.ToSlash(filepath.Dir(rel))
		if strings.HasSuffix(path, "_test.go") {
			return nil
		}
		pkgLines[pkg] += lines
		f, err := parser.ParseFile(token.NewFileSet(), path, src, parser.ImportsOnly)
		if err != nil {
			return err
		}
		if imports[pkg] == nil {
			imports[pkg] = map[string]bool{}
		}
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			if strings.HasPrefix(p, module) {
				imports[pkg][strings.TrimPrefix(p, module)] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgLines) < 20 {
		t.Fatalf("found only %d packages under %s: the walk is wrong", len(pkgLines), root)
	}
	for pkg, n := range pkgLines {
		if n > maxPackageLines {
			t.Errorf("package %s: %d non-test, non-generated lines, over %d", pkg, n, maxPackageLines)
		}
	}
	var pkgs []string
	for p := range imports {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, r := range importRules {
		for _, pkg := range pkgs {
			if pkg != r.from && (r.exact || !strings.HasPrefix(pkg, r.from+"/")) {
				continue
			}
			for imp := range imports[pkg] {
				for _, b := range r.banned {
					if strings.HasSuffix(b, "/") && strings.HasPrefix(imp, b) ||
						imp == b || strings.HasPrefix(imp, b+"/") {
						if !r.exact && (strings.HasPrefix(imp, r.from+"/") || imp == r.from) {
							continue // a package's own sub-packages
						}
						t.Errorf("%s imports %s: %s", pkg, imp, r.why)
					}
				}
			}
		}
	}
}

// generated reports whether src carries Go's generated-code marker.
func generated(src []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(src))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "package ") {
			return false
		}
		if strings.HasPrefix(line, "// Code generated") && strings.HasSuffix(line, "DO NOT EDIT.") {
			return true
		}
	}
	return false
}
