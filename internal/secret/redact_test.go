package secret

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://api.example.com/ingest", "https://api.example.com/ingest"},
		{"https://api.example.com/in?token=s3cret", "https://api.example.com/in?token=REDACTED"},
		{"https://api.example.com/in?a=1&sig=s3cret&flag", "https://api.example.com/in?a=REDACTED&sig=REDACTED&flag"},
		{"https://bob:s3cret@h:8443/p?k=s3cret#s3cret", "https://bob:REDACTED@h:8443/p?k=REDACTED"},
		{"https://bob@h/p", "https://bob@h/p"},
		{"http://h/%zz?token=s3cret", "(invalid url)"},
	} {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRedactURLError(t *testing.T) {
	// A real client error: nothing listens on port 1 of 127.0.0.1.
	_, err := http.Post("http://bob:s3cret@127.0.0.1:1/x?token=s3cret", "text/plain", nil)
	if err == nil {
		t.Skip("something listens on 127.0.0.1:1")
	}
	if !strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("the premise changed: net/http's error no longer carries the query: %v", err)
	}
	wrapped := fmt.Errorf("httppost: x: post: %w", RedactURLError(err))
	if s := wrapped.Error(); strings.Contains(s, "s3cret") || !strings.Contains(s, "token=REDACTED") {
		t.Fatalf("redacted error %q", s)
	}
}
