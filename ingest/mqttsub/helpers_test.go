package mqttsub

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/decode"
	"github.com/sensorgate/sensorgate/test/leak"
)

// waitLimit bounds every wait on an event: a liveness limit for a hung
// test, never a timing check.
const waitLimit = 20 * time.Second

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testLogger logs to the test output when -v is given.
func testLogger(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return quietLogger()
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// running starts s.Run in the background and returns a stop function that
// cancels it and checks that Run returned nil.
func running(t *testing.T, s *Subscriber, out chan ingest.Reading) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

// collect reads n readings from out, failing after 20 s of silence.
func collect(t *testing.T, out <-chan ingest.Reading, n int) []ingest.Reading {
	t.Helper()
	var got []ingest.Reading
	for len(got) < n {
		select {
		case r := <-out:
			got = append(got, r)
		case <-time.After(20 * time.Second):
			t.Fatalf("got %d readings, want %d", len(got), n)
		}
	}
	return got
}

// checkNoLeak fails if goroutines started during the test are still running.
func checkNoLeak(t *testing.T) {
	t.Helper()
	leak.Check(t)
}

func jsonSub(topic string, qos byte, seg int) Subscription {
	return Subscription{Topic: topic, QoS: qos, Format: FormatJSON, JSON: jsonMapping(seg)}
}

func jsonMapping(seg int) (m decode.JSONMapping) {
	m.SensorTopicSegment = &seg
	m.TimeField = "ts"
	return m
}

func payload(ts int64, kv ...any) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"ts":%d`, ts)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, `,%q:%v`, kv[i], kv[i+1])
	}
	b.WriteString("}")
	return []byte(b.String())
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

func containsStr(s, sub string) bool { return strings.Contains(s, sub) }

func intp(i int) *int { return &i }
