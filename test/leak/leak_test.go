package leak

import (
	"fmt"
	"testing"
	"time"
)

// recorder stands in for a test, to see what Check and Wait report.
type recorder struct {
	testing.TB
	cleanups []func()
	failed   string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Cleanup(f func())          { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(f string, a ...any) { r.failed = fmt.Sprintf(f, a...) }
func (r *recorder) Fatalf(f string, a ...any) { r.failed = fmt.Sprintf(f, a...) }
func (r *recorder) end() {
	for _, f := range r.cleanups {
		f()
	}
}

func TestCheckCatchesALeakAndPassesAfterAStop(t *testing.T) {
	old := settle
	settle = 200 * time.Millisecond
	defer func() { settle = old }()

	r := &recorder{}
	Check(r)
	stop := make(chan struct{})
	go func() { <-stop }() // still running when the "test" ends
	r.end()
	if r.failed == "" {
		t.Fatal("a goroutine left running was not reported")
	}
	close(stop)

	r = &recorder{}
	Check(r)
	done := make(chan struct{})
	go func() { time.Sleep(50 * time.Millisecond); close(done) }() // ends within settle
	r.end()
	<-done
	if r.failed != "" {
		t.Fatalf("a goroutine that ended in time was reported: %s", r.failed)
	}
}
