package powerfs

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// childEnv makes the test binary a child that uses the mount ("bbolt:PATH"
// or "mmap:PATH"). A Go process must not fault in pages of a FUSE mapping
// that it serves itself: a stop-the-world GC waits for the faulting thread,
// which waits for the server goroutines the GC stopped.
const childEnv = "POWERFS_CHILD"

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		mode, p, _ := strings.Cut(v, ":")
		if mode == "mmap" {
			os.Exit(mmapChild(p))
		}
		os.Exit(bboltChild(p))
	}
	os.Exit(m.Run())
}

// mount mounts a fresh backing directory and unmounts it (cleanly) at the
// end of the test unless the test cut it.
func mount(t *testing.T) (backing, mnt string, f *FS) {
	t.Helper()
	Require(t)
	backing, mnt = t.TempDir(), t.TempDir()
	f = remount(t, backing, mnt)
	return backing, mnt, f
}

func remount(t *testing.T, backing, mnt string) *FS {
	t.Helper()
	f, err := Mount(backing, mnt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Unmount() })
	return f
}

func cut(t *testing.T, f *FS) {
	t.Helper()
	if err := f.Cut(); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSyncedWriteSurvivesCut(t *testing.T) {
	backing, mnt, f := mount(t)
	p := filepath.Join(mnt, "a")
	fh, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	synced := bytes.Repeat([]byte("durable "), 2000) // several pages
	if _, err := fh.Write(synced); err != nil {
		t.Fatal(err)
	}
	if err := fh.Sync(); err != nil {
		t.Fatal(err)
	}
	// Overwrite part of it and grow it, without a sync.
	if _, err := fh.WriteAt([]byte("LOST LOST"), 100); err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte("tail"), int64(len(synced))+5000); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	got := readFile(t, p)
	if len(got) != len(synced)+5004 || string(got[100:109]) != "LOST LOST" {
		t.Fatalf("while powered, reads must see unsynced writes: len %d, %q", len(got), got[100:109])
	}
	if n := f.Stats().DirtyBytes; n == 0 {
		t.Fatalf("stats: nothing dirty before the cut")
	}
	cut(t, f)
	if f.Stats().DirtyBytes == 0 {
		t.Fatalf("stats: the cut discarded nothing")
	}
	remount(t, backing, mnt)
	if got := readFile(t, p); !bytes.Equal(got, synced) {
		t.Fatalf("after the cut: len %d, want the synced %d bytes", len(got), len(synced))
	}
}

