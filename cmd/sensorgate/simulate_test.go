//go:build !nosimulate

package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sensorgate/sensorgate/simulator/load"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// simStartBroker starts an in-process MQTT broker on a free port.
func simStartBroker(t *testing.T) string {
	t.Helper()
	return mqtttest.StartBroker(t, mqtttest.BrokerOptions{}).URL()
}

func TestCmdSimulate(t *testing.T) {
	url := simStartBroker(t)
	truth := filepath.Join(t.TempDir(), "truth.json")
	var stdout, stderr bytes.Buffer
	code := cmdSimulate(context.Background(), []string{"--broker", url, "--sensors", "5", "--rate", "400",
		"--duration", "1500ms", "--qos", "1", "--format", "senml", "--seed", "7", "--truth", truth, "--metrics", "temperature,humidity"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, &stdout, &stderr)
	}
	if !strings.Contains(stdout.String(), "simulate: sent=600 errors=0 ") || !strings.Contains(stdout.String(), "values=1200") {
		t.Fatalf("stdout: %s", &stdout)
	}
	if !strings.Contains(stderr.String(), "simulate: t=1s sent=") {
		t.Fatalf("no progress line on stderr: %s", &stderr)
	}
	tr, err := load.ReadTruth(truth)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Messages != 600 || tr.Total.Count != 1200 || len(tr.Sensors) != 5 || tr.Format != "senml" || tr.Seed != 7 {
		t.Fatalf("truth %+v", tr)
	}
	if a := tr.Sensors["sim-0005"]["temperature"]; a.Count != 120 || a.Min > a.Max {
		t.Fatalf("sim-0005 temperature %+v", a)
	}
	// One custom metric per message, over the raw QoS 0 publisher.
	stdout.Reset()
	code = cmdSimulate(context.Background(), []string{"--broker", url, "--sensors", "2", "--rate", "100", "--duration", "1s",
		"--metrics", "co2", "--truth", truth, "--quiet"}, &stdout, &stderr)
	if code != 0 || !strings.Contains(stdout.String(), "sent=100 errors=0") || !strings.Contains(stdout.String(), "values=100 ") {
		t.Fatalf("exit %d: %s %s", code, &stdout, &stderr)
	}
	if tr, err = load.ReadTruth(truth); err != nil || tr.Sensors["sim-0001"]["co2"].Count != 50 || tr.Sensors["sim-0001"]["co2"].Min < 400 {
		t.Fatalf("co2 truth %+v %v", tr, err)
	}
}

func TestCmdSimulateUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, 0, "Usage: sensorgate simulate"},
		{[]string{"--nope"}, 2, "flag provided but not defined"},
		{[]string{"--broker", "tcp://x:1", "--format", "xml"}, 2, "--format: unknown format"},
		{[]string{"--broker", "tcp://x:1", "--qos", "3"}, 2, "--qos"},
		{[]string{"--rate", "0"}, 2, "--broker: is required"},
		{[]string{"--broker", "tcp://x:1", "--duplicate", "2"}, 2, "--duplicate: must be between 0 and 1"},
		{[]string{"--broker", "tcp://127.0.0.1:1", "--duration", "1s", "--quiet"}, 1, "simulate: load: connect"},
		{[]string{"--broker", "tcp://x:1", "--metrics", "a,,b"}, 2, "--metrics: empty metric name"},
		{[]string{"--broker", "tcp://x:1", "--metrics", "a.b"}, 2, "--metrics: metric name"},
	} {
		var stdout, stderr bytes.Buffer
		code := cmdSimulate(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String()+stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, want %d with %q\nstdout: %s\nstderr: %s", tc.args, code, tc.code, tc.want, &stdout, &stderr)
		}
	}
}
