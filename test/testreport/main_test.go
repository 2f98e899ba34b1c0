package main

import (
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	in := `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"p","Test":"TestA","Output":"    a_test.go:3: needs mosquitto: apt-get install mosquitto\n"}
{"Action":"output","Package":"p","Test":"TestA","Output":"--- SKIP: TestA (0.00s)\n"}
{"Action":"skip","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:9: boom\n"}
{"Action":"fail","Package":"p","Test":"TestB"}
{"Action":"output","Package":"p","Test":"TestC","Output":"    c_test.go:1: quiet\n"}
{"Action":"pass","Package":"p","Test":"TestC"}
{"Action":"output","Package":"p","Output":"PASS\n"}
{"Action":"output","Package":"p","Output":"FAIL\tp\t0.01s\n"}
{"Action":"fail","Package":"p"}
`
	var b strings.Builder
	failed, err := report(strings.NewReader(in), &b)
	if err != nil || !failed {
		t.Fatalf("failed %v err %v, want a failure and no error", failed, err)
	}
	got := b.String()
	for _, want := range []string{"b_test.go:9: boom", "FAIL\tp\t0.01s", "skipped tests: 1", "SKIP p TestA: a_test.go:3: needs mosquitto: apt-get install mosquitto"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "quiet") || strings.Contains(got, "PASS\n") {
		t.Errorf("output has a passing test's log or a PASS line:\n%s", got)
	}
	if _, err := report(strings.NewReader(""), &b); err == nil {
		t.Error("empty input: no error")
	}
}
