package test

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// TestReloadOnSIGHUP: a bad config is rejected and the gateway keeps running;
// a good one replaces the pipeline (new window size) while the outbox and
// everything in it stay.
func TestReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	local := startBroker(t)
	upstream := startBroker(t)
	col := collect(upstream, "up/#")
	mport := mqtttest.FreePort(t)
	cfgPath := writeConfig(t, dir, e2eConfig(dir, local.URL(), upstream.URL(), mport, "1h"))
	g := startGateway(t, cfgPath)
	waitIngesting(t, local.URL(), mport)
	pubc := client(t, local.URL(), "reload-sensors")
	s := newSender(4)
	pub := func(topic string, p []byte) { publish(t, pubc, topic, 1, p) }
	base := ingested(t, mport)
	for r := 0; r < 3; r++ {
		s.round(t, pub, 5)
	}
	mqtttest.WaitFor(t, 20*time.Second, func() bool { return ingested(t, mport) >= base+float64(s.total) }, "readings ingested")

	// A broken config: rejected, logged, nothing changes.
	if err := os.WriteFile(cfgPath, []byte("gateway: {id: gw-e2e}\nrules: {windows: [{name: w, size: nope}]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = g.cmd.Process.Signal(syscall.SIGHUP)
	g.waitLog("config reload rejected", 20*time.Second)
	if len(col.summaries()) != 0 {
		t.Fatal("a rejected reload flushed windows")
	}

	// The same windows under a changed config (another shutdown grace): the
	// open 1h windows are handed over, not flushed, and keep counting.
	same := strings.Replace(e2eConfig(dir, local.URL(), upstream.URL(), mport, "1h"), "shutdown_grace: 10s", "shutdown_grace: 9s", 1)
	if err := os.WriteFile(cfgPath, []byte(same), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = g.cmd.Process.Signal(syscall.SIGHUP)
	mqtttest.WaitFor(t, 20*time.Second, func() bool { return strings.Count(g.logs(), "config reloaded") == 1 }, "second reload")
	waitIngesting(t, local.URL(), mport)
	before := s.total
	base = ingested(t, mport)
	for r := 0; r < 2; r++ {
		s.round(t, pub, 5)
	}
	mqtttest.WaitFor(t, 20*time.Second, func() bool { return ingested(t, mport) >= base+float64(s.total-before) }, "readings ingested")
	if n := len(col.summaries()); n != 0 {
		t.Fatalf("%d summaries after a reload that kept the windows", n)
	}

	// Another window size: the old pipeline's 1h windows are flushed, once
	// per key and covering readings from both sides of the last reload; the
	// new one runs 1s windows.
	writeConfig(t, dir, e2eConfig(dir, local.URL(), upstream.URL(), mport, "1s"))
	_ = g.cmd.Process.Signal(syscall.SIGHUP)
	mqtttest.WaitFor(t, 20*time.Second, func() bool { return strings.Count(g.logs(), "config reloaded") == 2 }, "third reload")
	mqtttest.WaitFor(t, 20*time.Second, func() bool { return countOf(col.summaries()) >= s.total }, "flushed summaries of the old windows")
	perKey := map[key]int{}
	for _, sm := range col.summaries() {
		if sm.Sensor != probeSensor {
			perKey[key{sm.Sensor, sm.Metric}]++
		}
	}
	for k, n := range perKey {
		if n != 1 {
			t.Errorf("%v: %d summaries of the 1h window, want 1 (the window was cut by a reload)", k, n)
		}
	}
	s.check(t, col.summaries())
	waitIngesting(t, local.URL(), mport)
	for r := 0; r < 3; r++ {
		s.round(t, pub, 5)
		time.Sleep(50 * time.Millisecond)
	}
	mqtttest.WaitFor(t, 30*time.Second, func() bool { return countOf(col.summaries()) >= s.total }, "summaries after the reload")
	s.check(t, col.summaries())
	var short int
	for _, sm := range col.summaries() {
		if sm.End-sm.Start == int64(time.Second) {
			short++
		}
	}
	if short == 0 {
		t.Error("no 1s windows after the reload")
	}
	g.terminate()
	if strings.Count(g.logs(), "sensorgate starting") != 1 {
		t.Error("the process restarted instead of reloading")
	}
}
