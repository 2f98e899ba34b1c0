//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// dirLock is a held data dir lock; release gives it up.
type dirLock struct {
	f    *os.File
	path string
}

// lockDataDir takes dir's lock file and writes this process's pid in it,
// or returns a *dataDirInUseError naming the holder's pid.
func lockDataDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, pidFile)
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("data dir %s: lock file: %w", dir, pathErr(err))
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, &dataDirInUseError{Dir: dir, PID: readPID(dir)}
			}
			return nil, fmt.Errorf("data dir %s: lock %s: %w", dir, pidFile, err)
		}
		// The holder may have removed the file (a clean stop) between our
		// open and our flock: then we hold a lock on a file nobody else
		// can see; start again with the one now at path.
		fi, err1 := f.Stat()
		pi, err2 := os.Stat(path)
		if err1 != nil || err2 != nil || !os.SameFile(fi, pi) {
			f.Close()
			continue
		}
		if err := f.Truncate(0); err == nil {
			_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("data dir %s: write %s: %w", dir, pidFile, pathErr(err))
		}
		return &dirLock{f: f, path: path}, nil
	}
}

// release removes the lock file and drops the lock (in that order, so
// that nobody can take the lock on a file about to vanish).
func (l *dirLock) release() error {
	os.Remove(l.path)
	return l.f.Close()
}

// checkDataDir returns a *dataDirInUseError if a gateway holds dir's lock
// (the offline tools ask before they open the outbox); nil otherwise.
func checkDataDir(dir string) error {
	f, err := os.Open(filepath.Join(dir, pidFile))
	if err != nil {
		return nil // no lock file: no gateway of ours runs there
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return &dataDirInUseError{Dir: dir, PID: readPID(dir)}
		}
		return nil
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
