package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// pidFile is the lock file a running gateway holds in its data dir (the
// directory of the outbox): it contains the gateway's pid, and on Unix
// the gateway holds an exclusive flock on it while it runs. The kernel
// drops the flock when the process dies, so the file a kill -9 leaves
// behind does not block the next start; a clean stop removes it.
const pidFile = "sensorgate.pid"

// dataDirInUseError is returned when another sensorgate holds dir.
type dataDirInUseError struct {
	Dir string
	PID int // 0 if the lock file did not say
}

func (e *dataDirInUseError) Error() string {
	pid := "pid unknown"
	if e.PID > 0 {
		pid = "pid " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("data dir %s is in use by another sensorgate (%s): stop it first, or give this one another gateway.data_dir", e.Dir, pid)
}

// readPID reads the pid in dir's lock file; 0 if there is none.
func readPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, pidFile))
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
}

// pathErr drops the path from an *fs.PathError, for messages that name
// the path once themselves.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
