package mqttnet

import (
	"errors"
	"testing"
)

func TestValidFilter(t *testing.T) {
	tests := []struct {
		filter string
		want   error
	}{
		{"a/b", nil},
		{"a/+/c", nil},
		{"#", nil},
		{"a/#", nil},
		{"+", nil},
		{"$share/grp/s/+", nil},
		{"$SYS/#", nil},
		{"", ErrFilterEmpty},
		{"a\x00b", ErrFilterNUL},
		{"a/#/b", ErrFilterHashLast},
		{"a/b#", ErrFilterWholeWord},
		{"a+/b", ErrFilterWholeWord},
		{"$share/grp", ErrFilterShare},
		{"$share//a", ErrFilterShare},
		{"$share/g+/a", ErrFilterShare},
		{"$share/grp/", ErrFilterShare},
		{"$share/grp/a/#/b", ErrFilterHashLast},
	}
	for _, tt := range tests {
		if err := ValidFilter(tt.filter); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Errorf("ValidFilter(%q) = %v, want %v", tt.filter, err, tt.want)
		}
	}
}

func TestMatchFilter(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+", "a", false},
		{"a/+", "a/", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"#", "a/b", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"+/+/t", "s/g/t", true},
		{"$share/grp/s/+", "s/x", true},
		{"a/b/c", "a/b", false},
	}
	for _, tt := range tests {
		if got := MatchFilter(tt.filter, tt.topic); got != tt.want {
			t.Errorf("MatchFilter(%q, %q) = %v", tt.filter, tt.topic, got)
		}
	}
}
