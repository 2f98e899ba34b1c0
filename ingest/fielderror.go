package ingest

import (
	"errors"
	"fmt"
	"strings"
)

// FieldError is a configuration error at a key path such as
// "window.size" or "sensors[3].range.min". Packages return them from their
// Validate methods with paths relative to their own section; the config
// loader prefixes them and adds the line.
type FieldError struct {
	Path string
	Err  error
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return e.Path + ": " + e.Err.Error()
}

func (e *FieldError) Unwrap() error { return e.Err }

// FieldErrorf returns a *FieldError at path.
func FieldErrorf(path, format string, args ...any) error {
	return &FieldError{Path: path, Err: fmt.Errorf(format, args...)}
}

// PrefixErrors returns err with prefix put in front of the path of every
// FieldError in it (looking through errors.Join trees). Errors that are not
// FieldErrors become FieldErrors at prefix. A nil err gives nil.
func PrefixErrors(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range FlattenErrors(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			out = append(out, &FieldError{Path: joinPath(prefix, fe.Path), Err: fe.Err})
			continue
		}
		out = append(out, &FieldError{Path: prefix, Err: e})
	}
	return errors.Join(out...)
}

// FlattenErrors returns the leaves of an errors.Join tree, in order.
func FlattenErrors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, FlattenErrors(e)...)
		}
		return out
	}
	return []error{err}
}

func joinPath(prefix, path string) string {
	switch {
	case prefix == "":
		return path
	case path == "":
		return prefix
	case strings.HasPrefix(path, "["):
		return prefix + path
	}
	return prefix + "." + path
}
