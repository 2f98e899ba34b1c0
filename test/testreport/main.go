// Command testreport reads `go test -json` on stdin and prints what a person
// reading CI needs: each package's closing line (ok, FAIL, no test files),
// the full output of every failed test, and at the end the list of skipped
// tests with their reasons and how many there were. Go's plain output shows
// none of the skips of a passing package; this makes them visible.
//
//	go test -race -count=1 -json ./... | go run ./test/testreport
//
// It exits 1 when a test or package failed, or when the input ends without
// any result.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type skip struct{ pkg, test, reason string }

func main() {
	failed, err := report(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(1)
	}
	if failed {
		os.Exit(1)
	}
}

// report copies the summary of the event stream in to w and reports
// whether anything failed.
func report(in io.Reader, w io.Writer) (failed bool, err error) {
	out := map[string][]string{} // package + "\x00" + test -> output lines
	var skips []skip
	results := 0
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Not an event (a build error printed by go itself): pass it on.
			fmt.Fprintln(w, string(line))
			continue
		}
		key := e.Package + "\x00" + e.Test
		switch e.Action {
		case "output", "build-output":
			if e.Test == "" {
				if t := strings.TrimSpace(e.Output); t != "PASS" && t != "" && !strings.HasPrefix(t, "=== ") {
					fmt.Fprint(w, e.Output)
				}
				continue
			}
			out[key] = append(out[key], e.Output)
		case "pass":
			if e.Test == "" {
				results++
			}
			delete(out, key)
		case "fail", "build-fail":
			failed = true
			if e.Test == "" {
				results++
				continue
			}
			for _, l := range out[key] {
				fmt.Fprint(w, l)
			}
			delete(out, key)
		case "skip":
			if e.Test == "" {
				results++ // a package without tests
				continue
			}
			skips = append(skips, skip{e.Package, e.Test, reason(out[key])})
			delete(out, key)
		}
	}
	if err := sc.Err(); err != nil {
		return true, err
	}
	sort.Slice(skips, func(i, j int) bool {
		if skips[i].pkg != skips[j].pkg {
			return skips[i].pkg < skips[j].pkg
		}
		return skips[i].test < skips[j].test
	})
	fmt.Fprintf(w, "\nskipped tests: %d\n", len(skips))
	for _, s := range skips {
		fmt.Fprintf(w, "  SKIP %s %s: %s\n", s.pkg, s.test, s.reason)
	}
	if results == 0 {
		return true, fmt.Errorf("no test results on stdin (is it the output of go test -json?)")
	}
	return failed, nil
}

// reason is what a skipped test logged, without the === RUN and --- SKIP
// lines go test adds around it.
func reason(lines []string) string {
	var parts []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		parts = append(parts, t)
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return strings.Join(parts, " ")
}
