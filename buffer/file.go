package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/sensorgate/sensorgate/buffer/internal/boltcheck"
)

// On-disk layout: one bucket per lane ("lane.alerts", ...), keys are the
// big-endian uint64 seq, values are the commit time (big-endian Unix
// nanoseconds, 8 bytes) followed by the payload. The bucket's sequence is
// the last seq handed out in that lane. The "meta" bucket holds "epoch".
var (
	metaBucket = []byte("meta")
	epochKey   = []byte("epoch")
)

// laneBuckets holds the bucket name of each lane.
var laneBuckets = func() [numLanes][]byte {
	var b [numLanes][]byte
	for _, l := range Lanes {
		b[l] = []byte("lane." + l.String())
	}
	return b
}()

const (
	// valueHeader is the commit time in front of each payload.
	valueHeader = 8
	// recordOverhead is what a record counts beyond its payload in the byte
	// caps: the 8-byte key and the header.
	recordOverhead = 8 + valueHeader
)

// ErrCorrupt is wrapped by errors about files that are not a readable
// outbox.
var ErrCorrupt = errors.New("corrupt outbox file")

// ErrRefused is wrapped by the errors about a path holding no outbox (a
// FIFO, a directory, another program's bbolt file), which is left alone.
var ErrRefused = errors.New("not an outbox file")

// errEmpty: the file exists but is empty, as bbolt leaves it when it dies
// before writing the first pages; it is initialised like a new file.
var errEmpty = errors.New("empty file")

// fileErr maps the findings of internal/boltcheck to the outbox's errors.
func fileErr(err error) error {
	switch {
	case errors.Is(err, boltcheck.ErrEmpty):
		return errEmpty
	case errors.Is(err, boltcheck.ErrDamaged):
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	case errors.Is(err, boltcheck.ErrNotRegular), errors.Is(err, boltcheck.ErrForeign):
		return fmt.Errorf("%w: %w; refusing to use or move it", ErrRefused, err)
	}
	return err
}

// openBolt opens a bbolt file, turning bbolt's lock timeout into ErrLocked
// so that callers need not import bbolt's errors.
func openBolt(path string, opts *bbolt.Options) (*bbolt.DB, error) {
	db, err := boltOpen(path, 0o600, opts)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %w", ErrLocked, err)
	}
	return db, err
}

// boltOpen is bbolt.Open; tests replace it to inject ENOMEM, EIO, EROFS.
var boltOpen = bbolt.Open

func boltOptions(cfg *Config, readOnly bool) *bbolt.Options {
	return &bbolt.Options{
		Timeout:        2 * time.Second,
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
		MaxSize:        int(min(cfg.MaxFileSize, int64(^uint(0)>>1))),
		ReadOnly:       readOnly,
	}
}

// laneScan is what a full scan of one lane finds.
type laneScan struct {
	count  int64
	bytes  int64
	oldest int64  // stored time of the first record, 0 if empty
	last   uint64 // the largest seq stored
}

// scanFile checks the file's structure (boltcheck.File), then opens it
// read-only and reads every record of the lanes, under recover and with
// faults turned into panics, so a damaged file is an error instead of a
// crash.
func scanFile(path string, cfg *Config) (scan [numLanes]laneScan, err error) {
	if err := fileErr(boltcheck.File(path)); errors.Is(err, errEmpty) {
		return scan, nil
	} else if err != nil {
		return scan, err
	}
	db, err := openBolt(path, boltOptions(cfg, true))
	if err != nil {
		return scan, err
	}
	defer db.Close()
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	err = db.View(func(tx *bbolt.Tx) error {
		if err := fileErr(boltcheck.Owner(tx, isOurs)); err != nil {
			return err
		}
		for _, l := range Lanes {
			b := tx.Bucket(laneBuckets[l])
			if b == nil {
				continue
			}
			c := b.Cursor()
			var prev uint64
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if len(k) != 8 || len(v) < valueHeader {
					return fmt.Errorf("%w: lane %s: bad record %x", ErrCorrupt, l, k)
				}
				seq := binary.BigEndian.Uint64(k)
				if seq <= prev {
					return fmt.Errorf("%w: lane %s: keys out of order", ErrCorrupt, l)
				}
				prev = seq
				s := &scan[l]
				if s.count == 0 {
					s.oldest = int64(binary.BigEndian.Uint64(v))
				}
				s.count++
				s.bytes += int64(len(v)) + 8
			}
			scan[l].last = prev
		}
		return nil
	})
	return scan, err
}

// isCorruption tells whether an error from opening or scanning a file
// means the file itself is bad. A system error (ENOMEM from the map, EIO,
// EROFS) says nothing about the data: moving it aside hides a backlog.
func isCorruption(err error) bool {
	return errors.Is(err, ErrCorrupt) || boltcheck.IsDamage(err)
}

// isOurs: the outbox's root holds the meta bucket and the lane buckets.
func isOurs(k []byte) bool {
	return string(k) == string(metaBucket) || bytes.HasPrefix(k, []byte("lane."))
}

// openError: an open failed without damage; it names the cause.
func openError(path string, err error) error {
	if errors.Is(err, ErrRefused) || errors.Is(err, ErrLocked) {
		return fmt.Errorf("buffer: open %s: %w", path, err)
	} else if c := boltcheck.Cause(err); c != "" {
		return fmt.Errorf("buffer: open %s: %s: %w; the file was left as it is", path, c, err)
	}
	return fmt.Errorf("buffer: open %s: %w; the file was left as it is", path, err)
}

// quarantine moves a bad file aside as "<path>.corrupt-<UTC time>" and
// returns the new name.
func quarantine(path string, now time.Time) (string, error) {
	dst := path + ".corrupt-" + now.UTC().Format("20060102T150405Z")
	for i := 1; ; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) {
			break
		}
		dst = fmt.Sprintf("%s.corrupt-%s-%d", path, now.UTC().Format("20060102T150405Z"), i)
	}
	if err := os.Rename(path, dst); err != nil {
		return "", err
	}
	syncDir(dirOf(path))
	return dst, nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Check runs bbolt's consistency check on the closed outbox file at path,
// after the same pre-checks Open does, and returns every problem found
// (nil if none). It never panics on a damaged file.
func Check(path string) (err error) {
	cfg := Config{}
	cfg.Defaults()
	if _, err := scanFile(path, &cfg); err != nil {
		return fmt.Errorf("buffer: check %s: %w", path, err)
	}
	db, err := openBolt(path, boltOptions(&cfg, true))
	if err != nil {
		return fmt.Errorf("buffer: check %s: %w", path, err)
	}
	defer db.Close()
	var errs []error
	err = db.View(func(tx *bbolt.Tx) error {
		for e := range tx.Check() {
			errs = append(errs, e)
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("buffer: check %s: %w: %w", path, ErrCorrupt, errors.Join(errs...))
	}
	return nil
}

func dirOf(path string) string { return filepath.Dir(path) }
