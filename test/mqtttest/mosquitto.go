package mqtttest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// MosquittoBin is where Debian installs the broker.
const MosquittoBin = "/usr/sbin/mosquitto"

// MosquittoInstall is the command that installs what the interop tests need.
const MosquittoInstall = "apt-get install mosquitto mosquitto-clients"

// ErrNoMosquitto is returned when the mosquitto binary is missing.
var ErrNoMosquitto = errors.New("mqtttest: mosquitto is not installed (" + MosquittoInstall + ")")

// startTimeout bounds how long mosquitto may take to report that it runs.
const startTimeout = 20 * time.Second

// MosquittoConfig configures LaunchMosquitto. The zero value is a broker
// on a free loopback port without persistence that, as mosquitto 2 does by
// default, refuses anonymous clients: add "allow_anonymous true" to Conf.
type MosquittoConfig struct {
	// Bin is the mosquitto binary; "" is MosquittoBin.
	Bin string
	// Dir holds mosquitto.conf and, with Persistence, mosquitto.db. ""
	// makes a temporary directory that Close removes.
	Dir string
	// Port is the listener's port on 127.0.0.1; 0 picks a free one.
	Port int
	// Conf is appended to the generated config (after the listener line,
	// so per-listener options such as cafile apply to it).
	Conf string
	// Persistence keeps sessions and queued messages in Dir/mosquitto.db
	// across Stop and Restart.
	Persistence bool
}

// Mosquitto is a running (or stopped) mosquitto process.
type Mosquitto struct {
	bin, dir, conf string
	port           int
	ownDir         bool

	log *logBuffer // the process's stderr, across restarts

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// LaunchMosquitto writes the config and starts mosquitto; it returns once
// mosquitto logs that it is running, or an error (ErrNoMosquitto when the
// binary is missing).
func LaunchMosquitto(c MosquittoConfig) (*Mosquitto, error) {
	m := &Mosquitto{bin: c.Bin, dir: c.Dir, port: c.Port, log: &logBuffer{}}
	if m.bin == "" {
		m.bin = MosquittoBin
	}
	if _, err := os.Stat(m.bin); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoMosquitto, err)
	}
	if m.dir == "" {
		d, err := os.MkdirTemp("", "mqtttest-mosquitto-")
		if err != nil {
			return nil, fmt.Errorf("mqtttest: mosquitto dir: %w", err)
		}
		m.dir, m.ownDir = d, true
	}
	m.conf = filepath.Join(m.dir, "mosquitto.conf")
	pick := m.port == 0
	var err error
	// A port picked here can be taken by someone else before mosquitto
	// binds it: then pick another.
	for attempt := 0; attempt < 5; attempt++ {
		if pick {
			if m.port, err = PickPort(); err != nil {
				break
			}
		}
		if err = m.writeConf(c); err != nil {
			break
		}
		if err = m.Restart(); err == nil || !pick || !errors.Is(err, errAddrInUse) {
			break
		}
	}
	if err != nil {
		m.removeDir()
		return nil, err
	}
	return m, nil
}

func (m *Mosquitto) writeConf(c MosquittoConfig) error {
	var b strings.Builder
	fmt.Fprintf(&b, "listener %d 127.0.0.1\n", m.port)
	if os.Getuid() == 0 {
		// Started as root, mosquitto switches to user "mosquitto", which
		// cannot read or write our directory.
		b.WriteString("user root\n")
	}
	if c.Persistence {
		fmt.Fprintf(&b, "persistence true\npersistence_location %s/\npersistence_file mosquitto.db\n", m.dir)
	} else {
		b.WriteString("persistence false\n")
	}
	// information carries the "running" line that tells us the broker is
	// ready (and not, unlike notice, a line per connection).
	b.WriteString("log_dest stderr\nlog_type error\nlog_type warning\nlog_type information\n")
	b.WriteString(c.Conf)
	b.WriteString("\n")
	if err := os.WriteFile(m.conf, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("mqtttest: mosquitto config: %w", err)
	}
	return nil
}

var errAddrInUse = errors.New("mqtttest: mosquitto: address in use")

