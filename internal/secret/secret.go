package secret

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/sensorgate/sensorgate/ingest"
)

// ErrMissing is wrapped when a configured secret file or environment
// variable is missing or empty.
var ErrMissing = errors.New("secret: not available")

// Source is where one secret comes from. Key is its YAML key ("password",
// "token"): the file and variable keys are Key+"_file" and Key+"_env".
type Source struct {
	Key    string
	Inline string
	File   string
	Env    string
}

// IsSet reports whether any of Inline, File and Env is set.
func (s Source) IsSet() bool { return s.Inline != "" || s.File != "" || s.Env != "" }

// Validate checks that at most one place is set. The error is an
// *ingest.FieldError at path Key.
func (s Source) Validate() error {
	n := 0
	for _, v := range []string{s.Inline, s.File, s.Env} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		return ingest.FieldErrorf(s.Key, "set at most one of %s, %s_file and %s_env", s.Key, s.Key, s.Key)
	}
	return nil
}

// Read returns the secret: the trimmed first line of File, or the value of
// the environment variable Env, or Inline. It reads anew at every call.
func (s Source) Read() (string, error) {
	switch {
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			// os.ReadFile's error names the path, not the content.
			return "", fmt.Errorf("%w: %s_file: %w", ErrMissing, s.Key, err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		v := strings.TrimSpace(line)
		if v == "" {
			return "", fmt.Errorf("%w: %s_file %s is empty", ErrMissing, s.Key, s.File)
		}
		return v, nil
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("%w: %s_env: environment variable %s is not set", ErrMissing, s.Key, s.Env)
		}
		return v, nil
	}
	return s.Inline, nil
}

// String says where the secret comes from, never what it is.
func (s Source) String() string {
	switch {
	case s.File != "":
		return s.Key + "_file " + s.File
	case s.Env != "":
		return s.Key + "_env " + s.Env
	case s.Inline != "":
		return s.Key + " (inline)"
	}
	return s.Key + " (not set)"
}

// LogValue logs s as String does.
func (s Source) LogValue() slog.Value { return slog.StringValue(s.String()) }

// GoString keeps %#v from printing Inline.
func (s Source) GoString() string { return "secret.Source(" + s.String() + ")" }
