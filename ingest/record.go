package ingest

import (
	"errors"
	"fmt"
)

// Kind tags what an outbox record holds. It is the first byte of the record;
// the MessagePack body follows.
type Kind byte

// Record kinds. The values are part of the on-disk format: never reuse one.
const (
	KindSummary  Kind = 'S'
	KindAlert    Kind = 'A'
	KindReadings Kind = 'R'
)

func (k Kind) String() string {
	switch k {
	case KindSummary:
		return "summary"
	case KindAlert:
		return "alert"
	case KindReadings:
		return "readings"
	}
	return fmt.Sprintf("kind(%#x)", byte(k))
}

// ErrBadRecord is wrapped by every error DecodeRecord returns.
var ErrBadRecord = errors.New("bad record")

// AppendSummary appends s as a tagged record to b.
func AppendSummary(b []byte, s *Summary) ([]byte, error) {
	return s.MarshalMsg(append(b, byte(KindSummary)))
}

// AppendAlert appends a as a tagged record to b.
func AppendAlert(b []byte, a *Alert) ([]byte, error) {
	return a.MarshalMsg(append(b, byte(KindAlert)))
}

// AppendReadings appends a batch of readings as a tagged record to b.
func AppendReadings(b []byte, rb *ReadingBatch) ([]byte, error) {
	return rb.MarshalMsg(append(b, byte(KindReadings)))
}

// Record is a decoded outbox record: exactly one of the pointers is set,
// matching Kind.
type Record struct {
	Kind     Kind
	Summary  *Summary
	Alert    *Alert
	Readings *ReadingBatch
}

// DecodeRecord decodes a record made by one of the Append functions.
func DecodeRecord(b []byte) (Record, error) {
	if len(b) == 0 {
		return Record{}, fmt.Errorf("ingest: %w: empty", ErrBadRecord)
	}
	r := Record{Kind: Kind(b[0])}
	var rest []byte
	var err error
	switch r.Kind {
	case KindSummary:
		r.Summary = new(Summary)
		rest, err = r.Summary.UnmarshalMsg(b[1:])
	case KindAlert:
		r.Alert = new(Alert)
		rest, err = r.Alert.UnmarshalMsg(b[1:])
	case KindReadings:
		r.Readings = new(ReadingBatch)
		rest, err = r.Readings.UnmarshalMsg(b[1:])
	default:
		return Record{}, fmt.Errorf("ingest: %w: unknown kind %#x", ErrBadRecord, b[0])
	}
	if err != nil {
		return Record{}, fmt.Errorf("ingest: %w: %s: %w", ErrBadRecord, r.Kind, err)
	}
	if len(rest) != 0 {
		return Record{}, fmt.Errorf("ingest: %w: %s: %d trailing bytes", ErrBadRecord, r.Kind, len(rest))
	}
	return r, nil
}
