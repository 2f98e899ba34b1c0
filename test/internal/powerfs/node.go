package powerfs

import (
	"context"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is a loopback node whose file contents go through the overlays.
// Name operations are the loopback's, applied to the backing directory at
// once (the durability model in doc.go).
type node struct {
	fs.LoopbackNode
	pfs *FS
}

var (
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeStatxer        = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeTmpfiler       = (*node)(nil)
	_ fs.NodeCopyFileRanger = (*node)(nil)
	_ fs.FileReader         = (*handle)(nil)
	_ fs.FileWriter         = (*handle)(nil)
	_ fs.FileFsyncer        = (*handle)(nil)
	_ fs.FileFlusher        = (*handle)(nil)
	_ fs.FileReleaser       = (*handle)(nil)
	_ fs.FileAllocater      = (*handle)(nil)
)

// backingPath is the node's path in the backing directory.
func (n *node) backingPath() string {
	return filepath.Join(n.RootData.Path, n.Path(n.Root()))
}

func (n *node) ino() uint64 { return n.StableAttr().Ino }

// fixSize puts the overlay's size into attributes read from the backing
// file.
func (f *FS) fixSize(ino uint64, size, blocks *uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ov := f.files[ino]; ov != nil {
		*size = uint64(ov.size)
		*blocks = (uint64(ov.size) + 511) / 512
	}
}

func (f *FS) isOff() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.off
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n.pfs.isOff() {
		return nil, syscall.EIO
	}
	ch, errno := n.LoopbackNode.Lookup(ctx, name, out)
	if errno == 0 {
		n.pfs.fixSize(ch.StableAttr().Ino, &out.Attr.Size, &out.Attr.Blocks)
	}
	return ch, errno
}

func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*handle); ok {
		var st syscall.Stat_t
		if err := syscall.Fstat(h.fd, &st); err != nil {
			return fs.ToErrno(err)
		}
		out.FromStat(&st)
	} else if errno := n.LoopbackNode.Getattr(ctx, nil, out); errno != 0 {
		return errno
	}
	n.pfs.fixSize(n.ino(), &out.Size, &out.Blocks)
	return 0
}

func (n *node) Statx(ctx context.Context, fh fs.FileHandle, flags, mask uint32, out *fuse.StatxOut) syscall.Errno {
	if h, ok := fh.(*handle); ok {
		var st unix.Statx_t
		if err := unix.Statx(h.fd, "", int(flags)|unix.AT_EMPTY_PATH, int(mask), &st); err != nil {
			return fs.ToErrno(err)
		}
		out.FromStatx(&st)
	} else if errno := n.LoopbackNode.Statx(ctx, nil, flags, mask, out); errno != 0 {
		return errno
	}
	n.pfs.fixSize(n.ino(), &out.Size, &out.Blocks)
	return 0
}

// Setattr keeps a size change in the overlay; everything else (mode,
// owner, times) goes to the backing file at once.
func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok {
		fd := -1
		if h, ok := fh.(*handle); ok {
			fd = h.fd
		} else {
			var err error
			if fd, err = syscall.Open(n.backingPath(), syscall.O_RDWR, 0); err != nil {
				return fs.ToErrno(err)
			}
			defer syscall.Close(fd)
		}
		if errno := n.pfs.truncate(n.ino(), fd, int64(sz)); errno != 0 {
			return errno
		}
		in.Valid &^= fuse.FATTR_SIZE
	}
	if n.pfs.isOff() {
		return syscall.EIO
	}
	if errno := n.LoopbackNode.Setattr(ctx, nil, in, out); errno != 0 {
		return errno
	}
	n.pfs.fixSize(n.ino(), &out.Size, &out.Blocks)
	return 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if n.pfs.isOff() {
		return nil, 0, syscall.EIO
	}
	trunc := flags&syscall.O_TRUNC != 0
	flags &^= syscall.O_APPEND | syscall.O_TRUNC | fuse.FMODE_EXEC
	fd, err := syscall.Open(n.backingPath(), int(flags)|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	return n.pfs.newHandle(n.ino(), fd, trunc)
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if n.pfs.isOff() {
		return nil, nil, 0, syscall.EIO
	}
	trunc := flags&syscall.O_TRUNC != 0
	flags &^= syscall.O_APPEND | syscall.O_TRUNC
	p := filepath.Join(n.backingPath(), name)
	fd, err := syscall.Open(p, int(flags)|syscall.O_CREAT|syscall.O_CLOEXEC, mode)
	if err != nil {
		return nil, nil, 0, fs.ToErrno(err)
	}
	// The loopback's own lookup makes the inode, with the same identity a
	// later lookup of the name gives.
	ch, errno := n.LoopbackNode.Lookup(ctx, name, out)
	if errno != 0 {
		syscall.Close(fd)
		return nil, nil, 0, errno
	}
	h, fl, errno := n.pfs.newHandle(ch.StableAttr().Ino, fd, trunc)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	n.pfs.fixSize(ch.StableAttr().Ino, &out.Attr.Size, &out.Attr.Blocks)
	return ch, h, fl, 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if n.pfs.isOff() {
		return syscall.EIO
	}
	p := filepath.Join(n.backingPath(), name)
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return fs.ToErrno(err)
	}
	if err := syscall.Unlink(p); err != nil {
		return fs.ToErrno(err)
	}
	if st.Nlink <= 1 {
		n.pfs.forget(st.Ino)
	}
	return 0
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if n.pfs.isOff() {
		return syscall.EIO
	}
	var st syscall.Stat_t
	replaced := false
	if np, ok := newParent.(*node); ok && flags&unix.RENAME_EXCHANGE == 0 {
		replaced = syscall.Lstat(filepath.Join(np.backingPath(), newName), &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFREG
	}
	if errno := n.LoopbackNode.Rename(ctx, name, newParent, newName, flags); errno != 0 {
		return errno
	}
	if replaced && st.Nlink <= 1 {
		n.pfs.forget(st.Ino)
	}
	return 0
}

