package buffer

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// A checkpoint's records and state commit together and survive a reopen;
// a failing checkpoint leaves neither.
func TestCommitCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := open(t, path, testConfig())
	cp := &Checkpoint{
		Records: []Pending{{LaneSummaries, []byte("s1")}, {LaneAlerts, []byte("a1")}},
		State:   []StateChange{{[]byte("w/a"), []byte("1")}, {[]byte("w/b"), []byte("2")}, {[]byte("s/x"), []byte("3")}},
	}
	if err := o.Commit(cp); err != nil {
		t.Fatal(err)
	}
	before := o.Stats()
	if before.WriteTxs == 0 || before.BytesWritten < uint64(before.PageSize) || before.StateChanges != 3 {
		t.Fatalf("write counters after one checkpoint: %+v", before)
	}
	// Delete one key, change another; an empty key fails the whole commit.
	cp.Reset()
	cp.State = append(cp.State, StateChange{[]byte("w/a"), nil}, StateChange{[]byte("w/b"), []byte("22")})
	if err := o.Commit(cp); err != nil {
		t.Fatal(err)
	}
	// A replace: everything under s/ goes, then s/y is written.
	cp.Reset()
	cp.DeletePrefix = []byte("s/")
	cp.State = append(cp.State, StateChange{[]byte("s/y"), []byte("4")})
	if err := o.Commit(cp); err != nil {
		t.Fatal(err)
	}
	bad := &Checkpoint{Records: []Pending{{LaneSummaries, []byte("s2")}}, State: []StateChange{{Key: nil, Value: []byte("x")}}}
	if err := o.Commit(bad); err == nil {
		t.Fatal("a checkpoint with an empty key committed")
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = open(t, path, testConfig())
	var got []string
	if err := o.LoadState([]byte("w/"), func(k, v []byte) error {
		got = append(got, fmt.Sprintf("%s=%s", k, v))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := "[w/b=22]"; fmt.Sprint(got) != want {
		t.Fatalf("state under w/ = %v, want %s", got, want)
	}
	got = nil
	if err := o.LoadState(nil, func(k, v []byte) error {
		got = append(got, fmt.Sprintf("%s=%s", k, v))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := "[s/y=4 w/b=22]"; fmt.Sprint(got) != want {
		t.Fatalf("state = %v, want %s", got, want)
	}
	recs, err := o.Read(LaneSummaries, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || !bytes.Equal(recs[0].Payload, []byte("s1")) {
		t.Fatalf("summaries lane holds %d records, want only s1 (the failed checkpoint's must not be there)", len(recs))
	}
}

// The state log: many checkpoints over a few hundred keys, past several
// folds into the base and a reopen, always read back as the last value of
// every key (deletes, prefix deletes and all).
func TestStateLogFolds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := open(t, path, testConfig())
	want := map[string]string{}
	cp := &Checkpoint{}
	check := func(when string) {
		t.Helper()
		got := map[string]string{}
		if err := o.LoadState(nil, func(k, v []byte) error {
			got[string(k)] = string(v)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: state has %d keys, want %d\n got %v\nwant %v", when, len(got), len(want), got, want)
		}
	}
	for i := range 3*stateCompactEntries + 17 {
		cp.Reset()
		for j := range 5 {
			k := fmt.Sprintf("r/w/%03d", (i*7+j*31)%300)
			if (i+j)%11 == 0 {
				cp.State = append(cp.State, StateChange{[]byte(k), nil})
				delete(want, k)
			} else {
				v := fmt.Sprintf("%d.%d", i, j)
				cp.State = append(cp.State, StateChange{[]byte(k), []byte(v)})
				want[k] = v
			}
		}
		if i%97 == 0 {
			k := fmt.Sprintf("src/x/%d", i)
			cp.State = append(cp.State, StateChange{[]byte(k), []byte("h")})
			want[k] = "h"
		}
		if i == 700 { // a replace of everything under r/
			cp.DeletePrefix = []byte("r/")
			for k := range want {
				if strings.HasPrefix(k, "r/") {
					delete(want, k)
				}
			}
			for _, c := range cp.State {
				if c.Value != nil {
					want[string(c.Key)] = string(c.Value)
				}
			}
		}
		if err := o.Commit(cp); err != nil {
			t.Fatal(err)
		}
		if i%250 == 0 {
			check(fmt.Sprintf("after checkpoint %d", i))
		}
	}
	check("at the end")
	if n := o.Stats().StateFolds; n < 3 {
		t.Fatalf("%d folds of the log, want >= 3", n)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = open(t, path, testConfig())
	check("after a reopen")
}
