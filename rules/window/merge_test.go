package window

import (
	"bytes"
	"errors"
	"testing"

	"github.com/sensorgate/sensorgate/ingest"
)

func sum(window, sensor string, start, end int64, rev uint32, vals ...float64) *ingest.Summary {
	s := &ingest.Summary{Window: window, Sensor: sensor, Metric: "m", Start: start, End: end, Revision: rev}
	for i, v := range vals {
		t := start + int64(i)
		if s.Count == 0 {
			s.Min, s.Max, s.First, s.FirstTime = v, v, v, t
		}
		s.Count++
		s.Sum += v
		s.Min, s.Max = min(s.Min, v), max(s.Max, v)
		s.Last, s.LastTime = v, t
	}
	if s.Count > 0 {
		s.Mean = s.Sum / float64(s.Count)
		for _, v := range vals {
			s.M2 += (v - s.Mean) * (v - s.Mean)
		}
	}
	s.ID = ingest.SummaryID(window, sensor, "", "m", start, end)
	return s
}

func enc(t testing.TB, s *ingest.Summary) []byte {
	b, err := ingest.AppendSummary(nil, s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decSum(t testing.TB, b []byte) *ingest.Summary {
	r, err := ingest.DecodeRecord(b)
	if err != nil || r.Summary == nil {
		t.Fatalf("decode: %v", err)
	}
	return r.Summary
}

func TestMergeErrors(t *testing.T) {
	a := sum("w", "s", 0, 10, 0, 1)
	if err := Merge(a, sum("w", "x", 10, 20, 0, 1)); !errors.Is(err, ErrMergeKey) {
		t.Errorf("key: %v", err)
	}
	if err := Merge(a, sum("w", "s", 5, 15, 0, 1)); !errors.Is(err, ErrMergeOverlap) {
		t.Errorf("overlap: %v", err)
	}
	// Either order, and empty summaries.
	b := sum("w", "s", 10, 20, 0, 5, 7)
	if err := Merge(b, a); err != nil || b.Start != 0 || b.End != 20 || b.Count != 3 || b.First != 1 || b.Last != 7 || b.Sum != 13 {
		t.Errorf("reverse merge: %v %+v", err, b)
	}
	e := sum("w", "s", 20, 30, 0)
	e.Late = 2
	if err := Merge(b, e); err != nil || b.Count != 3 || b.End != 30 || b.Late != 2 || b.Min != 1 || b.Max != 7 {
		t.Errorf("merge with empty: %v %+v", err, b)
	}
}

func TestRollUp(t *testing.T) {
	alert, _ := ingest.AppendAlert(nil, &ingest.Alert{ID: "x", Rule: "r", State: "fire"})
	bad := []byte{'S', 0xc1}
	in := [][]byte{
		enc(t, sum("w", "a", 0, 10, 0, 1, 2)),    // 0: a [0,10)
		alert,                                    // 1
		enc(t, sum("w", "b", 0, 10, 0, 100)),     // 2: b [0,10) alone
		enc(t, sum("w", "a", 10, 20, 0, 3)),      // 3: a [10,20) rev 0
		bad,                                      // 4
		enc(t, sum("w", "a", 10, 20, 1, 3, -4)),  // 5: a [10,20) rev 1 supersedes 3
		enc(t, sum("w", "a", 30, 40, 0, 9)),      // 6: a [30,40): not adjacent
		enc(t, sum("w2", "a", 20, 30, 0, 50)),    // 7: other window rule
		enc(t, sum("w", "a", 20, 30, 0, 5)),      // 8: a [20,30): joins 0+5, and 6
		enc(t, sum("w", "b", 20, 30, 0, 100, 1)), // 9: b, not adjacent to 2
	}
	orig := make([][]byte, len(in))
	for i, p := range in {
		orig[i] = bytes.Clone(p)
	}
	out, err := RollUp(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if !bytes.Equal(in[i], orig[i]) {
			t.Fatalf("input %d modified", i)
		}
	}
	if len(out) != 6 {
		t.Fatalf("%d records out, want 6", len(out))
	}
	m := decSum(t, out[0])
	if m.Sensor != "a" || m.Start != 0 || m.End != 40 || m.Count != 6 || m.Sum != 1+2+3-4+5+9 || m.Min != -4 || m.Max != 9 ||
		m.First != 1 || m.Last != 9 || m.ID != ingest.SummaryID("w", "a", "", "m", 0, 40) || m.Revision != 0 {
		t.Errorf("merged %+v", m)
	}
	for i, want := range [][]byte{nil, alert, in[2], bad, in[7], in[9]} {
		if i > 0 && !bytes.Equal(out[i], want) {
			t.Errorf("out[%d] = %q, want %q (unchanged)", i, out[i], want)
		}
	}
	// Idempotent once merged.
	again, err := RollUp(out)
	if err != nil || len(again) != len(out) {
		t.Fatalf("second roll-up: %v, %d records", err, len(again))
	}
}

func FuzzRollUp(f *testing.F) {
	f.Add(enc(f, sum("w", "a", 0, 10, 0, 1, 2)), enc(f, sum("w", "a", 10, 20, 0, 3)))
	f.Add([]byte{'S'}, []byte{'A', 0x80})
	f.Add(enc(f, sum("w", "a", 10, 20, 0, 3)), enc(f, sum("w", "a", 0, 10, 1, -1)))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		in := [][]byte{a, b, a}
		out, err := RollUp(in)
		if err != nil {
			return
		}
		if len(out) > len(in) {
			t.Fatalf("roll-up grew %d -> %d", len(in), len(out))
		}
		var nIn, nOut uint64
		for _, p := range in {
			if r, err := ingest.DecodeRecord(p); err == nil && r.Summary != nil {
				nIn += r.Summary.Count
			}
		}
		for _, p := range out {
			if r, err := ingest.DecodeRecord(p); err == nil && r.Summary != nil {
				nOut += r.Summary.Count
			}
		}
		if nOut > nIn {
			t.Fatalf("counts grew %d -> %d", nIn, nOut)
		}
	})
}
