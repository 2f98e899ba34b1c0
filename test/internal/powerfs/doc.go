// Package powerfs is a FUSE file system for power-cut tests: it mirrors a
// backing directory, but keeps every write to a file that has not been
// fsynced in memory only, so that [FS.Cut] can throw away exactly what a
// real power cut would.
//
// # Basics
//
// [Mount] mounts the backing directory at a mount point. Processes use the
// mount point like any directory; bbolt works on it (pwrite, fdatasync,
// ftruncate to grow, and a read-only MAP_SHARED mmap: files are not opened
// with direct_io, so the kernel's page cache serves the mapping, and every
// read sees every write made so far, synced or not).
//
// [FS.Cut] is the power cut: every write not yet made durable is discarded,
// every later request fails with EIO, and the file system is unmounted.
// [Mount] on the same backing directory is the power coming back: it sees
// what survived. [FS.Unmount] is a clean shutdown: it makes everything
// durable first, as an OS flushes its caches before it powers off.
//
// # The durability model
//
//   - File contents and sizes: durable only through fsync or fdatasync on
//     that file (any open handle of it). Until then writes, truncations
//     (ftruncate, O_TRUNC) and fallocate live in an overlay of 4 KiB pages
//     per file, and the backing file holds the contents as of the last sync.
//     A cut restores that state: a file that was never synced comes back
//     with the size and bytes it had when it was created or last synced
//     (empty for a file created since).
//   - Names: creating, renaming and unlinking files and directories, and
//     chmod, chown and times, are applied to the backing directory at once:
//     durable without a directory fsync. This is kinder than some real file
//     systems (ext4 may lose a create whose journal commit has not happened),
//     so a test on powerfs does not prove that a program fsyncs its
//     directories; it proves that it fsyncs its files, which is where a
//     database such as bbolt keeps its promises.
//   - Writes are whole: a synced page survives whole, an unsynced one is
//     gone whole. There are no torn sectors.
//
// # Caveats
//
//   - Mounting needs /dev/fuse and either root (powerfs then mounts with the
//     mount system call itself) or fusermount3 (apt-get install fuse3).
//     [Require] skips a test where they are missing, and fails it under
//     CI=true.
//   - Cut the power only after the processes that use the mount have
//     exited (kill -9 them first): a page fault on a mapping of an
//     unmounted FUSE file raises SIGBUS in the process that touches it.
//   - Never map a file of the mount in the process that serves it (the test
//     process): a page fault on the mapping blocks its thread outside Go's
//     control, and the next stop-the-world GC waits for that thread while
//     the server goroutines that would answer the fault are stopped. Run
//     what maps files (bbolt) in a child process; ordinary reads and writes
//     from the test process are fine.
//   - The backing files are not themselves fsynced: the machine running the
//     test does not lose power, only the mount does.
//   - Hard links share one overlay (it is keyed by the backing inode);
//     O_TMPFILE and copy_file_range are refused (ENOTSUP), so programs fall
//     back to ordinary writes.
//   - One lock serialises all requests: fine for a test, not for a
//     benchmark.
package powerfs
