package boltcheck

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
)

// bbolt's meta page layout (page header 16 bytes, then the meta).
const (
	boltMagic     = 0xED0CDAED
	FormatVersion = 2 // bbolt's file format version, the one this package reads
	pageHeader    = 16
	metaSize      = 64 // magic..checksum
)

type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64
	txid     uint64
}

// Errors File returns besides those of reading the file.
var (
	// ErrDamaged is wrapped by every error about a damaged file.
	ErrDamaged = errors.New("boltcheck: damaged bbolt file")
	// ErrEmpty: the file exists but is empty, as bbolt leaves it when it
	// dies before writing the first pages (bbolt initialises it).
	ErrEmpty = errors.New("boltcheck: empty file")
	// ErrNotRegular: the path is a FIFO, socket, device or directory (or a
	// symlink to one). File does not open it: opening a FIFO blocks until
	// a writer comes, and nothing there is a bbolt file.
	ErrNotRegular = errors.New("boltcheck: not a regular file")
)

// File validates the meta pages of the bbolt file at path, that the file
// holds every page the newest valid meta claims, and every page reachable
// from it (see validatePages), before bbolt maps it: bbolt itself would
// fault on a truncated file (SIGBUS is not recoverable).
func File(path string) error {
	// Stat follows symlinks: a link to a regular file is checked (and
	// used) like the file, a link to anything else is refused.
	if fi, err := os.Stat(path); err != nil {
		return err
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s", ErrNotRegular, kind(fi.Mode()))
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size == 0 {
		return ErrEmpty // bbolt initialises an empty file
	}
	var best *boltMeta
	buf := make([]byte, pageHeader+metaSize)
	// The first meta tells the page size; try the common sizes for the
	// second one if the first is damaged.
	offsets := []int64{0}
	if n, err := f.ReadAt(buf, 0); n == len(buf) || err == nil {
		if m, ok := parseMeta(buf); ok {
			best = m
			offsets = append(offsets, int64(m.pageSize))
		}
	}
	if best == nil {
		offsets = append(offsets, 4096, 8192, 16384, 65536)
	}
	for _, off := range offsets[1:] {
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			continue
		}
		if m, ok := parseMeta(buf); ok && (best == nil || m.txid > best.txid) {
			if best == nil || m.pageSize == best.pageSize {
				best = m
			}
		}
	}
	if best == nil {
		return fmt.Errorf("%w: no valid meta page", ErrDamaged)
	}
	if best.pgid < 3 || best.pgid > uint64(size)/uint64(best.pageSize) {
		return fmt.Errorf("%w: truncated: %d bytes, meta says %d pages of %d", ErrDamaged, size, best.pgid, best.pageSize)
	}
	return validatePages(f, best)
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO (named pipe)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	}
	return "mode " + m.String()
}

