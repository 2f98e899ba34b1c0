package test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The docs a newcomer reads, relative to this package: the README and every
// page under docs/.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../docs/*.md")
	if err != nil || len(files) == 0 {
		t.Fatalf("no docs/*.md (%v)", err)
	}
	return append([]string{"../README.md", "../BENCHMARKS.md"}, files...)
}

// codeOf returns the code in a markdown text: fenced blocks and `spans`.
// Prose is left out, since "sensorgate itself is 0.6 MB" names no command.
func codeOf(md string) string {
	var b strings.Builder
	fenced := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			b.WriteString(line + "\n")
			continue
		}
		parts := strings.Split(line, "`")
		for i := 1; i < len(parts); i += 2 {
			b.WriteString(parts[i] + "\n")
		}
	}
	return b.String()
}

// commandRE finds an invocation, "sensorgate CMD" where a command starts
// (at the start of a line or `span`, after "$ ", "./", "&& " or a quote)
// and "./cmd/sensorgate CMD", with an optional subcommand list ("buffer
// stats|peek|compact"). "scp sensorgate examples/..." and a package path in
// a table are not invocations.
var commandRE = regexp.MustCompile(`(?m)(?:^[ \t]*(?:\$[ \t]+)?|\./|&&[ \t]+|['"(])(?:cmd/)?sensorgate[ \t]+([a-z][a-z0-9-]*)(?:[ \t]+([a-z][a-z0-9-]*(?:\|[a-z][a-z0-9-]*)*))?`)

// subcommands names the commands that take a subcommand, so that the word
// after them is checked as one too (and the word after any other command,
// "sensorgate run --config", is not).
var subcommands = map[string]bool{"buffer": true}

// docCommands lists the command lines ("run", "buffer stats") that md names.
func docCommands(md string) []string {
	var cmds []string
	for _, m := range commandRE.FindAllStringSubmatch(codeOf(md), -1) {
		if !subcommands[m[1]] || m[2] == "" {
			cmds = append(cmds, m[1])
			continue
		}
		for _, sub := range strings.Split(m[2], "|") {
			cmds = append(cmds, m[1]+" "+sub)
		}
	}
	slices.Sort(cmds)
	return slices.Compact(cmds)
}

// checkCommand runs `sensorgate CMD --help`, which exits 0 for a command
// that exists and 2 (unknown command) otherwise.
func checkCommand(bin, cmd string) error {
	args := append(strings.Fields(cmd), "--help")
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("sensorgate %s --help: exit %d\n%s", strings.Join(args[:len(args)-1], " "), ee.ExitCode(), tail(string(out), 5))
		}
		return fmt.Errorf("sensorgate %s --help: %w", cmd, err)
	}
	return nil
}

// TestDocsNameOnlyRealCommands keeps README.md, BENCHMARKS.md and docs/*.md
// honest about the command line: every `sensorgate CMD` they show must be a
// command of the built binary.
func TestDocsNameOnlyRealCommands(t *testing.T) {
	seen := 0
	for _, f := range docFiles(t) {
		md, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cmds := docCommands(string(md))
		t.Logf("%s: %q", f, cmds)
		for _, cmd := range cmds {
			seen++
			if err := checkCommand(binPath, cmd); err != nil {
				t.Errorf("%s names `sensorgate %s`, which does not exist: %v", f, cmd, err)
			}
		}
	}
	if seen < 5 {
		t.Fatalf("found only %d command mentions in the docs: is the pattern broken?", seen)
	}
}

// TestDocsCommandCheckCatchesAMissingCommand shows the check above fails
// for a command the binary does not have.
func TestDocsCommandCheckCatchesAMissingCommand(t *testing.T) {
	md := "Run `sensorgate frobnicate --now`, then\n\n```sh\n./sensorgate buffer stats|shrink --data d\ngo run ./cmd/sensorgate run --config x.yaml\nscp sensorgate examples/demo.yaml pi:\n```\n\nsensorgate itself is small.\n"
	got := docCommands(md)
	want := []string{"buffer shrink", "buffer stats", "frobnicate", "run"}
	if !slices.Equal(got, want) {
		t.Fatalf("docCommands = %q, want %q", got, want)
	}
	for _, cmd := range got {
		err := checkCommand(binPath, cmd)
		if exists := cmd == "run" || cmd == "buffer stats"; exists != (err == nil) {
			t.Errorf("checkCommand(%q) = %v; want an error only for a command that does not exist", cmd, err)
		}
	}
}

// yamlBlocks returns the ```yaml blocks of md, without users files (the
// broker's users_file format, not a gateway config).
func yamlBlocks(md string) []string {
	var blocks []string
	for _, block := range strings.Split(md, "```yaml\n")[1:] {
		body, _, _ := strings.Cut(block, "```")
		if strings.HasPrefix(body, "users:") {
			continue
		}
		blocks = append(blocks, body)
	}
	return blocks
}

// TestDocsConfigExamplesValidate runs `sensorgate validate` on the YAML
// config examples of README.md and docs/*.md: a page's blocks together are
// one config (docs/configuration.md shows one section per block), and it
// must be accepted with no problem at all, so that a renamed or removed key
// cannot linger in the docs.
func TestDocsConfigExamplesValidate(t *testing.T) {
	seen := 0
	for _, f := range docFiles(t) {
		md, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		blocks := yamlBlocks(string(md))
		if len(blocks) == 0 {
			continue
		}
		seen++
		path := filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(f), ".md")+".yaml")
		if err := os.WriteFile(path, []byte(strings.Join(blocks, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(binPath, "validate", "--config", path)
		cmd.Env = append(os.Environ(), "CLOUD_PASSWORD=x")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: its YAML examples (%d blocks) do not validate: %v\n%s", f, len(blocks), err, out)
		}
	}
	if seen < 2 {
		t.Fatalf("only %d docs with YAML examples: README.md and docs/configuration.md have them", seen)
	}
}
