package boltcheck

import (
	"errors"
	"fmt"
	"syscall"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrForeign: a valid bbolt file whose root holds keys, none of them a
// bucket the caller owns: another program's database.
var ErrForeign = errors.New("boltcheck: a bbolt file of another program")

// Owner checks that the file of tx belongs to the caller: ours tells the
// root bucket names the caller writes. One of them is enough (damage to
// one name leaves the others); a root without keys is a file bbolt
// initialised and its owner never did, and passes. A plain value under
// one of our names is damage, as the caller only keeps buckets there.
func Owner(tx *bbolt.Tx, ours func(name []byte) bool) error {
	mine, others := false, 0
	c := tx.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		switch {
		case !ours(k):
			others++
		case v != nil:
			return fmt.Errorf("%w: root key %q is not a bucket", ErrDamaged, k)
		default:
			mine = true
		}
	}
	if !mine && others > 0 {
		return fmt.Errorf("%w (%d root keys, none of ours)", ErrForeign, others)
	}
	return nil
}

// IsDamage tells whether err is a finding about a file's contents, by
// File or by bbolt's open: only such a file may be moved aside.
func IsDamage(err error) bool {
	return errors.Is(err, ErrDamaged) || errors.Is(err, berrors.ErrInvalid) ||
		errors.Is(err, berrors.ErrVersionMismatch) || errors.Is(err, berrors.ErrChecksum) ||
		// a plain value where the file's owner keeps a bucket, or the reverse
		errors.Is(err, berrors.ErrIncompatibleValue)
}

// Cause says, for an operator, what the system error under err means for
// opening or mapping a file ("" if there is none or its text is enough):
// none of these says anything about the file's contents.
func Cause(err error) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return ""
	}
	switch errno {
	case syscall.ENOMEM:
		return "cannot map the file (out of memory)"
	case syscall.EIO:
		return "the disk or its file system failed to read or write"
	case syscall.EROFS:
		return "the file system is mounted read-only"
	case syscall.EACCES, syscall.EPERM:
		return "no permission to open the file"
	case syscall.ENOSPC:
		return "the disk is full"
	case syscall.EAGAIN, syscall.EMFILE, syscall.ENFILE:
		return "out of a system resource for now (a restart may succeed)"
	}
	return "" // the errno's own text says it
}
