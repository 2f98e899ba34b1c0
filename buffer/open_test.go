package buffer

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// untouched fails the test unless path still holds want, under its name,
// and nothing was moved aside next to it.
func untouched(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the file is gone: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the file's bytes changed")
	}
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
		t.Fatalf("moved aside: %v", m)
	}
}

// openNoHang runs Open in a goroutine: a FIFO opened for reading blocks
// until a writer comes, so a broken check hangs instead of failing. On a
// hang the test opens the writer end itself to free the goroutine.
func openNoHang(t *testing.T, path string) (*Outbox, error) {
	t.Helper()
	type res struct {
		o   *Outbox
		err error
	}
	done := make(chan res, 1)
	go func() {
		o, err := Open(testConfigAt(path), Options{})
		done <- res{o, err}
	}()
	select {
	case r := <-done:
		return r.o, r.err
	case <-time.After(20 * time.Second):
		if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		r := <-done
		if r.o != nil {
			r.o.Close()
		}
		t.Fatalf("Open blocks on %s", path)
		return nil, nil
	}
}

// TestNonRegularFileRefused: a FIFO, a socket, a directory or a symlink
// to a FIFO in the outbox's place is refused without being opened (Open
// of a FIFO used to block start-up for good) and left where it is; a
// symlink to a good outbox is followed.
func TestNonRegularFileRefused(t *testing.T) {
	checkGoroutines(t)
	for _, tc := range []struct {
		name string
		make func(t *testing.T, path string)
	}{
		{"fifo", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"socket", func(t *testing.T, path string) {
			l, err := net.Listen("unix", path)
			if err != nil {
				t.Skipf("no unix socket here: %v", err)
			}
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			t.Cleanup(func() { l.Close() })
		}},
		{"directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{"symlink to a fifo", func(t *testing.T, path string) {
			fifo := filepath.Join(filepath.Dir(path), "pipe")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(fifo, path); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "outbox.db")
			tc.make(t, path)
			before, _ := os.Lstat(path)
			o, err := openNoHang(t, path)
			if err == nil {
				o.Close()
				t.Fatal("Open took a non-regular file")
			}
			if !errors.Is(err, ErrRefused) || isCorruption(err) {
				t.Fatalf("Open: %v, want ErrRefused", err)
			}
			t.Log(err)
			after, lerr := os.Lstat(path)
			if lerr != nil || after.Mode() != before.Mode() {
				t.Fatalf("the path was changed: %v", lerr)
			}
			if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
				t.Fatalf("moved aside: %v", m)
			}
			if err := Check(path); !errors.Is(err, ErrRefused) {
				t.Fatalf("Check: %v, want ErrRefused", err)
			}
		})
	}
	t.Run("symlink to an outbox", func(t *testing.T) {
		dir := t.TempDir()
		real := filepath.Join(dir, "real.db")
		fillFile(t, real, 10, 5)
		path := filepath.Join(dir, "outbox.db")
		if err := os.Symlink(real, path); err != nil {
			t.Fatal(err)
		}
		o, err := openNoHang(t, path)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		if n := len(readAll(t, o, LaneRaw)); n != 10 {
			t.Fatalf("%d records through the symlink, want 10", n)
		}
	})
}

// TestForeignBoltFileRefused: another program's bbolt file (valid, with
// its own buckets and none of the outbox's) is refused by Open and the
// offline tools, not taken over and not moved aside.
func TestForeignBoltFileRefused(t *testing.T) {
	checkGoroutines(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("other"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("their data"))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	want, _ := os.ReadFile(path)
	o, err := Open(testConfigAt(path), Options{})
	if err == nil {
		o.Close()
		t.Fatal("Open took another program's bbolt file")
	}
	if !errors.Is(err, ErrRefused) || isCorruption(err) {
		t.Fatalf("Open: %v, want ErrRefused", err)
	}
	t.Log(err)
	if err := Check(path); !errors.Is(err, ErrRefused) {
		t.Fatalf("Check: %v, want ErrRefused", err)
	}
	if _, _, err := CompactFile(path); !errors.Is(err, ErrRefused) {
		t.Fatalf("CompactFile: %v, want ErrRefused", err)
	}
	if _, err := Inspect(path); !errors.Is(err, ErrRefused) {
		t.Fatalf("Inspect: %v, want ErrRefused", err)
	}
	if _, err := Peek(path, LaneRaw, 1); !errors.Is(err, ErrRefused) {
		t.Fatalf("Peek: %v, want ErrRefused", err)
	}
	untouched(t, path, want)
}

// TestEmptyBoltFileTaken: a bbolt file with no keys at all (bbolt wrote
// its first pages, the outbox died before its first transaction) is
// initialised, as an empty file is.
func TestEmptyBoltFileTaken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	o := open(t, path, testConfig())
	if st := o.Stats(); st.Quarantined != 0 || o.Epoch() == "" {
		t.Fatalf("stats %+v, epoch %q", st, o.Epoch())
	}
}

// TestSystemErrorsNotQuarantined: when bbolt's open or map fails for a
// reason that says nothing about the contents (ENOMEM from mmap with a
// big backlog, EIO, a read-only file system, EACCES, ENOSPC, EAGAIN), Open
// returns that error and leaves the file as it is; the next Open finds
// every record. The errors come through the boltOpen seam, on the
// read-only scan or on the writable open.
func TestSystemErrorsNotQuarantined(t *testing.T) {
	checkGoroutines(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	fillFile(t, good, 200, 50)
	want, _ := os.ReadFile(good)
	real := boltOpen
	t.Cleanup(func() { boltOpen = real })
	for _, errno := range []syscall.Errno{syscall.ENOMEM, syscall.EIO, syscall.EROFS, syscall.EACCES, syscall.ENOSPC, syscall.EAGAIN} {
		for _, onWrite := range []bool{false, true} {
			name := errno.Error()
			if onWrite {
				name += " on the writable open"
			}
			t.Run(name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "outbox.db")
				os.WriteFile(path, want, 0o600)
				boltOpen = func(p string, mode os.FileMode, opts *bbolt.Options) (*bbolt.DB, error) {
					if opts.ReadOnly != onWrite {
						return nil, errno // as bbolt returns mmap's error
					}
					return real(p, mode, opts)
				}
				o, err := Open(testConfigAt(path), Options{})
				boltOpen = real
				if err == nil {
					o.Close()
					t.Fatal("Open succeeded")
				}
				if !errors.Is(err, errno) || errors.Is(err, ErrCorrupt) {
					t.Fatalf("Open: %v, want %v", err, errno)
				}
				t.Log(err)
				untouched(t, path, want)
				o = open(t, path, testConfig())
				if n := len(readAll(t, o, LaneRaw)); n != 200 {
					t.Fatalf("%d records after the retry, want 200", n)
				}
			})
		}
	}
}

// TestReadOnlyFileSystemNotQuarantined puts a good outbox on a real
// read-only bind mount: Open fails with EROFS and the file stays.
func TestReadOnlyFileSystemNotQuarantined(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "outbox.db")
	fillFile(t, path, 100, 20)
	want, _ := os.ReadFile(path)
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
		t.Skipf("bind mount (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, 0) })
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Skipf("read-only remount: %v", err)
	}
	o, err := Open(testConfigAt(path), Options{})
	if err == nil {
		o.Close()
		t.Fatal("Open succeeded on a read-only file system")
	}
	if !errors.Is(err, syscall.EROFS) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v, want EROFS", err)
	}
	t.Log(err)
	untouched(t, path, want)
}
