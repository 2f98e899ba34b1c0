package test

// HTTP uplink fault tests: package uplink against a real buffer.Outbox and
// an HTTP server that fails in every way the uplink must survive.

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/test/mqtttest"
	"github.com/sensorgate/sensorgate/uplink"
)

// uplHTTPServer accepts JSON arrays of envelopes. Request i (from 1) gets
// the fault faults(i) if it returns one; a batch holding a record whose
// summary id starts with "bad" is refused with 400.
type uplHTTPServer struct {
	mu       sync.Mutex
	faults   func(i int) string
	requests int
	ids      []string
	byFault  map[string]int
	release  chan struct{}
}

func (h *uplHTTPServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.requests++
	i := h.requests
	h.mu.Unlock()
	fault := h.faults(i)
	h.mu.Lock()
	h.byFault[fault]++
	h.mu.Unlock()
	switch fault {
	case "500":
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	case "503":
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	case "429":
		w.Header().Set("Retry-After", "1")
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return
	case "timeout":
		select { // longer than the uplink's timeout
		case <-h.release:
		case <-r.Context().Done():
		}
		return
	case "reset":
		if hj, ok := w.(http.Hijacker); ok {
			c, _, _ := hj.Hijack()
			c.Close()
			return
		}
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	var batch []struct {
		ID      string          `json:"record_id"`
		Summary *ingest.Summary `json:"summary"`
	}
	if err := json.NewDecoder(body).Decode(&batch); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, e := range batch {
		if e.Summary != nil && strings.HasPrefix(e.Summary.ID, "bad") {
			http.Error(w, "invalid record "+e.ID, http.StatusBadRequest)
			return
		}
	}
	h.mu.Lock()
	for _, e := range batch {
		h.ids = append(h.ids, e.ID)
	}
	h.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (h *uplHTTPServer) snapshot() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.ids...)
}

// TestUplinkHTTPFaults: 500, 503, 429 with Retry-After, timeouts, dropped
// connections and 400 for poisoned records, while records keep coming.
// Everything good arrives in order, the poisoned records (and only they)
// end up in the dead lane, counted, and nothing stays stuck.
func TestUplinkHTTPFaults(t *testing.T) {
	h := &uplHTTPServer{byFault: map[string]int{}, release: make(chan struct{})}
	h.faults = func(i int) string {
		switch {
		case i == 2:
			return "429"
		case i%11 == 0:
			return "timeout"
		case i%7 == 0:
			return "500"
		case i%13 == 0:
			return "503"
		case i%17 == 0:
			return "reset"
		}
		return ""
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer close(h.release)

	ob, err := buffer.Open(buffer.Config{Path: filepath.Join(t.TempDir(), "outbox.db"), CommitDelay: 2 * time.Millisecond}, buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("t0ken"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := uplink.Config{Name: "api", Type: "http", URL: srv.URL + "/v1/records", BatchSize: 25, Gzip: true,
		TokenFile: tokenFile, Timeout: 300 * time.Millisecond, PollInterval: 20 * time.Millisecond,
		Backoff: uplink.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}}
	u, err := newUplink(cfg, ob, uplink.Options{Gateway: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()

	want := map[string]int{}
	var bad []string
	for round := 0; round < 20; round++ {
		var payloads [][]byte
		for i := 0; i < 30; i++ {
			k := round*30 + i + 1
			id := "s" + itoaUpl(k)
			if k%97 == 0 {
				id = "bad" + itoaUpl(k)
			}
			b, err := ingest.AppendSummary(nil, &ingest.Summary{ID: id, Sensor: "s", Metric: "t", Count: uint64(k)})
			if err != nil {
				t.Fatal(err)
			}
			payloads = append(payloads, b)
			rid := ob.Epoch() + "-summaries-" + itoaUpl(k)
			if strings.HasPrefix(id, "bad") {
				bad = append(bad, id)
			} else {
				want[rid] = k
			}
		}
		if err := ob.Append(context.Background(), buffer.LaneSummaries, payloads...); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mqtttest.WaitFor(t, 30*time.Second, func() bool {
		recs, err := ob.Read(buffer.LaneSummaries, 0, 1)
		return err == nil && len(recs) == 0
	}, "summaries lane drained")

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}

	dups, missing := uplCheck(t, h.snapshot(), want)
	for _, id := range missing {
		t.Errorf("record %s never arrived", id)
	}
	if dups != 0 {
		// A timed-out request may have been processed: that is the only
		// allowed source of duplicates here.
		t.Logf("%d duplicates (timeouts: %d)", dups, h.byFault["timeout"])
	}
	dead, err := ob.Read(buffer.LaneDead, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var deadIDs []string
	for _, r := range dead {
		rec, err := ingest.DecodeRecord(r.Payload)
		if err != nil {
			t.Fatal(err)
		}
		deadIDs = append(deadIDs, rec.Summary.ID)
	}
	if strings.Join(deadIDs, ",") != strings.Join(bad, ",") {
		t.Errorf("dead lane holds %v, want %v", deadIDs, bad)
	}
	st := u.Stats()
	if st.DeadLettered != uint64(len(bad)) || st.Acked != uint64(len(want)) || st.Retries == 0 {
		t.Errorf("stats %+v", st)
	}
	h.mu.Lock()
	for _, f := range []string{"429", "timeout", "500", "503", "reset"} {
		if h.byFault[f] == 0 {
			t.Errorf("fault %s never happened", f)
		}
	}
	t.Logf("requests %d by fault %v; stats %+v", h.requests, h.byFault, st)
	h.mu.Unlock()
}

func itoaUpl(i int) string { return big.NewInt(int64(i)).String() }

// TestUplinkHTTPMutualTLS: an HTTPS endpoint that requires client
// certificates. The right CA and certificate deliver; a wrong CA or a
// missing client certificate fail with an error that says so, and nothing
// leaves the outbox.
func TestUplinkHTTPMutualTLS(t *testing.T) {
	good := mqtttest.NewPKI(t)
	other := mqtttest.NewPKI(t)
	var got sync.Map
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.TLS.PeerCertificates[0].Subject.CommonName, true)
		w.WriteHeader(http.StatusOK)
	}))
	srv.TLS = good.ServerTLS(true)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()

	for _, tc := range []struct {
		name    string
		tls     uplink.TLS
		wantErr string
	}{
		{"mutual tls", uplink.TLS{CAFile: good.CAFile, CertFile: good.ClientCertFile, KeyFile: good.ClientKeyFile}, ""},
		{"wrong CA", uplink.TLS{CAFile: other.CAFile, CertFile: good.ClientCertFile, KeyFile: good.ClientKeyFile}, "certificate signed by unknown authority"},
		{"missing client certificate", uplink.TLS{CAFile: good.CAFile}, "set tls.cert_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, left := deliverOneAlert(t, uplink.Config{Type: "http", URL: srv.URL, TLS: tc.tls, Timeout: 2 * time.Second,
				Backoff: uplink.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}},
				tc.wantErr, func(st uplink.Stats) uint64 { return st.Errors })
			if tc.wantErr != "" {
				if !strings.Contains(st.LastError, tc.wantErr) || st.Acked != 0 {
					t.Errorf("want error with %q: %+v", tc.wantErr, st)
				}
				if left != 1 {
					t.Errorf("record left the outbox without delivery")
				}
				t.Logf("error: %s", st.LastError)
			}
		})
	}
	if _, ok := got.Load(mqtttest.ClientCN); !ok {
		t.Error("server never saw the client certificate")
	}
}
