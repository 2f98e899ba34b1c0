package powerfs

import (
	"fmt"
	"syscall"
)

const pageSize = 4096

// overlay is what a file has been told since its last sync: the pages
// written, its size, and how much of the backing file still counts. The
// backing file holds the last synced state.
type overlay struct {
	fd   int   // a descriptor of the backing file, owned
	size int64 // logical size
	// valid: backing bytes at or past it are stale (a truncation cut them
	// off) and read as zeros. valid <= size always, and every byte past
	// size is zero in the pages, so growing a file shows zeros.
	valid     int64
	truncated bool
	pages     map[int64][]byte
}

func newOverlay(fd int) (*overlay, error) {
	dup, err := syscall.Dup(fd)
	if err != nil {
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(dup, &st); err != nil {
		syscall.Close(dup)
		return nil, err
	}
	return &overlay{fd: dup, size: st.Size, valid: st.Size, pages: map[int64][]byte{}}, nil
}

func (o *overlay) close() { syscall.Close(o.fd) }

// readBacking fills b with the backing file's bytes at off, zeros past
// EOF and past valid.
func (o *overlay) readBacking(b []byte, off int64) error {
	clear(b)
	n := int64(len(b))
	if off >= o.valid {
		return nil
	}
	n = min(n, o.valid-off)
	got := int64(0)
	for got < n {
		m, err := syscall.Pread(o.fd, b[got:n], off+got)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if m == 0 {
			break
		}
		got += int64(m)
	}
	return nil
}

func (o *overlay) read(b []byte, off int64) (int, error) {
	if off >= o.size {
		return 0, nil
	}
	b = b[:min(int64(len(b)), o.size-off)]
	if err := o.readBacking(b, off); err != nil {
		return 0, err
	}
	end := off + int64(len(b))
	for p := off / pageSize; p*pageSize < end; p++ {
		pg, ok := o.pages[p]
		if !ok {
			continue
		}
		ps := p * pageSize
		lo, hi := max(off, ps), min(end, ps+pageSize)
		copy(b[lo-off:hi-off], pg[lo-ps:hi-ps])
	}
	return len(b), nil
}

func (o *overlay) page(p int64) ([]byte, error) {
	if pg, ok := o.pages[p]; ok {
		return pg, nil
	}
	pg := make([]byte, pageSize)
	if err := o.readBacking(pg, p*pageSize); err != nil {
		return nil, err
	}
	// Bytes past the logical size are zero (see valid).
	if rel := o.size - p*pageSize; rel < pageSize {
		clear(pg[max(rel, 0):])
	}
	o.pages[p] = pg
	return pg, nil
}

func (o *overlay) write(data []byte, off int64) error {
	end := off + int64(len(data))
	for p := off / pageSize; p*pageSize < end; p++ {
		pg, err := o.page(p)
		if err != nil {
			return err
		}
		ps := p * pageSize
		lo, hi := max(off, ps), min(end, ps+pageSize)
		copy(pg[lo-ps:hi-ps], data[lo-off:hi-off])
	}
	o.size = max(o.size, end)
	return nil
}

func (o *overlay) truncate(sz int64) {
	if sz < o.size {
		for p, pg := range o.pages {
			switch ps := p * pageSize; {
			case ps >= sz:
				delete(o.pages, p)
			case ps+pageSize > sz:
				clear(pg[sz-ps:])
			}
		}
		o.valid = min(o.valid, sz)
		o.truncated = true
	}
	o.size = sz
}

// sync makes the overlay the backing file's contents.
func (o *overlay) sync() error {
	var st syscall.Stat_t
	if err := syscall.Fstat(o.fd, &st); err != nil {
		return fmt.Errorf("powerfs: sync: %w", err)
	}
	if o.valid < st.Size {
		if err := syscall.Ftruncate(o.fd, o.valid); err != nil {
			return fmt.Errorf("powerfs: sync: %w", err)
		}
	}
	if err := syscall.Ftruncate(o.fd, o.size); err != nil {
		return fmt.Errorf("powerfs: sync: %w", err)
	}
	for p, pg := range o.pages {
		ps := p * pageSize
		if ps >= o.size {
			continue
		}
		b := pg[:min(pageSize, o.size-ps)]
		for len(b) > 0 {
			n, err := syscall.Pwrite(o.fd, b, ps)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				return fmt.Errorf("powerfs: sync: %w", err)
			}
			b, ps = b[n:], ps+int64(n)
		}
	}
	o.pages = map[int64][]byte{}
	o.valid, o.truncated = o.size, false
	return nil
}
