package secret

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sensorgate/sensorgate/ingest"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("SECRET_TEST_SET", "from-env")
	t.Setenv("SECRET_TEST_EMPTY", "")
	tests := []struct {
		name    string
		src     Source
		want    string
		missing bool
	}{
		{"inline", Source{Key: "password", Inline: "pw"}, "pw", false},
		{"nothing", Source{Key: "password"}, "", false},
		{"file with newline", Source{Key: "password", File: write("a", "s3cret\n")}, "s3cret", false},
		{"file with CRLF", Source{Key: "password", File: write("b", "s3cret\r\n")}, "s3cret", false},
		{"first line only", Source{Key: "password", File: write("c", "s3cret\nsecond\n")}, "s3cret", false},
		{"empty file", Source{Key: "password", File: write("d", "\n")}, "", true},
		{"missing file", Source{Key: "password", File: filepath.Join(dir, "none")}, "", true},
		{"env", Source{Key: "token", Env: "SECRET_TEST_SET"}, "from-env", false},
		{"empty env", Source{Key: "token", Env: "SECRET_TEST_EMPTY"}, "", true},
		{"unset env", Source{Key: "token", Env: "SECRET_TEST_UNSET_12345"}, "", true},
	}
	for _, tt := range tests {
		got, err := tt.src.Read()
		if tt.missing {
			if !errors.Is(err, ErrMissing) {
				t.Errorf("%s: err %v, want ErrMissing", tt.name, err)
			}
			if !strings.Contains(err.Error(), tt.src.Key+"_") {
				t.Errorf("%s: error %q does not name the key", tt.name, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: Read() = %q, %v, want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestReadSeesRotation(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pw")
	s := Source{Key: "password", File: p}
	for _, pw := range []string{"first", "second"} {
		if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Read(); err != nil || got != pw {
			t.Fatalf("Read() = %q, %v, want %q", got, err, pw)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := (Source{Key: "password", File: "f"}).Validate(); err != nil {
		t.Errorf("one place: %v", err)
	}
	err := Source{Key: "password", Inline: "x", Env: "E"}.Validate()
	var fe *ingest.FieldError
	if !errors.As(err, &fe) || fe.Path != "password" {
		t.Errorf("two places: %v, want a FieldError at password", err)
	}
}

func TestNeverShowsTheSecret(t *testing.T) {
	const pw = "hunter2-s3cret"
	p := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(p, []byte(pw), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, s := range []Source{{Key: "password", Inline: pw}, {Key: "password", File: p}} {
		for _, out := range []string{s.String(), s.LogValue().String(), fmt.Sprint(s), fmt.Sprintf("%+v %#v", s, s)} {
			if strings.Contains(out, pw) {
				t.Errorf("%q shows the secret", out)
			}
		}
	}
	// An error about a directory given as the file must not echo content.
	_, err := Source{Key: "password", File: t.TempDir()}.Read()
	if err == nil || strings.Contains(err.Error(), pw) {
		t.Errorf("err = %v", err)
	}
}
