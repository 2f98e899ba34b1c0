package statelog

import (
	"bytes"
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var b []byte
	b = AppendDeletePrefix(b, []byte("r/"))
	b = AppendPut(b, []byte("r/w/a"), []byte("1"))
	b = AppendPut(b, []byte("src/x"), []byte{})
	b = AppendDelete(b, []byte("r/w/b"))
	var got []string
	if err := Replay(b, func(op byte, k, v []byte) error {
		got = append(got, string(op)+":"+string(k)+"="+string(v))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{"X:r/=", "P:r/w/a=1", "P:src/x=", "D:r/w/b="}
	if len(got) != len(want) {
		t.Fatalf("%q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%q, want %q", got, want)
		}
	}
	for _, bad := range [][]byte{{'Q', 1, 'k'}, {'P', 1}, {'P', 1, 'k', 5, 'v'}, {'D', 0}} {
		if err := Replay(bad, func(byte, []byte, []byte) error { return nil }); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Replay(%q) = %v, want ErrCorrupt", bad, err)
		}
	}
}

// FuzzReplay: arbitrary bytes never panic, and what Replay accepts
// re-encodes to the same bytes.
func FuzzReplay(f *testing.F) {
	f.Add(AppendPut(AppendDelete(nil, []byte("a")), []byte("b"), []byte("c")))
	f.Add([]byte{'X', 2, 'r', '/'})
	f.Add([]byte{'P', 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		var re []byte
		err := Replay(data, func(op byte, k, v []byte) error {
			switch op {
			case OpPut:
				re = AppendPut(re, k, v)
			case OpDelete:
				re = AppendDelete(re, k)
			case OpDeletePrefix:
				re = AppendDeletePrefix(re, k)
			default:
				t.Fatalf("op %q", op)
			}
			return nil
		})
		if err == nil && !bytes.Equal(re, data) {
			// Non-minimal varints decode but re-encode shorter: only
			// lengths may differ.
			if len(re) > len(data) {
				t.Fatalf("re-encoded %q is longer than %q", re, data)
			}
		}
	})
}