// Restart starts mosquitto again on the same port with the same config
// (and, with persistence, the state it saved); it is a no-op while running.
func (m *Mosquitto) Restart() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return nil
	}
	var err error
	// After a stop the port can be held for a moment by connections
	// being torn down: mosquitto then exits with "Address already in use".
	for attempt := 0; attempt < 50; attempt++ {
		if err = m.startOnce(); !errors.Is(err, errAddrInUse) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

func (m *Mosquitto) startOnce() error {
	mark := m.log.Len()
	ready := m.log.watch(mark, " running")
	defer m.log.unwatch()
	cmd := exec.Command(m.bin, "-c", m.conf)
	cmd.Dir = m.dir
	cmd.Stdout, cmd.Stderr = m.log, m.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("mqtttest: start %s: %w", m.bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-ready:
		m.cmd, m.done = cmd, done
		return nil
	case <-done:
		out := m.log.Since(mark)
		if strings.Contains(out, "Address already in use") {
			return errAddrInUse
		}
		return fmt.Errorf("mqtttest: mosquitto exited on start:\n%s", out)
	case <-time.After(startTimeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("mqtttest: mosquitto not running after %v:\n%s", startTimeout, m.log.Since(mark))
	}
}

// Addr is 127.0.0.1:port.
func (m *Mosquitto) Addr() string { return fmt.Sprintf("127.0.0.1:%d", m.port) }

// URL is tcp://Addr (ssl:// is the caller's to add when Conf sets certfile).
func (m *Mosquitto) URL() string { return "tcp://" + m.Addr() }

// Port is the listener's port.
func (m *Mosquitto) Port() int { return m.port }

// Dir is the directory holding the config (and the persistence file).
func (m *Mosquitto) Dir() string { return m.dir }

// Pid is the running process's id, 0 while stopped.
func (m *Mosquitto) Pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Running reports whether the process is started and has not exited.
func (m *Mosquitto) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// Log is everything mosquitto wrote so far, across restarts.
func (m *Mosquitto) Log() string { return m.log.Since(0) }

// Stop sends SIGTERM (mosquitto saves its persistence file on it) and
// waits for the process; it is a no-op while stopped.
func (m *Mosquitto) Stop() { m.Signal(syscall.SIGTERM) }

// Kill sends SIGKILL (nothing saved since the last autosave survives) and
// waits for the process.
func (m *Mosquitto) Kill() { m.Signal(syscall.SIGKILL) }

// Signal sends sig and waits for the process to exit, killing it if it
// has not after 10 s.
func (m *Mosquitto) Signal(sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(sig) // the process we started, by its pid
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd, m.done = nil, nil
}

// WipePersistence deletes the persistence file; call it while stopped.
func (m *Mosquitto) WipePersistence() error {
	err := os.Remove(filepath.Join(m.dir, "mosquitto.db"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mqtttest: wipe: %w", err)
	}
	return nil
}

// Close stops mosquitto and removes the directory if LaunchMosquitto made it.
func (m *Mosquitto) Close() error {
	m.Stop()
	return m.removeDir()
}

func (m *Mosquitto) removeDir() error {
	if !m.ownDir {
		return nil
	}
	if err := os.RemoveAll(m.dir); err != nil {
		return fmt.Errorf("mqtttest: remove %s: %w", m.dir, err)
	}
	return nil
}

// RequireMosquitto skips tb when mosquitto is missing, with the install
// command; under CI=true it fails instead, because CI must run the interop
// tests.
func RequireMosquitto(tb testing.TB) {
	tb.Helper()
	requireBin(tb, MosquittoBin)
}

func requireBin(tb testing.TB, bin string) {
	tb.Helper()
	NeedTool(tb, bin, MosquittoInstall)
}

// Install commands for the outside tools the tests use, for [NeedTool].
const (
	MosquittoPasswdInstall  = "apt-get install mosquitto"         // mosquitto_passwd
	MosquittoClientsInstall = "apt-get install mosquitto-clients" // mosquitto_pub, mosquitto_sub
	QEMUInstall             = "apt-get install qemu-user-static"  // qemu-arm-static
)

// NeedTool returns the path of the outside tool name (an absolute path, or
// a command looked up in PATH and then in /usr/sbin, where Debian puts
// mosquitto). When it is missing the test skips with installCmd in the
// message, and under CI=true it fails with it instead: CI must run every
// test, so a missing tool there is an error in CI's set-up, never a quiet
// skip. The skip message shows with `go test -v` and in `go test -json`,
// whose skips .ci/run lists at the end (go run ./test/testreport).
func NeedTool(tb testing.TB, name, installCmd string) string {
	tb.Helper()
	path, err := lookTool(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("mqtttest: %s missing under CI (%v): install it with %s", name, err, installCmd)
		return ""
	}
	tb.Skipf("mqtttest: needs %s, not found (%v): install it with %s", name, err, installCmd)
	return ""
}

func lookTool(name string) (string, error) {
	if filepath.IsAbs(name) {
		if _, err := os.Stat(name); err != nil {
			return "", err
		}
		return name, nil
	}
	path, err := exec.LookPath(name)
	if err == nil {
		return path, nil
	}
	if p := filepath.Join("/usr/sbin", name); fileExists(p) {
		return p, nil
	}
	return "", err
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// StartMosquitto is LaunchMosquitto for tests: RequireMosquitto first, Dir
// defaults to a tb.TempDir(), and the process is killed when the test ends.
func StartMosquitto(tb testing.TB, c MosquittoConfig) *Mosquitto {
	tb.Helper()
	if c.Bin == "" {
		RequireMosquitto(tb)
	} else {
		requireBin(tb, c.Bin)
	}
	if c.Dir == "" {
		c.Dir = tb.TempDir()
	}
	m, err := LaunchMosquitto(c)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		m.Kill()
		if tb.Failed() {
			tb.Logf("mosquitto log:\n%s", m.Log())
		}
	})
	return m
}

// logBuffer keeps a child's output and tells one watcher when a string
// appears after a mark.
type logBuffer struct {
	mu     sync.Mutex
	b      strings.Builder
	mark   int
	needle string
	ch     chan struct{}
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, _ := l.b.Write(p)
	if l.ch != nil && strings.Contains(l.b.String()[l.mark:], l.needle) {
		close(l.ch)
		l.ch = nil
	}
	return n, nil
}

func (l *logBuffer) watch(mark int, needle string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := make(chan struct{})
	l.mark, l.needle, l.ch = mark, needle, ch
	return ch
}

func (l *logBuffer) unwatch() {
	l.mu.Lock()
	l.ch = nil
	l.mu.Unlock()
}

func (l *logBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

func (l *logBuffer) Since(mark int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()[mark:]
}
