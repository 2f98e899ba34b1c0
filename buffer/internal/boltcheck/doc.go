// Package boltcheck checks a bbolt file's on-disk structure with plain file
// reads, before bbolt maps it. bbolt trusts its pages: on a truncated file
// it faults (SIGBUS, which no recover catches), and on damaged pages its
// freelist rebuild and tx.Check loop forever or overflow the stack. The
// outbox runs [File] first, so that a damaged file becomes an error, and a
// quarantine, instead of a crash loop.
//
// # Guarantees
//
// File reads the meta pages (magic, version, checksum, page size), checks
// that the file holds every page the newest valid meta claims, and walks
// every branch, leaf and freelist page reachable from it: page ids inside
// the file, no page reached twice, known page types, elements, keys and
// values inside their page, keys in order. It never panics and never
// loops on a damaged file. It stats the path first and refuses anything
// but a regular file ([ErrNotRegular]) without opening it: opening a FIFO
// blocks.
//
// [Owner] tells another program's valid bbolt file ([ErrForeign]) from
// the caller's, by the root bucket names. [IsDamage] is the one list of
// errors that are about a file's contents (File's findings and bbolt's
// ErrInvalid, ErrVersionMismatch, ErrChecksum, ErrIncompatibleValue);
// anything else, a system error above all, is not, and [Cause] puts the
// usual ones (ENOMEM from the map, EIO, EROFS, EACCES, ENOSPC, EAGAIN)
// in words for an operator.
//
// # Caveats
//
//   - It is pinned to bbolt's file format version 2 ([FormatVersion]) as
//     written by go.etcd.io/bbolt v1.5: the page and meta layouts of bbolt's
//     internal/common/page.go and meta.go at that version. bbolt promises
//     that layout to nobody but itself, so TestBoltFormatPinned fails when
//     go.mod moves bbolt to another major or minor version: whoever upgrades
//     re-reads those two files against the constants here, then moves the
//     pin.
//   - A file it passes can still hold damage it does not look for (values
//     that are not what the outbox wrote); the outbox's own scan and
//     bbolt's tx.Check come after it.
package boltcheck
