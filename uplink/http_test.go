package uplink

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
)

// httpUpstream is a scripted HTTP endpoint: each request gets the next
// scripted response (then 200), and requests whose body contains a
// poisoned record id get 400.
type httpUpstream struct {
	mu       sync.Mutex
	script   []func(w http.ResponseWriter) // consumed one per request
	poison   string
	ids      []string // record ids of accepted requests, in order
	requests int
	times    []time.Time
	headers  []http.Header
}

func (h *httpUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		body = zr
	}
	var batch []map[string]any
	if err := json.NewDecoder(body).Decode(&batch); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	h.mu.Lock()
	h.requests++
	h.times = append(h.times, time.Now())
	h.headers = append(h.headers, r.Header.Clone())
	var step func(http.ResponseWriter)
	if len(h.script) > 0 {
		step, h.script = h.script[0], h.script[1:]
	}
	h.mu.Unlock()
	if step != nil {
		step(w)
		return
	}
	var ids []string
	for _, e := range batch {
		id := e["record_id"].(string)
		if h.poison != "" && id == h.poison {
			http.Error(w, "bad record", http.StatusBadRequest)
			return
		}
		ids = append(ids, id)
	}
	h.mu.Lock()
	h.ids = append(h.ids, ids...)
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (h *httpUpstream) snapshot() (ids []string, requests int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.ids...), h.requests
}

func status(code int, hdr ...string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.WriteHeader(code)
	}
}

