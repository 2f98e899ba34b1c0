package mqttsub

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/decode"
	"github.com/sensorgate/sensorgate/test/leak"
)

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testLogger logs to the test output when -v is given.
func testLogger(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return quietLogger()
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startMochi starts an in-process broker on addr. ledger nil allows all.
func startMochi(t *testing.T, addr string, ledger *auth.Ledger) *mochi.Server {
	t.Helper()
	s := mochi.New(&mochi.Options{InlineClient: true, Logger: quietLogger()})
	var err error
	if ledger == nil {
		err = s.AddHook(new(auth.AllowHook), nil)
	} else {
		err = s.AddHook(new(auth.Hook), &auth.Options{Ledger: ledger})
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})); err != nil {
		t.Fatal(err)
	}
	// The port may still be in TIME_WAIT after a restart: retry briefly.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = s.Serve()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitFor polls cond until it holds or 20 s passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
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
