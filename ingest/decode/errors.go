package decode

import "fmt"

// Reasons carried by [Error], used as the "reason" label of decode-error
// counters. The set is closed: callers may use the values as array indexes
// through [ReasonIndex].
const (
	ReasonMalformed = "malformed"  // not valid JSON / SenML / MessagePack, or the wrong shape
	ReasonNoSensor  = "no_sensor"  // no sensor id in the payload or topic
	ReasonNoMetrics = "no_metrics" // an object without any metric value
	ReasonBadTime   = "bad_time"   // a timestamp that cannot be parsed or does not fit
	ReasonBadValue  = "bad_value"  // a metric field that is not a number
	ReasonTooLarge  = "too_large"  // payload over the size limit, or nested too deep
)

// reasons lists every reason an [Error] can carry, in a fixed order.
var reasons = [...]string{ReasonMalformed, ReasonNoSensor, ReasonNoMetrics, ReasonBadTime, ReasonBadValue, ReasonTooLarge}

// NumReasons is the number of reasons ([Reasons]).
const NumReasons = len(reasons)

// Reasons returns every reason an [Error] can carry, in a fixed order (for
// pre-creating counter labels).
func Reasons() []string { return append([]string(nil), reasons[:]...) }

// ReasonIndex returns the position of reason in [Reasons], or -1.
func ReasonIndex(reason string) int {
	for i, r := range reasons {
		if r == reason {
			return i
		}
	}
	return -1
}

// Error is the error every decoder returns. Reason is one of the Reason
// constants; Skipped counts the objects or records of the payload that were
// left out because of this kind of problem (the readings of the others were
// still appended).
type Error struct {
	Format  string // "json", "senml", "msgpack", "number"
	Reason  string
	Msg     string
	Offset  int // byte offset in the payload where the problem was seen, -1 if unknown
	Skipped int
}

func (e *Error) Error() string {
	s := "decode: " + e.Format + ": " + e.Reason
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Offset >= 0 {
		s += fmt.Sprintf(" (offset %d)", e.Offset)
	}
	if e.Skipped > 1 {
		s += fmt.Sprintf(" (%d skipped)", e.Skipped)
	}
	return s
}

// Is reports whether target is an *Error with the same Reason, so that
// errors.Is(err, &decode.Error{Reason: decode.ReasonBadTime}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == e.Reason && (t.Format == "" || t.Format == e.Format)
}

func newErr(format, reason, msg string, off int) *Error {
	return &Error{Format: format, Reason: reason, Msg: msg, Offset: off, Skipped: 1}
}