func TestUnsyncedWriteIsLost(t *testing.T) {
	backing, mnt, f := mount(t)
	p := filepath.Join(mnt, "new")
	if err := os.WriteFile(p, []byte("never synced"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := string(readFile(t, p)); got != "never synced" {
		t.Fatalf("while powered: %q", got)
	}
	cut(t, f)
	remount(t, backing, mnt)
	// The model: the name is durable, the contents are not.
	if got := readFile(t, p); len(got) != 0 {
		t.Fatalf("after the cut: %q, want an empty file", got)
	}
}

func TestTruncateIsUndone(t *testing.T) {
	backing, mnt, f := mount(t)
	p := filepath.Join(mnt, "t")
	orig := bytes.Repeat([]byte{0xAB}, 10000)
	fh, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	fh.Write(orig)
	fh.Sync()
	if err := fh.Truncate(100); err != nil {
		t.Fatal(err)
	}
	if err := fh.Truncate(8000); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, p)
	if len(got) != 8000 || got[99] != 0xAB || got[100] != 0 || got[7999] != 0 {
		t.Fatalf("shrink then grow must read zeros past the cut: len %d, [99]=%x [100]=%x", len(got), got[99], got[100])
	}
	if st, _ := os.Stat(p); st.Size() != 8000 {
		t.Fatalf("stat size %d, want 8000", st.Size())
	}
	fh.Close()
	cut(t, f)
	remount(t, backing, mnt)
	if got := readFile(t, p); !bytes.Equal(got, orig) {
		t.Fatalf("after the cut: len %d, want the synced 10000 bytes", len(got))
	}
}

func TestMmapSeesUnsyncedWrites(t *testing.T) {
	_, mnt, _ := mount(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=mmap:"+filepath.Join(mnt, "m"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

// mmapChild writes to a file it has mapped, without a sync, and checks
// that the mapping shows each write.
func mmapChild(p string) int {
	fh, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err == nil {
		err = fh.Truncate(3 * pageSize)
	}
	if err != nil {
		fmt.Println(err)
		return 1
	}
	m, err := syscall.Mmap(int(fh.Fd()), 0, 3*pageSize, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		fmt.Println("mmap:", err)
		return 1
	}
	for i, s := range []string{"first", "second", "third"} {
		if _, err := fh.WriteAt([]byte(s), int64(i*pageSize+7)); err != nil {
			fmt.Println(err)
			return 1
		}
		if got := string(m[i*pageSize+7 : i*pageSize+7+len(s)]); got != s {
			fmt.Printf("mapping shows %q, want %q\n", got, s)
			return 1
		}
	}
	return 0
}

// TestBboltPowerCut runs a bbolt writer in a child process on the mount,
// kills it at a random commit and cuts the power at once; the next child
// opens what survived: the file passes bbolt's check, every commit the
// writer saw return is there, and the keys are exactly those after some
// commit.
func TestBboltPowerCut(t *testing.T) {
	Require(t)
	backing, mnt := t.TempDir(), t.TempDir()
	db := filepath.Join(mnt, "db")
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	cuts := 12
	if testing.Short() {
		cuts = 4
	}
	var discarded, reported uint64
	for i := 0; i <= cuts; i++ {
		f := remount(t, backing, mnt)
		after := 5 + rng.IntN(150)
		if i == cuts {
			after = 0 // only open and check what the last cut left
		}
		// The kill lands a random moment after a reported commit, mostly
		// inside a later one.
		start, last := runChild(t, db, after, time.Duration(rng.IntN(3000))*time.Microsecond)
		if i > 0 && (start < reported || start > reported+1) {
			t.Fatalf("cut %d: the writer saw commit %d return, the file holds commits up to %d", i, reported, start)
		}
		reported = last
		discarded += f.Stats().DirtyBytes
		cut(t, f)
	}
	if discarded == 0 {
		t.Fatalf("no cut discarded anything: the test did not cut in the middle of writes")
	}
	t.Logf("%d cuts, %d commits survived, %d unsynced bytes in flight at the cuts (in total)", cuts, reported, discarded)
}

// keep is how many keys a writer's transaction keeps: commit i puts key i
// and deletes key i-keep, so the file's state names the last commit.
const keep = 40

func value(i uint64) []byte {
	return bytes.Repeat([]byte{byte(i)}, 100+int(i%7)*700)
}

func key(i uint64) []byte { return binary.BigEndian.AppendUint64(nil, i) }

// runChild starts the writer, kills it (SIGKILL) `delay` after it reported
// `after` commits, and returns the commit it found on start and the last one it
// reported.
func runChild(t *testing.T, db string, after int, delay time.Duration) (start, last uint64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=bbolt:"+db)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	seen, started := 0, false
	for sc.Scan() {
		word, num, _ := strings.Cut(sc.Text(), " ")
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			continue
		}
		switch word {
		case "start":
			start, last, started = n, n, true
			if after == 0 {
				cmd.Process.Kill()
			}
		case "ok":
			last = n
			if seen++; seen == after {
				time.AfterFunc(delay, func() { cmd.Process.Kill() })
			}
		}
	}
	cmd.Wait()
	if !started || seen < after {
		t.Fatalf("writer stopped after %d commits: %s", seen, stderr.String())
	}
	return start, last
}

func boltOptions() *bbolt.Options {
	// As the gateway's outbox opens it (buffer/file.go).
	return &bbolt.Options{NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}
}

// checkDB runs bbolt's check and returns the last commit the file holds,
// or an error unless the keys are exactly those of that commit.
func checkDB(db *bbolt.DB) (uint64, error) {
	var n uint64
	err := db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("check: %w", err)
		}
		b := tx.Bucket([]byte("b"))
		if b == nil {
			return nil
		}
		k, _ := b.Cursor().Last()
		if k == nil {
			return nil
		}
		n = binary.BigEndian.Uint64(k)
		want := uint64(0)
		if n > keep {
			want = n - keep
		}
		return b.ForEach(func(k, v []byte) error {
			want++
			if i := binary.BigEndian.Uint64(k); i != want || !bytes.Equal(v, value(i)) {
				return fmt.Errorf("key %d (in a state after commit %d) is wrong or should be gone", i, n)
			}
			return nil
		})
	})
	return n, err
}

// bboltChild opens the bbolt file at path, checks it and prints "start N"
// (the last commit it holds), then commits transactions until killed,
// printing "ok N" after commit N returned.
func bboltChild(path string) int {
	db, err := bbolt.Open(path, 0o600, boltOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, "reopen:", err)
		return 1
	}
	last, err := checkDB(db)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintf(os.Stdout, "start %d\n", last)
	for i := last + 1; ; i++ {
		err := db.Update(func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			if i > keep {
				if err := b.Delete(key(i - keep)); err != nil {
					return err
				}
			}
			return b.Put(key(i), value(i))
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintf(os.Stdout, "ok %d\n", i)
	}
}
