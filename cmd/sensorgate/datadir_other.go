//go:build !unix

package main

import (
	"os"
	"path/filepath"
	"strconv"
)

// dirLock is the pid file only: without flock, a second gateway on the
// same dir is stopped by the outbox file's own lock.
type dirLock struct{ path string }

func lockDataDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, pidFile)
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, err
	}
	return &dirLock{path: path}, nil
}

func (l *dirLock) release() error { return os.Remove(l.path) }

func checkDataDir(string) error { return nil }
