package boltcheck

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"
)

// TestFile: a file bbolt wrote passes, an empty one is ErrEmpty, a
// truncated one and one of random bytes are ErrDamaged, a missing one is
// the os error. (The outbox's fault tests damage pages one by one.)
func TestFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	db, err := bbolt.Open(good, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		for i := range 1000 {
			if err := b.Put([]byte{byte(i >> 8), byte(i)}, make([]byte, 100)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := File(good); err != nil {
		t.Fatalf("bbolt's own file: %v", err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := File(write("empty.db", nil)); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty file: %v, want ErrEmpty", err)
	}
	if err := File(write("short.db", data[:len(data)/2])); !errors.Is(err, ErrDamaged) {
		t.Errorf("truncated file: %v, want ErrDamaged", err)
	}
	junk := make([]byte, 16384)
	for i := range junk {
		junk[i] = byte(i*7 + 3)
	}
	if err := File(write("junk.db", junk)); !errors.Is(err, ErrDamaged) {
		t.Errorf("random bytes: %v, want ErrDamaged", err)
	}
	if err := File(filepath.Join(dir, "missing.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want os.ErrNotExist", err)
	}
}
