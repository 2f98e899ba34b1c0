package uplink

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/test/leak"
)

// memOutbox is an in-memory Outbox with the documented semantics of
// buffer.Outbox (FIFO per lane, Read after a seq, Ack by seq, a coalescing
// Notify channel). It lets the unit tests control failures; the tests in
// ../test run against the real bbolt outbox.
type memOutbox struct {
	mu       sync.Mutex
	recs     [len(buffer.Lanes)][]buffer.Record
	seq      [len(buffer.Lanes)]uint64
	notify   chan struct{}
	acks     int
	readErr  error
	noAppend bool
}

func newMemOutbox() *memOutbox { return &memOutbox{notify: make(chan struct{}, 1)} }

func (m *memOutbox) Append(_ context.Context, l buffer.Lane, payloads ...[]byte) error {
	m.mu.Lock()
	for _, p := range payloads {
		m.seq[l]++
		m.recs[l] = append(m.recs[l], buffer.Record{
			Lane: l, Seq: m.seq[l], ID: fmt.Sprintf("e1-%d-%d", l, m.seq[l]),
			Stored: time.Now().UnixNano(), Payload: append([]byte(nil), p...),
		})
	}
	m.mu.Unlock()
	select {
	case m.notify <- struct{}{}:
	default:
	}
	return nil
}

func (m *memOutbox) Read(l buffer.Lane, after uint64, max int) ([]buffer.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.readErr != nil {
		return nil, m.readErr
	}
	rs := m.recs[l]
	i := sort.Search(len(rs), func(i int) bool { return rs[i].Seq > after })
	n := min(len(rs)-i, max)
	out := make([]buffer.Record, n)
	copy(out, rs[i:i+n])
	return out, nil
}

func (m *memOutbox) Ack(l buffer.Lane, seqs ...uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.acks++
	del := map[uint64]bool{}
	for _, s := range seqs {
		del[s] = true
	}
	rs := m.recs[l][:0]
	for _, r := range m.recs[l] {
		if !del[r.Seq] {
			rs = append(rs, r)
		}
	}
	m.recs[l] = rs
	return nil
}

func (m *memOutbox) Notify() <-chan struct{} { return m.notify }

func (m *memOutbox) count(l buffer.Lane) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.recs[l])
}

// onlyOutbox hides Append.
type onlyOutbox struct{ m *memOutbox }

func (o onlyOutbox) Read(l buffer.Lane, after uint64, max int) ([]buffer.Record, error) {
	return o.m.Read(l, after, max)
}
func (o onlyOutbox) Ack(l buffer.Lane, seqs ...uint64) error { return o.m.Ack(l, seqs...) }
func (o onlyOutbox) Notify() <-chan struct{}                 { return o.m.Notify() }

func testSummary(i int) *ingest.Summary {
	return &ingest.Summary{
		ID: fmt.Sprintf("sum-%d", i), Sensor: fmt.Sprintf("s%d", i%3), Metric: "temperature", Unit: "Cel",
		Start: int64(i) * 1e10, End: int64(i+1) * 1e10, Count: uint64(i + 1), Sum: float64(i) * 2.5,
		Min: -1.5, Max: float64(i), Mean: 1.25, Stddev: 0.5,
		Quantiles: []ingest.Quantile{{Q: 0.5, Value: 1}, {Q: 0.99, Value: 2}},
		Meta:      map[string]string{"zone": "north", "loc": "gh-1"},
	}
}

func testAlert(i int) *ingest.Alert {
	return &ingest.Alert{ID: fmt.Sprintf("al-%d", i), Rule: "hot", Sensor: "s1", Metric: "temperature", Unit: "Cel",
		State: ingest.AlertFire, Severity: "warn", Value: 41.5, Threshold: 40, Since: 1e18, Time: 1e18 + int64(i), Seq: uint32(i)}
}

func mustSummary(t testing.TB, i int) []byte {
	b, err := ingest.AppendSummary(nil, testSummary(i))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustAlert(t testing.TB, i int) []byte {
	b, err := ingest.AppendAlert(nil, testAlert(i))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustReadings(t testing.TB, n int) []byte {
	rb := &ingest.ReadingBatch{}
	for i := 0; i < n; i++ {
		rb.Readings = append(rb.Readings, ingest.Reading{Sensor: "s1", Metric: "humidity", Value: float64(i) + 0.5,
			Unit: "%RH", Time: 1700000000123456789 + int64(i), Arrival: 1700000000223456789})
	}
	b, err := ingest.AppendReadings(nil, rb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkGoroutines fails if the goroutine count does not come back to
// what it was before the test within 10 s.
func checkGoroutines(t *testing.T) {
	t.Helper()
	leak.Check(t)
}

// waitFor polls cond until it holds or 20 s pass.
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

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// runUplink starts u.Run and returns a stop function that cancels it and
// checks it returned nil.
func runUplink(t *testing.T, u *Uplink) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("Run did not return within 20s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func lines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
