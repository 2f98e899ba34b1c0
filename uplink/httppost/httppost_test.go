package httppost

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/test/leak"
	"github.com/sensorgate/sensorgate/uplink"
	"github.com/sensorgate/sensorgate/uplink/internal/uplinktest"
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
	leak.Check(t)
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

	ob := uplinktest.NewOutbox()
	want := map[string]int{}
	for i := 0; i < 10; i++ {
		ob.Append(context.Background(), buffer.LaneSummaries, uplinktest.SummaryRecord(t, i))
		want["e1-1-"+strconv.Itoa(i+1)] = i
	}
	delete(want, "e1-1-6")
	cfg := uplink.Config{Name: "api", Type: "http", URL: srv.URL + "/ingest", BatchSize: 4, Timeout: 300 * time.Millisecond,
		Backoff: uplink.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}, PollInterval: 20 * time.Millisecond,
		Gzip: true, TokenFile: tokenFile, Headers: map[string]string{"X-Tenant": "acme"}}
	u, err := newUplink(cfg, ob, uplink.Options{Gateway: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	stop := uplinktest.Run(t, u)
	uplinktest.WaitFor(t, "lane drained", func() bool { return ob.Count(buffer.LaneSummaries) == 0 })
	stop()

	ids, _ := up.snapshot()
	if dups := uplinktest.CheckOrder(t, ids, want); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if n := ob.Count(buffer.LaneDead); n != 1 {
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
	leak.Check(t)
	up := &httpUpstream{poison: "e1-2-37"}
	srv := httptest.NewServer(up)
	defer srv.Close()
	ob := uplinktest.NewOutbox()
	want := map[string]int{}
	for i := 0; i < 100; i++ {
		ob.Append(context.Background(), buffer.LaneRaw, uplinktest.ReadingsRecord(t, 2))
		want["e1-2-"+strconv.Itoa(i+1)] = i
	}
	delete(want, "e1-2-37")
	u, err := newUplink(uplink.Config{Type: "http", URL: srv.URL, BatchSize: 50, PollInterval: 20 * time.Millisecond,
		Backoff: uplink.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}}, ob, uplink.Options{Gateway: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	stop := uplinktest.Run(t, u)
	uplinktest.WaitFor(t, "lane drained", func() bool { return ob.Count(buffer.LaneRaw) == 0 })
	stop()
	ids, requests := up.snapshot()
	uplinktest.CheckOrder(t, ids, want)
	if st := u.Stats(); st.DeadLettered != 1 || st.Acked != 99 || ob.Count(buffer.LaneDead) != 1 {
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
	leak.Check(t)
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
	ob := uplinktest.NewOutbox()
	ob.Append(context.Background(), buffer.LaneAlerts, uplinktest.AlertRecord(t, 1))
	u, err := newUplink(uplink.Config{Type: "http", URL: srv.URL, TokenFile: tokenFile,
		Backoff: uplink.Backoff{Min: 10 * time.Millisecond, Max: 20 * time.Millisecond}}, ob, uplink.Options{Gateway: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	stop := uplinktest.Run(t, u)
	uplinktest.WaitFor(t, "refusals", func() bool { return u.Stats().Errors >= 3 })
	if st := u.Stats(); st.DeadLettered != 0 || st.Acked != 0 || !strings.Contains(st.LastError, "401") {
		t.Fatalf("stats %+v", st)
	}
	os.WriteFile(tokenFile, []byte("new\n"), 0o600)
	uplinktest.WaitFor(t, "delivery", func() bool { return ob.Count(buffer.LaneAlerts) == 0 })
	stop()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "e1-0-1" {
		t.Errorf("got %v", got)
	}
}

// A 308 is followed with the body; a 302 is not turned into a GET (it is
// retried like a server error), so nothing is dead-lettered by accident.
func TestHTTPRedirects(t *testing.T) {
	leak.Check(t)
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
		ob := uplinktest.NewOutbox()
		ob.Append(context.Background(), buffer.LaneAlerts, uplinktest.AlertRecord(t, 1))
		u, err := newUplink(uplink.Config{Type: "http", URL: srv.URL + path, Backoff: uplink.Backoff{Min: 10 * time.Millisecond, Max: 20 * time.Millisecond}},
			ob, uplink.Options{Gateway: "gw-1"})
		if err != nil {
			t.Fatal(err)
		}
		stop := uplinktest.Run(t, u)
		if path == "/found" {
			uplinktest.WaitFor(t, "302 retried", func() bool { return u.Stats().Errors >= 2 })
			if st := u.Stats(); st.DeadLettered != 0 || !strings.Contains(st.LastError, "302") {
				t.Errorf("302: %+v", st)
			}
			mu.Lock()
			moved = true
			mu.Unlock()
		}
		uplinktest.WaitFor(t, "delivery via "+path, func() bool { return ob.Count(buffer.LaneAlerts) == 0 })
		stop()
		if st := u.Stats(); st.DeadLettered != 0 || st.Acked != 1 {
			t.Errorf("%s: %+v", path, st)
		}
	}
	if posts != 2 {
		t.Errorf("%d posts arrived, want 2", posts)
	}
}

// FuzzRetryAfter: any header value gives a delay in [0, maxRetryAfter].
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "120", "-5", "Wed, 21 Oct 2015 07:28:00 GMT", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := parseRetryAfter(v, now); d < 0 || d > maxRetryAfter {
			t.Fatalf("%q: %v", v, d)
		}
	})
}

// newUplink is uplink.New with this package's transport.
func newUplink(cfg uplink.Config, ob uplink.Outbox, opts uplink.Options) (*uplink.Uplink, error) {
	tr, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return uplink.New(cfg, ob, tr, opts)
}

// lockedBuffer collects log output written from the uplink's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A token in the URL's query (and a password in its userinfo) must not
// reach the log or the stats behind /healthz, although net/http names the
// URL in every error of a retried post.
func TestHTTPRedactsURLSecrets(t *testing.T) {
	leak.Check(t)
	up := &httpUpstream{}
	var drops sync.Mutex
	dropped := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		drops.Lock()
		drop := dropped < 3
		dropped++
		drops.Unlock()
		if drop { // the connection dies mid-request: the client's error carries the URL
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
			return
		}
		up.ServeHTTP(w, r)
	}))
	defer srv.Close()
	ob := uplinktest.NewOutbox()
	for i := 0; i < 3; i++ {
		ob.Append(context.Background(), buffer.LaneSummaries, uplinktest.SummaryRecord(t, i))
	}
	var logs lockedBuffer
	u, err := newUplink(uplink.Config{Name: "api", Type: "http",
		URL:     strings.Replace(srv.URL, "http://", "http://bob:pa55word@", 1) + "/ingest?tenant=acme&token=s3cret",
		Backoff: uplink.Backoff{Min: 10 * time.Millisecond, Max: 20 * time.Millisecond}, PollInterval: 20 * time.Millisecond},
		ob, uplink.Options{Gateway: "gw-1", Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	stop := uplinktest.Run(t, u)
	uplinktest.WaitFor(t, "lane drained", func() bool { return ob.Count(buffer.LaneSummaries) == 0 })
	stop()
	stats, err := json.Marshal(u.Stats())
	if err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "http post failed, retrying") || !strings.Contains(string(stats), "token=REDACTED") {
		t.Fatalf("the failed posts were not logged or reported:\nlog: %s\nstats: %s", out, stats)
	}
	for _, s := range []string{"s3cret", "pa55word"} {
		if strings.Contains(out, s) || strings.Contains(string(stats), s) {
			t.Errorf("%q leaked:\nlog: %s\nstats: %s", s, out, stats)
		}
	}
}

// validate prints its errors: a bad URL's secrets stay out of them.
func TestHTTPBadURLErrorsRedacted(t *testing.T) {
	for _, raw := range []string{"http://bob:pa55word@/x?token=s3cret", "http://h/%zz?token=s3cret"} {
		c := uplink.Config{Type: "http", URL: raw}
		c.Defaults()
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "url") {
			t.Fatalf("%s: got %v, want a url error", raw, err)
		}
		if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "pa55word") {
			t.Errorf("secret in %v", err)
		}
	}
}