func TestHTTPRetriesAndDeadLetters(t *testing.T) {
	checkGoroutines(t)
	stall := make(chan struct{})
	up := &httpUpstream{
		poison: "e1-1-6",
		script: []func(http.ResponseWriter){
			status(500),
			status(429, "Retry-After", "1"),
			func(w http.ResponseWriter) { <-stall }, // a request that times out
			status(503),
		},
	}
	srv := httptest.NewServer(up)
	defer srv.Close()
	defer close(stall)
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600)

	ob := newMemOutbox()
	want := map[string]int{}
	for i := 0; i < 10; i++ {
		ob.Append(context.Background(), buffer.LaneSummaries, mustSummary(t, i))
		want["e1-1-"+strconv.Itoa(i+1)] = i
	}
	delete(want, "e1-1-6")
	cfg := Config{Name: "api", Type: "http", URL: srv.URL + "/ingest", BatchSize: 4, Timeout: 300 * time.Millisecond,
		Backoff: Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}, PollInterval: 20 * time.Millisecond,
		Gzip: true, TokenFile: tokenFile, Headers: map[string]string{"X-Tenant": "acme"}}
	u, err := New(cfg, ob, Options{Gateway: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	stop := runUplink(t, u)
	waitFor(t, "lane drained", func() bool { return ob.count(buffer.LaneSummaries) == 0 })
	stop()

	ids, _ := up.snapshot()
	if dups := checkOrder(t, ids, want); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if n := ob.count(buffer.LaneDead); n != 1 {
		t.Errorf("dead lane holds %d records, want 1", n)
	}
	if rs, _ := ob.Read(buffer.LaneDead, 0, 10); len(rs) == 1 {
		if rec, err := ingest.DecodeRecord(rs[0].Payload); err != nil || rec.Summary.ID != "sum-5" {
			t.Errorf("dead lane holds the wrong record: %v %v", rec, err)
		}
	}
	st := u.Stats()
	if st.DeadLettered != 1 || st.Acked != 9 || st.Retries < 12 || !strings.Contains(st.LastError, "400") {
		t.Errorf("stats %+v", st)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	// Request 2 got 429 with Retry-After: 1; the next one came no sooner.
	if gap := up.times[2].Sub(up.times[1]); gap < time.Second {
		t.Errorf("Retry-After not honoured: next request after %v", gap)
	}
	h := up.headers[0]
	if h.Get("Authorization") != "Bearer s3cret" || h.Get("X-Tenant") != "acme" || h.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", h)
	}
}

func TestHTTPBisectsOnlyOffenders(t *testing.T) {
	checkGoroutines(t)
	up := &httpUpstream{poison: "e1-2-37"}
	srv := httptest.NewServer(up)
	defer srv.Close()
	ob := onlyOutbox{newMemOutbox()} // no dead lane: dropped and counted
	want := map[string]int{}
	for i := 0; i < 100; i++ {
		ob.m.Append(context.Background(), buffer.LaneRaw, mustReadings(t, 2))
		want["e1-2-"+strconv.Itoa(i+1)] = i
	}
	delete(want, "e1-2-37")
	u, err := New(Config{Type: "http", URL: srv.URL, BatchSize: 50, PollInterval: 20 * time.Millisecond,
		Backoff: Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}}, ob, Options{Gateway: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	stop := runUplink(t, u)
	waitFor(t, "lane drained", func() bool { return ob.m.count(buffer.LaneRaw) == 0 })
	stop()
	ids, requests := up.snapshot()
	checkOrder(t, ids, want)
	if st := u.Stats(); st.Dropped != 1 || st.Acked != 99 || st.DeadLettered != 0 {
		t.Errorf("stats %+v", st)
	}
	// 2 batches of 50; the bad one is halved down to the record: 1 + 2*6 requests, the good one 1.
	if requests > 20 {
		t.Errorf("%d requests", requests)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"": 0, "3": 3 * time.Second, "-1": 0, "junk": 0, "999999": maxRetryAfter,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("%q: %v want %v", in, got, want)
		}
	}
}

func TestRetryable(t *testing.T) {
	for code, want := range map[int]bool{500: true, 502: true, 429: true, 408: true, 401: true, 403: true,
		400: false, 404: false, 413: false, 422: false, 302: true} {
		if retryable(code) != want {
			t.Errorf("%d: %v", code, !want)
		}
	}
}

// A 401 is retried, not dead-lettered, and the token file is read again
// for every request: rotating the token fixes delivery without a restart.
func TestHTTPTokenRotation(t *testing.T) {
	checkGoroutines(t)
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer new" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var batch []map[string]any
		json.NewDecoder(r.Body).Decode(&batch)
		mu.Lock()
		for _, e := range batch {
			got = append(got, e["record_id"].(string))
		}
		mu.Unlock()
	}))
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("old"), 0o600)
	ob := newMemOutbox()
	ob.Append(context.Background(), buffer.LaneAlerts, mustAlert(t, 1))
	u, err := New(Config{Type: "http", URL: srv.URL, TokenFile: tokenFile,
		Backoff: Backoff{Min: 10 * time.Millisecond, Max: 20 * time.Millisecond}}, ob, Options{Gateway: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	stop := runUplink(t, u)
	waitFor(t, "refusals", func() bool { return u.Stats().Errors >= 3 })
	if st := u.Stats(); st.DeadLettered != 0 || st.Acked != 0 || !strings.Contains(st.LastError, "401") {
		t.Fatalf("stats %+v", st)
	}
	os.WriteFile(tokenFile, []byte("new\n"), 0o600)
	waitFor(t, "delivery", func() bool { return ob.count(buffer.LaneAlerts) == 0 })
	stop()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "e1-0-1" {
		t.Errorf("got %v", got)
	}
}

// Two uplinks on one outbox: alerts go to MQTT (as SenML), summaries to
// HTTP (as MessagePack); neither touches the other's lane.
func TestLaneRoutingTwoUplinks(t *testing.T) {
	checkGoroutines(t)
	addr := freeAddr(t)
	rx := &received{}
	startMochi(t, addr, rx)
	var mu sync.Mutex
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
		if r.Header.Get("Content-Type") != "application/msgpack" {
			w.WriteHeader(http.StatusUnsupportedMediaType)
		}
	}))
	defer srv.Close()
	ob := newMemOutbox()
	for i := 0; i < 10; i++ {
		ob.Append(context.Background(), buffer.LaneAlerts, mustAlert(t, i))
		ob.Append(context.Background(), buffer.LaneSummaries, mustSummary(t, i))
	}
	cfgs := []Config{
		{Name: "cloud", Type: "mqtt", URL: "tcp://" + addr, Lanes: []string{"alerts"}, Format: FormatSenML, DisableStatus: true,
			PollInterval: 20 * time.Millisecond},
		{Name: "api", Type: "http", URL: srv.URL, Lanes: []string{"summaries"}, Format: FormatMsgpack, BatchSize: 4,
			PollInterval: 20 * time.Millisecond},
	}
	for i := range cfgs {
		cfgs[i].Defaults()
	}
	if err := ValidateRouting(cfgs); err != nil {
		t.Fatal(err)
	}
	var ups []*Uplink
	for _, c := range cfgs {
		u, err := New(c, ob, Options{Gateway: "gw-1"})
		if err != nil {
			t.Fatal(err)
		}
		ups = append(ups, u)
		runUplink(t, u)
	}
	waitFor(t, "both lanes drained", func() bool {
		return ob.count(buffer.LaneAlerts) == 0 && ob.count(buffer.LaneSummaries) == 0
	})
	if a, h := ups[0].Stats(), ups[1].Stats(); a.Acked != 10 || h.Acked != 10 || h.Messages != 3 {
		t.Errorf("mqtt %+v\nhttp %+v", a, h)
	}
	for _, m := range rx.snapshot() {
		var pack []map[string]any
		if err := json.Unmarshal(m.payload, &pack); err != nil || pack[0]["bn"] != "gw-1:s1:" {
			t.Errorf("not a SenML pack: %s", m.payload)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, b := range bodies {
		if n, _, err := msgp.ReadArrayHeaderBytes(b); err != nil || n == 0 {
			t.Errorf("not a MessagePack array: %v", err)
		}
	}
}

// A 308 is followed with the body; a 302 is not turned into a GET (it is
// retried like a server error), so nothing is dead-lettered by accident.
func TestHTTPRedirects(t *testing.T) {
	checkGoroutines(t)
	var mu sync.Mutex
	var posts int
	var moved bool
	mux := http.NewServeMux()
	mux.HandleFunc("/old", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/new", http.StatusPermanentRedirect)
	})
	mux.HandleFunc("/found", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		m := moved
		mu.Unlock()
		if !m {
			http.Redirect(w, r, "/new", http.StatusFound)
			return
		}
		http.Redirect(w, r, "/new", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/new", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		var batch []map[string]any
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil || len(batch) == 0 {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		posts++
		mu.Unlock()
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, path := range []string{"/old", "/found"} {
		ob := newMemOutbox()
		ob.Append(context.Background(), buffer.LaneAlerts, mustAlert(t, 1))
		u, err := New(Config{Type: "http", URL: srv.URL + path, Backoff: Backoff{Min: 10 * time.Millisecond, Max: 20 * time.Millisecond}},
			ob, Options{Gateway: "gw-1"})
		if err != nil {
			t.Fatal(err)
		}
		stop := runUplink(t, u)
		if path == "/found" {
			waitFor(t, "302 retried", func() bool { return u.Stats().Errors >= 2 })
			if st := u.Stats(); st.DeadLettered != 0 || !strings.Contains(st.LastError, "302") {
				t.Errorf("302: %+v", st)
			}
			mu.Lock()
			moved = true
			mu.Unlock()
		}
		waitFor(t, "delivery via "+path, func() bool { return ob.count(buffer.LaneAlerts) == 0 })
		stop()
		if st := u.Stats(); st.DeadLettered != 0 || st.Acked != 1 {
			t.Errorf("%s: %+v", path, st)
		}
	}
	if posts != 2 {
		t.Errorf("%d posts arrived, want 2", posts)
	}
}

// Two stdout uplinks on one real outbox, each on its own lane, polling only
// once an hour: records appended while both are idle must reach both at
// once, so each must be woken by the commit itself (Notify's one channel
// would wake only one of them).
func TestEveryUplinkIsWokenByACommit(t *testing.T) {
	checkGoroutines(t)
	ob, err := buffer.Open(buffer.Config{Path: filepath.Join(t.TempDir(), "outbox.db"), CommitDelay: time.Millisecond}, buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	var outs [2]lockedBuffer
	var ups [2]*Uplink
	for i, lane := range []string{"alerts", "summaries"} {
		c := Config{Name: lane, Type: TypeStdout, Lanes: []string{lane}, PollInterval: time.Hour}
		c.Defaults()
		u, err := New(c, ob, Options{Gateway: "gw-1", Stdout: &outs[i]})
		if err != nil {
			t.Fatal(err)
		}
		ups[i] = u
		runUplink(t, u)
	}
	// Let both reach their idle wait before anything is stored.
	time.Sleep(200 * time.Millisecond)
	for round := 1; round <= 3; round++ {
		if err := ob.Append(context.Background(), buffer.LaneAlerts, mustAlert(t, round)); err != nil {
			t.Fatal(err)
		}
		if err := ob.Append(context.Background(), buffer.LaneSummaries, mustSummary(t, round)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, fmt.Sprintf("round %d delivered by both uplinks", round), func() bool {
			return ups[0].Stats().Acked == uint64(round) && ups[1].Stats().Acked == uint64(round)
		})
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
