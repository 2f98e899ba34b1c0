package uplinktest

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// Outbox is an in-memory outbox with the documented semantics of
// buffer.Outbox (FIFO per lane, Read after a seq, Ack by seq, coalescing
// Subscribe channels). It lets the unit tests control failures; the tests
// in ../test run against the real bbolt outbox.
type Outbox struct {
	mu   sync.Mutex
	recs [len(buffer.Lanes)][]buffer.Record
	seq  [len(buffer.Lanes)]uint64
	subs map[int]chan struct{}
	next int
	acks int
	// readErr, when set (SetReadErr), fails every Read.
	readErr error
}

// NewOutbox returns an empty outbox.
func NewOutbox() *Outbox { return &Outbox{subs: map[int]chan struct{}{}} }

// Append adds records to lane l and wakes every subscriber.
func (m *Outbox) Append(_ context.Context, l buffer.Lane, payloads ...[]byte) error {
	m.mu.Lock()
	for _, p := range payloads {
		m.seq[l]++
		m.recs[l] = append(m.recs[l], buffer.Record{
			Lane: l, Seq: m.seq[l], ID: fmt.Sprintf("e1-%d-%d", l, m.seq[l]),
			Stored: time.Now().UnixNano(), Payload: append([]byte(nil), p...),
		})
	}
	for _, ch := range m.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	m.mu.Unlock()
	return nil
}

// Read returns up to max records of l after seq after.
func (m *Outbox) Read(l buffer.Lane, after uint64, max int) ([]buffer.Record, error) {
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

// Ack deletes seqs from l.
func (m *Outbox) Ack(l buffer.Lane, seqs ...uint64) error {
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

// Subscribe returns a wake-up channel of the caller's own.
func (m *Outbox) Subscribe() (<-chan struct{}, func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := m.next
	m.next++
	ch := make(chan struct{}, 1)
	m.subs[id] = ch
	return ch, func() {
		m.mu.Lock()
		delete(m.subs, id)
		m.mu.Unlock()
	}
}

// Subscribers is the number of open subscriptions.
func (m *Outbox) Subscribers() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.subs)
}

// Count is the number of records in l.
func (m *Outbox) Count(l buffer.Lane) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.recs[l])
}

// Acks is the number of Ack calls so far.
func (m *Outbox) Acks() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.acks
}

// SetReadErr makes every Read fail with err (nil: succeed again).
func (m *Outbox) SetReadErr(err error) {
	m.mu.Lock()
	m.readErr = err
	m.mu.Unlock()
}

// Summary is a summary with every field set.
func Summary(i int) *ingest.Summary {
	return &ingest.Summary{
		ID: fmt.Sprintf("sum-%d", i), Sensor: fmt.Sprintf("s%d", i%3), Metric: "temperature", Unit: "Cel",
		Start: int64(i) * 1e10, End: int64(i+1) * 1e10, Count: uint64(i + 1), Sum: float64(i) * 2.5,
		Min: -1.5, Max: float64(i), Mean: 1.25, Stddev: 0.5,
		Quantiles: []ingest.Quantile{{Q: 0.5, Value: 1}, {Q: 0.99, Value: 2}},
		Meta:      map[string]string{"zone": "north", "loc": "gh-1"},
	}
}

// Alert is an alert with every field set.
func Alert(i int) *ingest.Alert {
	return &ingest.Alert{ID: fmt.Sprintf("al-%d", i), Rule: "hot", Sensor: "s1", Metric: "temperature", Unit: "Cel",
		State: ingest.AlertFire, Severity: "warn", Value: 41.5, Threshold: 40, Since: 1e18, Time: 1e18 + int64(i), Seq: uint32(i)}
}

// SummaryRecord is Summary(i) encoded as an outbox record.
func SummaryRecord(t testing.TB, i int) []byte {
	b, err := ingest.AppendSummary(nil, Summary(i))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// AlertRecord is Alert(i) encoded as an outbox record.
func AlertRecord(t testing.TB, i int) []byte {
	b, err := ingest.AppendAlert(nil, Alert(i))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ReadingsRecord is a batch of n humidity readings of sensor s1, encoded.
func ReadingsRecord(t testing.TB, n int) []byte {
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

// Runner is what Run starts: an *uplink.Uplink.
type Runner interface {
	Run(ctx context.Context) error
}

// Run starts u.Run and returns a stop function that cancels it and checks
// that it returned nil; stop also runs at cleanup.
func Run(t *testing.T, u Runner) (stop func()) {
	t.Helper()
	return mqtttest.Go(t, u.Run)
}

// Lines splits s into lines without the trailing newline.
func Lines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// Discard is a logger that drops everything.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// SyncBuffer is mqtttest.SyncBuffer, under the name the transports' tests
// use.
type SyncBuffer = mqtttest.SyncBuffer

// CheckOrder verifies that every expected id arrived, that first arrivals
// are in append order within each lane, and reports the duplicates.
func CheckOrder(t *testing.T, got []string, want map[string]int) (dups int) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]int{}
	for _, id := range got {
		pos, ok := want[id]
		if !ok {
			t.Fatalf("unexpected id %s", id)
		}
		if seen[id] {
			dups++
			continue
		}
		seen[id] = true
		lane := id[:strings.LastIndexByte(id, '-')]
		if p, ok := last[lane]; ok && pos < p {
			t.Errorf("out of order in lane %s: %s after position %d", lane, id, p)
		}
		last[lane] = pos
	}
	for id := range want {
		if !seen[id] {
			t.Errorf("record %s never arrived", id)
		}
	}
	return dups
}

// WaitFor waits until cond holds, failing t after 20 s (a hung test, not
// a timing check).
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	mqtttest.WaitFor(t, 20*time.Second, cond, what)
}
