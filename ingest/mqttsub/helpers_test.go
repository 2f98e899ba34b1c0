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
	"github.com/sensorgate/sensorgate/test/mqtttest"
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
	return mqtttest.Go(t, func(ctx context.Context) error { return s.Run(ctx, out) })
}

// collect reads n readings from out, failing after 20 s of silence, and
// completes each receipt as it comes, as an engine that commits every
// reading at once would (durable subscriptions are the QoS 1/2 default).
// The readings are returned without their receipts.
func collect(t *testing.T, out <-chan ingest.Reading, n int) []ingest.Reading {
	t.Helper()
	got := make([]ingest.Reading, 0, n)
	for len(got) < n {
		r := collectHeld(t, out, 1)[0]
		r.Receipt.Committed(nil)
		r.Receipt = nil
		got = append(got, r)
	}
	return got
}

// collectHeld reads n readings from out like collect, but leaves their
// receipts to the test.
func collectHeld(t *testing.T, out <-chan ingest.Reading, n int) []ingest.Reading {
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
