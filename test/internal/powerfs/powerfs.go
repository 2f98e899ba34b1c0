package powerfs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Install is what makes powerfs mountable on Debian.
const Install = "apt-get install fuse3 (and /dev/fuse: modprobe fuse; in a container --device /dev/fuse --cap-add SYS_ADMIN)"

// Stats counts what the file system saw since Mount.
type Stats struct {
	Writes      uint64 // write requests
	WriteBytes  uint64
	Syncs       uint64 // fsync and fdatasync requests on files
	SyncedBytes uint64 // overlay bytes made durable by them
	// DirtyBytes and DirtyFiles are what a cut would discard now (whole
	// overlay pages); after Cut, what it discarded.
	DirtyBytes uint64
	DirtyFiles int
}

// FS is one mount of a backing directory.
type FS struct {
	backing, mountpoint string
	server              *fuse.Server

	mu    sync.Mutex
	off   bool
	files map[uint64]*overlay // by backing inode
	opens map[uint64]int      // open handles by backing inode
	stats Stats
}

// Available reports why powerfs cannot mount here, or nil.
func Available() error {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("powerfs: /dev/fuse: %w", err)
	}
	f.Close()
	if os.Geteuid() == 0 {
		return nil
	}
	for _, bin := range []string{"fusermount3", "fusermount"} {
		if _, err := exec.LookPath(bin); err == nil {
			return nil
		}
	}
	return errors.New("powerfs: not root and no fusermount3 in PATH")
}

// Require skips tb when powerfs cannot mount here, with what to install;
// under CI=true it fails instead, because CI must run the power-cut tests.
func Require(tb testing.TB) {
	tb.Helper()
	err := Available()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%v under CI: install %s", err, Install)
	}
	tb.Skipf("%v: install %s", err, Install)
}

// Mount mounts backing (a directory) at mountpoint (an empty directory)
// and returns once the mount is live.
func Mount(backing, mountpoint string) (*FS, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		return nil, fmt.Errorf("powerfs: backing %s: %w", backing, err)
	}
	f := &FS{backing: backing, mountpoint: mountpoint, files: map[uint64]*overlay{}, opens: map[uint64]int{}}
	lr := &fs.LoopbackRoot{Path: backing, Dev: uint64(st.Dev)}
	lr.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
		return &node{LoopbackNode: fs.LoopbackNode{RootData: r}, pfs: f}
	}
	root := lr.NewNode(lr, nil, "", &st)
	lr.RootNode = root
	timeout := time.Second
	opts := &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName:        backing,
			Name:          "powerfs",
			DirectMount:   os.Geteuid() == 0,
			DisableXAttrs: true,
			// No locking requests: the kernel keeps flock and POSIX locks
			// locally, which is all one machine needs.
			EnableLocks: false,
		},
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
	}
	srv, err := fs.Mount(mountpoint, root, opts)
	if err != nil {
		return nil, fmt.Errorf("powerfs: mount %s on %s: %w", backing, mountpoint, err)
	}
	f.server = srv
	return f, nil
}

// Mountpoint is where the file system is mounted.
func (f *FS) Mountpoint() string { return f.mountpoint }

// Stats returns the counters so far.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats
	if !f.off {
		s.DirtyBytes, s.DirtyFiles = f.dirtyLocked()
	}
	return s
}

func (f *FS) dirtyLocked() (uint64, int) {
	var n uint64
	files := 0
	for _, ov := range f.files {
		if len(ov.pages) > 0 || ov.size != ov.valid || ov.truncated {
			files++
		}
		n += uint64(len(ov.pages)) * pageSize
	}
	return n, files
}

// Cut simulates a power cut: every write not yet synced is discarded,
// every request from now on fails with EIO, and the file system is
// unmounted (lazily if something still holds it open). Kill the processes
// that use it first (see the package caveats).
func (f *FS) Cut() error {
	f.mu.Lock()
	if !f.off {
		f.stats.DirtyBytes, f.stats.DirtyFiles = f.dirtyLocked()
		f.off = true
		for ino, ov := range f.files {
			ov.close()
			delete(f.files, ino)
		}
	}
	f.mu.Unlock()
	return f.unmount()
}

// Unmount is a clean shutdown: every overlay is made durable, then the
// file system is unmounted.
func (f *FS) Unmount() error {
	f.mu.Lock()
	var errs []error
	if !f.off {
		for ino, ov := range f.files {
			if err := ov.sync(); err != nil {
				errs = append(errs, err)
			}
			ov.close()
			delete(f.files, ino)
		}
		f.off = true
	}
	f.mu.Unlock()
	errs = append(errs, f.unmount())
	return errors.Join(errs...)
}

func (f *FS) unmount() error {
	if f.server == nil {
		return nil
	}
	err := f.server.Unmount()
	if err != nil {
		// Busy: detach it, the kernel finishes when the last user lets go.
		if derr := syscall.Unmount(f.mountpoint, syscall.MNT_DETACH); derr != nil {
			if out, ferr := exec.Command("fusermount3", "-u", "-z", f.mountpoint).CombinedOutput(); ferr != nil {
				return fmt.Errorf("powerfs: unmount %s: %w (lazy: %v; fusermount3: %v %s)", f.mountpoint, err, derr, ferr, out)
			}
		}
	}
	f.server.Wait()
	f.server = nil
	return nil
}