func parseMeta(b []byte) (*boltMeta, bool) {
	if len(b) < pageHeader+metaSize {
		return nil, false
	}
	m := b[pageHeader:]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != FormatVersion {
		return nil, false
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != le.Uint64(m[56:]) {
		return nil, false
	}
	ps := le.Uint32(m[8:])
	if ps < 512 || ps > 1<<20 || ps&(ps-1) != 0 {
		return nil, false
	}
	return &boltMeta{pageSize: ps, root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}

// bbolt page layout (bbolt v1.x, little-endian on every platform we build
// for): a 16-byte header (id u64, flags u16, count u16, overflow u32), then
// count 16-byte elements, then the keys and values they point to (offsets
// relative to the element).
const (
	pageBranch   = 0x01
	pageLeaf     = 0x02
	pageFreelist = 0x10
	leafBucket   = 0x01
	elemSize     = 16
	noFreelist   = ^uint64(0)
	maxInline    = 64 // nesting of inline buckets
)

// validatePages walks every page reachable from the meta m, reading the
// file directly, and checks what bbolt trusts blindly: page ids inside the
// file, no page reached twice (cycles), known page types, elements, keys
// and values inside their page, keys in order. bbolt's own walk (its
// freelist rebuild on open, tx.Check) loops forever or overflows the stack
// on such damage, which no recover can catch.
func validatePages(f *os.File, m *boltMeta) error {
	ps := uint64(m.pageSize)
	hwm := m.pgid
	seen := make([]uint64, (hwm+63)/64)
	mark := func(id uint64) bool {
		w, b := id/64, uint64(1)<<(id%64)
		if seen[w]&b != 0 {
			return false
		}
		seen[w] |= b
		return true
	}
	var hdr [pageHeader]byte
	var scratch []byte // pages are checked one at a time
	readPage := func(id uint64, want uint16) ([]byte, error) {
		if id < 2 || id >= hwm {
			return nil, fmt.Errorf("%w: page %d out of bounds (%d pages)", ErrDamaged, id, hwm)
		}
		if _, err := f.ReadAt(hdr[:], int64(id*ps)); err != nil {
			return nil, fmt.Errorf("%w: page %d: %w", ErrDamaged, id, err)
		}
		le := binary.LittleEndian
		if got := le.Uint64(hdr[0:]); got != id {
			return nil, fmt.Errorf("%w: page %d claims to be page %d", ErrDamaged, id, got)
		}
		if flags := le.Uint16(hdr[8:]); !exactType(flags, want) {
			return nil, fmt.Errorf("%w: page %d: unexpected type %#x", ErrDamaged, id, flags)
		}
		overflow := uint64(le.Uint32(hdr[12:]))
		if id+overflow >= hwm {
			return nil, fmt.Errorf("%w: page %d: overflow %d beyond the file", ErrDamaged, id, overflow)
		}
		for i := id; i <= id+overflow; i++ {
			if !mark(i) {
				return nil, fmt.Errorf("%w: page %d reached twice", ErrDamaged, i)
			}
		}
		n := (overflow + 1) * ps
		if uint64(cap(scratch)) < n {
			scratch = make([]byte, n)
		}
		data := scratch[:n]
		if _, err := f.ReadAt(data, int64(id*ps)); err != nil {
			return nil, fmt.Errorf("%w: page %d: %w", ErrDamaged, id, err)
		}
		return data, nil
	}

	if m.freelist != noFreelist {
		data, err := readPage(m.freelist, pageFreelist)
		if err != nil {
			return err
		}
		if err := checkFreelist(data, hwm); err != nil {
			return err
		}
	}
	todo := []pageRef{{id: m.root}}
	for len(todo) > 0 {
		ref := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		data, err := readPage(ref.id, pageBranch|pageLeaf)
		if err != nil {
			return err
		}
		if todo, err = checkPage(data, ref.lo, ref.hi, todo, 0); err != nil {
			return fmt.Errorf("page %d: %w", ref.id, err)
		}
	}
	return nil
}

// pageRef is a page to check and the range its keys must lie in: lo
// included, hi excluded, nil for no bound (the keys of a branch page's
// i-th child lie between its i-th and i+1-th key).
type pageRef struct {
	id     uint64
	lo, hi []byte
}

// checkPage checks one branch or leaf page (or inline bucket page), whose
// keys must lie in [lo, hi), and appends the pages it points to to todo.
func checkPage(data, lo, hi []byte, todo []pageRef, depth int) ([]pageRef, error) {
	le := binary.LittleEndian
	if len(data) < pageHeader {
		return todo, fmt.Errorf("%w: short page", ErrDamaged)
	}
	flags, count := le.Uint16(data[8:]), int(le.Uint16(data[10:]))
	if flags != pageBranch && flags != pageLeaf {
		return todo, fmt.Errorf("%w: page type %#x", ErrDamaged, flags)
	}
	if pageHeader+count*elemSize > len(data) {
		return todo, fmt.Errorf("%w: %d elements do not fit", ErrDamaged, count)
	}
	var prev []byte
	for i := range count {
		off := pageHeader + i*elemSize
		e := data[off : off+elemSize]
		var pos, ksize, vsize uint64
		switch {
		case flags == pageBranch:
			pos, ksize = uint64(le.Uint32(e[0:])), uint64(le.Uint32(e[4:]))
		case flags == pageLeaf:
			pos, ksize, vsize = uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
		default:
			return todo, fmt.Errorf("%w: page type %#x", ErrDamaged, flags)
		}
		start := uint64(off) + pos
		if start+ksize+vsize > uint64(len(data)) {
			return todo, fmt.Errorf("%w: element %d outside its page", ErrDamaged, i)
		}
		key := data[start : start+ksize]
		if i > 0 && bytes.Compare(prev, key) >= 0 {
			return todo, fmt.Errorf("%w: keys out of order", ErrDamaged)
		}
		if lo != nil && bytes.Compare(key, lo) < 0 || hi != nil && bytes.Compare(key, hi) >= 0 {
			return todo, fmt.Errorf("%w: key outside its parent's range", ErrDamaged)
		}
		prev = key
		if flags == pageBranch {
			// The child's upper bound is the next key, set below.
			if i > 0 {
				todo[len(todo)-1].hi = bytes.Clone(key)
			}
			todo = append(todo, pageRef{id: le.Uint64(e[8:]), lo: bytes.Clone(key), hi: hi})
			continue
		}
		if le.Uint32(e[0:])&leafBucket == 0 {
			continue
		}
		val := data[start+ksize : start+ksize+vsize]
		if len(val) < 16 {
			return todo, fmt.Errorf("%w: short bucket header", ErrDamaged)
		}
		if root := le.Uint64(val); root != 0 {
			todo = append(todo, pageRef{id: root})
			continue
		}
		if depth >= maxInline {
			return todo, fmt.Errorf("%w: inline buckets nested too deep", ErrDamaged)
		}
		inline := val[16:]
		if len(inline) < pageHeader || le.Uint16(inline[8:]) != pageLeaf {
			return todo, fmt.Errorf("%w: bad inline bucket", ErrDamaged)
		}
		var err error
		if todo, err = checkPage(inline, nil, nil, todo, depth+1); err != nil {
			return todo, err
		}
	}
	if flags == pageBranch && count == 0 {
		return todo, fmt.Errorf("%w: empty branch page", ErrDamaged)
	}
	return todo, nil
}

func checkFreelist(data []byte, hwm uint64) error {
	le := binary.LittleEndian
	count, start := uint64(le.Uint16(data[10:])), uint64(pageHeader)
	if count == 0xFFFF {
		if len(data) < pageHeader+8 {
			return fmt.Errorf("%w: short freelist", ErrDamaged)
		}
		count, start = le.Uint64(data[pageHeader:]), pageHeader+8
	}
	if count > (uint64(len(data))-start)/8 {
		return fmt.Errorf("%w: freelist of %d ids does not fit", ErrDamaged, count)
	}
	for i := range count {
		if id := le.Uint64(data[start+8*i:]); id < 2 || id >= hwm {
			return fmt.Errorf("%w: freelist id %d out of bounds", ErrDamaged, id)
		}
	}
	return nil
}

// exactType: bbolt tests page types by equality, so must we (a page with
// two type bits would be a leaf to us and a branch to bbolt's cursor).
func exactType(flags, want uint16) bool {
	for _, t := range []uint16{pageBranch, pageLeaf, pageFreelist} {
		if want&t != 0 && flags == t {
			return true
		}
	}
	return false
}