// Tmpfile is refused: a file without a name cannot be looked up again to
// apply the durability model to it.
func (n *node) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.ENOTSUP
}

// CopyFileRange is refused so that the kernel falls back to reads and
// writes, which go through the overlay.
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut, length, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOTSUP
}

// forget drops the overlay of a file that no longer has a name, once no
// handle holds it.
func (f *FS) forget(ino uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.opens[ino] > 0 {
		return
	}
	if ov := f.files[ino]; ov != nil {
		ov.close()
		delete(f.files, ino)
	}
}

// truncate sets a file's size in its overlay.
func (f *FS) truncate(ino uint64, fd int, sz int64) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	ov, errno := f.overlayLocked(ino, fd)
	if errno != 0 {
		return errno
	}
	ov.truncate(sz)
	return 0
}

func (f *FS) overlayLocked(ino uint64, fd int) (*overlay, syscall.Errno) {
	if f.off {
		return nil, syscall.EIO
	}
	if ov := f.files[ino]; ov != nil {
		return ov, 0
	}
	ov, err := newOverlay(fd)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	f.files[ino] = ov
	return ov, 0
}

// handle is an open file: reads and writes go through the overlay of its
// inode, the descriptor is only for reading the synced state.
type handle struct {
	pfs *FS
	ino uint64
	fd  int
}

func (f *FS) newHandle(ino uint64, fd int, trunc bool) (*handle, uint32, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		syscall.Close(fd)
		return nil, 0, syscall.EIO
	}
	if trunc {
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			syscall.Close(fd)
			return nil, 0, fs.ToErrno(err)
		}
		if st.Size > 0 || f.files[ino] != nil {
			ov, errno := f.overlayLocked(ino, fd)
			if errno != 0 {
				syscall.Close(fd)
				return nil, 0, errno
			}
			ov.truncate(0)
		}
	}
	f.opens[ino]++
	// fuseFlags 0: no direct_io, so mmap works through the page cache, and
	// no keep_cache, so each open re-reads what the overlay holds.
	return &handle{pfs: f, ino: ino, fd: fd}, 0, 0
}

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f := h.pfs
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		return nil, syscall.EIO
	}
	if ov := f.files[h.ino]; ov != nil {
		n, err := ov.read(dest, off)
		if err != nil {
			return nil, fs.ToErrno(err)
		}
		return fuse.ReadResultData(dest[:n]), 0
	}
	n, err := syscall.Pread(h.fd, dest, off)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	f := h.pfs
	f.mu.Lock()
	defer f.mu.Unlock()
	ov, errno := f.overlayLocked(h.ino, h.fd)
	if errno != 0 {
		return 0, errno
	}
	if err := ov.write(data, off); err != nil {
		return 0, fs.ToErrno(err)
	}
	f.stats.Writes++
	f.stats.WriteBytes += uint64(len(data))
	return uint32(len(data)), 0
}

// Fsync (fsync and fdatasync alike) makes the file's overlay durable.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	f := h.pfs
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		return syscall.EIO
	}
	f.stats.Syncs++
	ov := f.files[h.ino]
	if ov == nil {
		return 0
	}
	f.stats.SyncedBytes += uint64(len(ov.pages)) * pageSize
	if err := ov.sync(); err != nil {
		return syscall.EIO
	}
	return 0
}

// Flush (close(2) of one descriptor) makes nothing durable.
func (h *handle) Flush(ctx context.Context) syscall.Errno { return 0 }

func (h *handle) Release(ctx context.Context) syscall.Errno {
	f := h.pfs
	f.mu.Lock()
	defer f.mu.Unlock()
	var st syscall.Stat_t
	gone := syscall.Fstat(h.fd, &st) == nil && st.Nlink == 0
	syscall.Close(h.fd)
	if f.opens[h.ino]--; f.opens[h.ino] <= 0 {
		delete(f.opens, h.ino)
		if ov := f.files[h.ino]; gone && ov != nil {
			ov.close()
			delete(f.files, h.ino)
		}
	}
	return 0
}

// Allocate supports plain fallocate (grow, zeros) and KEEP_SIZE (a no-op
// here: the overlay allocates on write).
func (h *handle) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	f := h.pfs
	f.mu.Lock()
	defer f.mu.Unlock()
	ov, errno := f.overlayLocked(h.ino, h.fd)
	if errno != 0 {
		return errno
	}
	switch mode {
	case 0:
		if end := int64(off + size); end > ov.size {
			ov.truncate(end)
		}
		return 0
	case unix.FALLOC_FL_KEEP_SIZE:
		return 0
	}
	return syscall.EOPNOTSUPP
}
