package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/rules/window"
)

// makeOutbox writes a closed outbox in a temp dir: 3 summaries, 1 alert,
// one undecodable raw record, and 2000 acked records (free pages).
func makeOutbox(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	ctx := context.Background()
	o, err := buffer.Open(buffer.Config{Path: filepath.Join(dir, "outbox.db")}, buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		s := &ingest.Summary{ID: ingest.SummaryID("10s", "gh-1", "", "temp", int64(i)*10e9, int64(i+1)*10e9),
			Sensor: "gh-1", Metric: "temp", Start: int64(i) * 10e9, End: int64(i+1) * 10e9, Count: 3, Mean: 21.5}
		b, err := ingest.AppendSummary(nil, s)
		if err != nil {
			t.Fatal(err)
		}
		if err := o.Append(ctx, buffer.LaneSummaries, b); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := ingest.AppendAlert(nil, &ingest.Alert{ID: "a1", Rule: "hot", Sensor: "gh-1", Metric: "temp", State: ingest.AlertFire, Value: 40})
	if err := o.Append(ctx, buffer.LaneAlerts, b); err != nil {
		t.Fatal(err)
	}
	if err := o.Append(ctx, buffer.LaneRaw, []byte("not a record")); err != nil {
		t.Fatal(err)
	}
	big := make([][]byte, 2000)
	for i := range big {
		big[i] = bytes.Repeat([]byte{'x'}, 1000)
	}
	if err := o.Append(ctx, buffer.LaneDead, big...); err != nil {
		t.Fatal(err)
	}
	recs, err := o.Read(buffer.LaneDead, 0, 5000)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, r := range recs {
		seqs = append(seqs, r.Seq)
	}
	if err := o.Ack(buffer.LaneDead, seqs...); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func runBuffer(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cmdBuffer(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestBufferCmdStats(t *testing.T) {
	dir := makeOutbox(t)
	code, out, errs := runBuffer(t, "stats", "--data", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"free pages:", "LANE", "summaries  3", "alerts     1", "raw        1", "dead       0"} {
		if !strings.Contains(out, want) {
			t.Errorf("stats output lacks %q:\n%s", want, out)
		}
	}
	code, out, errs = runBuffer(t, "stats", "--file", filepath.Join(dir, "outbox.db"), "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var st fileStatsJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if st.Lanes[1].Lane != "summaries" || st.Lanes[1].Depth != 3 || st.Lanes[1].LastSeq != 3 || st.Lanes[3].NextSeq != 2001 {
		t.Fatalf("json stats %+v", st)
	}
	if st.FreePages == 0 || st.FileSize == 0 || len(st.Epoch) != 16 || st.Lanes[1].Oldest == "" {
		t.Fatalf("json stats %+v", st)
	}
}

func TestBufferCmdPeek(t *testing.T) {
	dir := makeOutbox(t)
	code, out, errs := runBuffer(t, "peek", "--data", dir, "-n", "2", "--lane", "summaries")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := splitLines(out)
	if len(lines) != 2 {
		t.Fatalf("want 2 lines:\n%s", out)
	}
	var rec struct {
		Lane, ID, Kind, Stored string
		Seq                    uint64
		Record                 ingest.Summary
	}
	if err := json.Unmarshal([]byte(lines[1]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Lane != "summaries" || rec.Seq != 2 || rec.Kind != "summary" || !strings.HasSuffix(rec.ID, "-summaries-2") ||
		rec.Record.Sensor != "gh-1" || rec.Record.Start != 10e9 || rec.Record.Mean != 21.5 {
		t.Fatalf("peeked %+v", rec)
	}
	if _, err := time.Parse(time.RFC3339Nano, rec.Stored); err != nil {
		t.Fatal(err)
	}
	// Every lane, priority order; an undecodable record is shown, not fatal.
	code, out, _ = runBuffer(t, "peek", "--data", dir)
	lines = splitLines(out)
	if code != 0 || len(lines) != 5 {
		t.Fatalf("exit %d, %d lines:\n%s", code, len(lines), out)
	}
	if !strings.Contains(lines[0], `"kind":"alert"`) || !strings.Contains(lines[4], `"payload_hex":"6e6f742061207265636f7264"`) || !strings.Contains(lines[4], `"error"`) {
		t.Fatalf("peek all:\n%s", out)
	}
}

func TestBufferCmdCompact(t *testing.T) {
	dir := makeOutbox(t)
	path := filepath.Join(dir, "outbox.db")
	before, _ := os.Stat(path)
	code, out, errs := runBuffer(t, "compact", "--data", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	after, _ := os.Stat(path)
	if after.Size() >= before.Size() || !strings.Contains(out, "compacted") {
		t.Fatalf("size %d -> %d: %s", before.Size(), after.Size(), out)
	}
	if err := buffer.Check(path); err != nil {
		t.Fatal(err)
	}
	// Nothing lost, seqs continue.
	code, out, _ = runBuffer(t, "stats", "--data", dir, "--format", "json")
	var st fileStatsJSON
	json.Unmarshal([]byte(out), &st)
	if code != 0 || st.Lanes[1].Depth != 3 || st.Lanes[0].Depth != 1 || st.Lanes[3].NextSeq != 2001 {
		t.Fatalf("after compaction: %+v", st)
	}
}

func TestBufferCmdErrors(t *testing.T) {
	dir := makeOutbox(t)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, 2, "no command given"},
		{[]string{"--help"}, 0, ""},
		{[]string{"stats", "--help"}, 0, ""},
		{[]string{"bogus"}, 2, "unknown command"},
		{[]string{"stats"}, 2, "--data DIR or --file PATH is required"},
		{[]string{"stats", "--data", dir, "--file", "x"}, 2, "not both"},
		{[]string{"stats", "--data", dir, "extra"}, 2, "unexpected argument"},
		{[]string{"stats", "--data", dir, "--format", "xml"}, 2, "text or json"},
		{[]string{"peek", "--data", dir, "--lane", "nope"}, 2, "unknown lane"},
		{[]string{"peek", "--data", dir, "-n", "-1"}, 2, "-n must be"},
		{[]string{"peek", "--data", dir, "--bogus"}, 2, "not defined"},
		{[]string{"stats", "--data", filepath.Join(dir, "missing")}, 1, "no outbox in " + filepath.Join(dir, "missing") + ": --data expects the gateway's data dir"},
		{[]string{"stats", "--file", filepath.Join(dir, "missing.db")}, 1, "no outbox file " + filepath.Join(dir, "missing.db")},
	} {
		code, out, errs := runBuffer(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q (stdout %q); want %d and %q", tc.args, code, errs, out, tc.code, tc.msg)
		}
		if tc.code == 0 && (!strings.HasPrefix(out, "Usage: ") || errs != "") {
			t.Errorf("%v: help not on stdout once: stdout %q, stderr %q", tc.args, out, errs)
		}
	}
}

func TestBufferCmdLocked(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the lock timeout")
	}
	dir := makeOutbox(t)
	o, err := buffer.Open(buffer.Config{Path: filepath.Join(dir, "outbox.db")}, buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	code, _, errs := runBuffer(t, "stats", "--data", dir)
	if code != 1 || !strings.Contains(errs, "is locked by another process (a running sensorgate?): stop it first") {
		t.Fatalf("exit %d: %s", code, errs)
	}
}

func splitLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if sc.Text() != "" {
			out = append(out, sc.Text())
		}
	}
	return out
}

// TestOutboxRollUpWithRulesHook checks the roll-up contract with the real
// hook the command wires (window.RollUp): a full summaries lane keeps every
// reading's count at a coarser resolution instead of losing windows.
func TestOutboxRollUpWithRulesHook(t *testing.T) {
	ctx := context.Background()
	cfg := buffer.Config{Path: filepath.Join(t.TempDir(), "outbox.db"), CommitDelay: time.Millisecond}
	opts := buffer.Options{RollUp: window.RollUp}
	cfg.Lanes.Summaries.Policy = buffer.PolicyRollUp
	cfg.Lanes.Summaries.RollUpBatch = 16
	const sensors, windows = 20, 30
	o, err := buffer.Open(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	var size int64
	for w := range windows {
		for s := range sensors {
			sensor := "s" + strconv.Itoa(s)
			start, end := int64(w)*10e9, int64(w+1)*10e9
			sum := &ingest.Summary{ID: ingest.SummaryID("10s", sensor, "", "temp", start, end), Window: "10s",
				Sensor: sensor, Metric: "temp", Start: start, End: end, Count: 4, Sum: 80, Min: 19, Max: 21, Mean: 20}
			b, err := ingest.AppendSummary(nil, sum)
			if err != nil {
				t.Fatal(err)
			}
			size = int64(len(b)) + 16
			if err := o.Append(ctx, buffer.LaneSummaries, b); err != nil {
				t.Fatal(err)
			}
		}
		if w == 0 {
			// From now on the lane holds about 8 windows' worth.
			o.Close()
			cfg.Lanes.Summaries.MaxBytes = 8 * sensors * size
			if o, err = buffer.Open(cfg, opts); err != nil {
				t.Fatal(err)
			}
			defer o.Close()
		}
	}
	var after uint64
	counts := map[string]uint64{}
	covered := map[string]int64{}
	for {
		recs, err := o.Read(buffer.LaneSummaries, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			rec, err := ingest.DecodeRecord(r.Payload)
			if err != nil {
				t.Fatal(err)
			}
			counts[rec.Summary.Sensor] += rec.Summary.Count
			covered[rec.Summary.Sensor] += rec.Summary.End - rec.Summary.Start
			after = r.Seq
		}
	}
	st := o.Stats().Lanes[buffer.LaneSummaries]
	if st.RolledUpIn == 0 || st.Bytes > cfg.Lanes.Summaries.MaxBytes {
		t.Fatalf("no roll-up or over the cap: %+v", st)
	}
	// Whatever was evicted outright (reason cap) is gone; everything else is
	// still covered, merged.
	lost := st.Dropped["cap"]
	var total uint64
	for s := range sensors {
		total += counts["s"+strconv.Itoa(s)]
	}
	if want := uint64(sensors*windows)*4 - 4*lost; total != want {
		t.Fatalf("readings covered %d, want %d (dropped %d summaries)", total, want, lost)
	}
	if lost != 0 {
		t.Errorf("window.RollUp could not keep coverage: %d summaries dropped; stats %+v", lost, st)
	}
	t.Logf("depth %d bytes %d (cap %d), rolled up %d into %d", st.Depth, st.Bytes, cfg.Lanes.Summaries.MaxBytes, st.RolledUpIn, st.RolledUpOut)
}
