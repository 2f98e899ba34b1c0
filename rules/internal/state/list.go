package state

import "iter"

// Flags mark an object (embed them) whose state goes into checkpoints.
type Flags struct{ Dirty, Stored, Swept bool }

// Ck returns f (the constraint of List).
func (f *Flags) Ck() *Flags { return f }

// List tracks the objects of one kind changed since the last checkpoint
// (a flag and an append per change, never a map insert) and the stored
// ones forgotten since.
type List[T interface{ Ck() *Flags }] struct {
	On          bool
	Dirty, Gone []T
}

// Touch marks x changed.
func (l *List[T]) Touch(x T) {
	if f := x.Ck(); l.On && !f.Dirty {
		f.Dirty = true
		l.Dirty = append(l.Dirty, x)
	}
}

// Drop marks x forgotten: a delete if it is stored.
func (l *List[T]) Drop(x T) {
	f := x.Ck()
	f.Swept = true
	if l.On && f.Stored {
		l.Gone = append(l.Gone, x)
	}
}

// Changes appends the deletes and puts of l to b; all: every object of
// each instead.
func (l *List[T]) Changes(b *Batch, all bool, each iter.Seq[T], name, value func([]byte, T) []byte) {
	put := func(x T) {
		if x.Ck().Swept {
			return
		}
		b.Start()
		b.Buf = name(b.Buf, x)
		b.Mid()
		b.Buf = value(b.Buf, x)
		b.End()
	}
	if all {
		for x := range each {
			put(x)
		}
		return
	}
	for _, x := range l.Gone {
		b.Start()
		b.Buf = name(b.Buf, x)
		b.Mid()
		b.Delete()
	}
	for _, x := range l.Dirty {
		put(x)
	}
}

// Committed clears the marks after a commit; it returns the store keys
// added and deleted (all: every key written).
func (l *List[T]) Committed(all bool, each iter.Seq[T]) (added, deleted int) {
	mark := func(x T) {
		f := x.Ck()
		f.Dirty = false
		if !f.Swept && (all || !f.Stored) {
			f.Stored = true
			added++
		}
	}
	for _, x := range l.Dirty {
		if all {
			x.Ck().Dirty = false // counted by each
		} else {
			mark(x)
		}
	}
	if all {
		for x := range each {
			mark(x)
		}
	} else {
		deleted = len(l.Gone)
	}
	for _, x := range l.Gone {
		x.Ck().Stored = false
	}
	clear(l.Dirty)
	clear(l.Gone)
	l.Dirty, l.Gone = l.Dirty[:0], l.Gone[:0]
	return added, deleted
}
