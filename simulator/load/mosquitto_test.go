package load

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// startMosquitto runs Debian's mosquitto on a free port and returns its
// URL; the test is skipped without the binary (and fails under CI=true).
func startMosquitto(tb testing.TB) string {
	tb.Helper()
	return mqtttest.StartMosquitto(tb, mqtttest.MosquittoConfig{Conf: "allow_anonymous true\nmax_queued_messages 100000\n"}).URL()
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
	res, err := Run(context.Background(), Config{Broker: url, Sensors: 1000, Rate: 20000, Duration: 2 * time.Second, QoS: 0, Seed: 1, TruthWindow: testWindow})
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
