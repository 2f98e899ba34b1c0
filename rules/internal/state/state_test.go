package state

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestNumRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	vals := []float64{0, math.Copysign(0, -1), 1, -1, 21.37, -0.001, 1e-7, 123456.789012, 1 << 52, -1 << 60, math.MaxFloat64,
		math.SmallestNonzeroFloat64, math.Inf(1), math.Inf(-1), 0.1 + 0.2}
	for range 10000 {
		vals = append(vals, rng.NormFloat64()*1e3, math.Round(rng.NormFloat64()*1e5)/100, float64(rng.IntN(1e6))/1e3)
	}
	var b []byte
	for _, v := range vals {
		b = AppendNum(b, v)
	}
	d := &Dec{B: b}
	for _, v := range vals {
		got := d.Num()
		if math.Float64bits(got) != math.Float64bits(v) {
			t.Fatalf("%v (%x) came back as %v (%x)", v, math.Float64bits(v), got, math.Float64bits(got))
		}
	}
	if err := d.Done(); err != nil {
		t.Fatal(err)
	}
	if n := len(AppendNum(nil, 21.37)); n > 3 {
		t.Fatalf("21.37 takes %d bytes", n)
	}
	nan := (&Dec{B: AppendNum(nil, math.NaN())}).Num()
	if !math.IsNaN(nan) {
		t.Fatalf("NaN came back as %v", nan)
	}
}

func TestBatchAndDecoder(t *testing.T) {
	var b Batch
	for round := range 2 {
		b.Reset()
		b.Start()
		b.Buf = AppendKey(b.Buf, "r/x/", "a", "b")
		b.Mid()
		b.Buf = AppendString(append(b.Buf, 1), "value")
		b.End()
		b.Start()
		b.Buf = AppendKey(b.Buf, "r/x/", "gone", "")
		b.Mid()
		b.Delete()
		var got []string
		b.Each(func(k, v []byte) {
			if v == nil {
				got = append(got, string(k)+"=nil")
				return
			}
			d, err := Versioned(v, 1)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(k)+"="+d.String())
			if err := d.Done(); err != nil {
				t.Fatal(err)
			}
		})
		if len(got) != 2 || got[0] != "r/x/a\x00b=value" || got[1] != "r/x/gone\x00=nil" {
			t.Fatalf("round %d: %q", round, got)
		}
		if p, err := SplitKey([]byte("r/x/a\x00b"), "r/x/", 2); err != nil || p[0] != "a" || p[1] != "b" {
			t.Fatalf("split %q %v", p, err)
		}
	}
	d := &Dec{B: []byte{0x80}}
	if d.Uvarint(); d.Err == nil || d.Float() != 0 || d.Done() == nil {
		t.Fatal("a truncated varint is not an error")
	}
}
