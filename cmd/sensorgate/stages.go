package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// stages are a pipeline's steps, added from the sink end (uplinks) to the
// source end (sources) and stopped in the reverse order, so that every
// step's input has stopped before the step itself does (Telegraf's agent
// does the same). Each step may have a drain, run before it is cancelled:
// close its input and let it finish, flush what it handed on.
type stages struct {
	fail  func(error)
	steps []*stage
}

// stage is one step: goroutines that share a context and stop together.
type stage struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	drain  func(*stage)
	fail   func(error)
}

// add appends a step; drain may be nil.
func (ss *stages) add(drain func(*stage)) *stage {
	ctx, cancel := context.WithCancel(context.Background())
	s := &stage{ctx: ctx, cancel: cancel, drain: drain, fail: ss.fail}
	ss.steps = append(ss.steps, s)
	return s
}

// stop drains, cancels and waits for each step, the last added first.
func (ss *stages) stop() {
	for i := len(ss.steps) - 1; i >= 0; i-- {
		s := ss.steps[i]
		if s.drain != nil {
			s.drain(s)
		}
		s.cancel()
		s.wg.Wait()
	}
	ss.steps = nil
}

// run starts fn in the step. An error fn returns before the step is
// cancelled is a failure of the pipeline, reported as "what: err".
func (s *stage) run(what string, fn func(ctx context.Context) error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := fn(s.ctx); err != nil && s.ctx.Err() == nil {
			s.fail(fmt.Errorf("%s: %w", what, err))
		}
	}()
}

// wait waits up to d for the step's goroutines to return by themselves
// (their input closed) and reports whether they did.
func (s *stage) wait(d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
