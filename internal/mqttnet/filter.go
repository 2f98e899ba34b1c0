package mqttnet

import (
	"errors"
	"strings"
)

// Errors of ValidFilter, for callers that branch on them.
var (
	ErrFilterEmpty     = errors.New("required")
	ErrFilterNUL       = errors.New("contains NUL")
	ErrFilterShare     = errors.New("shared subscription must be $share/<group>/<filter>")
	ErrFilterHashLast  = errors.New("# must be the last level")
	ErrFilterWholeWord = errors.New("wildcards must occupy a whole level")
)

// ValidFilter checks an MQTT topic filter (MQTT 3.1.1 section 4.7): + and
// # occupy whole levels, # only the last; $share/<group>/<filter> is a
// shared subscription. The error text is meant to follow a key path
// ("subscriptions[0].topic: # must be the last level").
func ValidFilter(f string) error {
	if f == "" {
		return ErrFilterEmpty
	}
	if strings.ContainsRune(f, 0) {
		return ErrFilterNUL
	}
	if rest, ok := strings.CutPrefix(f, "$share/"); ok {
		group, filter, ok := strings.Cut(rest, "/")
		if !ok || group == "" || strings.ContainsAny(group, "+#") || filter == "" {
			return ErrFilterShare
		}
		f = filter
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "#":
			if i != len(levels)-1 {
				return ErrFilterHashLast
			}
		case l == "+":
		case strings.ContainsAny(l, "+#"):
			return ErrFilterWholeWord
		}
	}
	return nil
}

// MatchFilter reports whether topic matches filter (which passed
// ValidFilter; a $share/<group>/ prefix is ignored). Topics beginning with
// $ do not match filters beginning with a wildcard, and "a/#" matches "a"
// (MQTT 3.1.1 sections 4.7.1.2 and 4.7.2).
func MatchFilter(filter, topic string) bool {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		_, filter, _ = strings.Cut(rest, "/")
	}
	if len(topic) > 0 && topic[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore || !tmore {
			return fmore == tmore || (!tmore && frest == "#")
		}
		filter, topic = frest, trest
	}
}
