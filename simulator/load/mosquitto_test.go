package load

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const mosquittoBin = "/usr/sbin/mosquitto"

// startMosquitto runs Debian's mosquitto on a free port with a config in
// t.TempDir() and returns its URL; the test is skipped without the binary.
func startMosquitto(tb testing.TB) string {
	tb.Helper()
	if _, err := os.Stat(mosquittoBin); err != nil {
		tb.Skipf("interop test needs %s (apt-get install mosquitto): %v", mosquittoBin, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := tb.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n", port)), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(mosquittoBin, "-c", conf)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(end) {
			tb.Fatalf("mosquitto did not listen within 10s:\n%s", out.String())
		}
	}
	return "tcp://" + addr
}

// TestLoadTruthAgainstMosquitto publishes at 20,000 msg/s to a real
// mosquitto and checks that the truth matches what a plain subscriber
// counted. The achieved rate is logged, not asserted (BenchmarkLoad20k
// measures it).
func TestLoadTruthAgainstMosquitto(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	url := startMosquitto(t)
	sub := subscribe(t, url, FormatJSON)
	res, err := Run(context.Background(), Config{Broker: url, Sensors: 1000, Rate: 20000, Duration: 2 * time.Second, QoS: 0, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 40000 || res.Errors != 0 {
		t.Fatalf("sent %d errors %d", res.Sent, res.Errors)
	}
	sub.check(t, res.Truth)
	t.Logf("achieved %.1f msg/s (target 20000) over %v", res.Rate, res.Elapsed)
}

// BenchmarkLoad20k runs the load generator at 20,000 msg/s (QoS 0, JSON,
// 1,000 sensors) against mosquitto for 5 s per iteration and reports the
// achieved rate and its deviation from the target.
func BenchmarkLoad20k(b *testing.B) {
	url := startMosquitto(b)
	var rate float64
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	for range b.N {
		res, err := Run(context.Background(), Config{Broker: url, Sensors: 1000, Rate: 20000, Duration: 5 * time.Second, Seed: 1})
		if err != nil {
			b.Fatal(err)
		}
		rate = res.Rate
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(cpu.Seconds()/(float64(b.N)*0.1), "cpu-s/Mmsg")
	b.ReportMetric(rate, "msg/s")
	b.ReportMetric(100*(rate-20000)/20000, "%dev")
}
