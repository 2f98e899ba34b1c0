package buffer

import (
	"fmt"
	"strconv"
)

// Lane is a priority class of the outbox. Lanes are delivered in order of
// their value: every record of a lower lane goes before any of a higher one
// that is ready at the same time. Within a lane delivery is FIFO.
type Lane uint8

// The lanes. Their values are part of the on-disk format: never renumber.
const (
	LaneAlerts Lane = iota
	LaneSummaries
	LaneRaw
	// LaneDead holds records an uplink refused for good (an HTTP 4xx, say),
	// so one bad record never blocks its lane. They are kept, counted and
	// inspectable, never re-sent automatically.
	LaneDead
	numLanes
)

// Lanes lists every lane in priority order.
var Lanes = [...]Lane{LaneAlerts, LaneSummaries, LaneRaw, LaneDead}

func (l Lane) String() string {
	switch l {
	case LaneAlerts:
		return "alerts"
	case LaneSummaries:
		return "summaries"
	case LaneRaw:
		return "raw"
	case LaneDead:
		return "dead"
	}
	return "lane" + strconv.Itoa(int(l))
}

// ParseLane is the inverse of Lane.String.
func ParseLane(s string) (Lane, error) {
	for _, l := range Lanes {
		if l.String() == s {
			return l, nil
		}
	}
	return 0, fmt.Errorf("buffer: unknown lane %q (want alerts, summaries, raw or dead)", s)
}

// Record is one stored outbox record.
type Record struct {
	Lane Lane
	// Seq is the record's position in its lane: strictly increasing, never
	// reused within one outbox file.
	Seq uint64
	// ID is stable across restarts and unique across outbox files (it
	// carries the file's random epoch), so upstream can de-duplicate
	// re-deliveries: "<epoch>-<lane>-<seq>".
	ID string
	// Stored is when the record was committed, Unix nanoseconds.
	Stored int64
	// Payload is the record as appended (an ingest tagged record). It is
	// owned by the caller: the outbox never reuses it.
	Payload []byte
}
