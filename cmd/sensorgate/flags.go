package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// newFlagSet returns the flag set of `sensorgate NAME` (NAME is "run",
// "buffer stats", ...). Its Name is "sensorgate NAME", the prefix of every
// message the command writes; its output is stderr.
func newFlagSet(name, synopsis, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sensorgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s\n\n%s\n", synopsis, about)
		var any bool
		fs.VisitAll(func(*flag.Flag) { any = true })
		if any {
			fmt.Fprintf(fs.Output(), "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// isHelp reports whether a is one of the help flags.
func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// parseFlags parses args; done reports that the command should return code
// at once: help was asked for (usage on stdout, 0), or a flag or argument
// is wrong (one line and a pointer to --help on stderr, 2).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (code int, done bool) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if isHelp(a) {
			out := fs.Output()
			fs.SetOutput(stdout)
			fs.Usage()
			fs.SetOutput(out)
			return 0, true
		}
	}
	// The flag package prints the whole usage after a bad flag; the
	// convention is one line, so it parses silently and usageError speaks.
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0, true
	case err != nil:
		return usageError(fs, "%v", err), true
	case fs.NArg() > 0:
		return usageError(fs, "unexpected argument %q", fs.Arg(0)), true
	}
	return 0, false
}

// usageError writes "sensorgate NAME: msg" and the pointer to --help on
// the flag set's output (stderr) and returns 2.
func usageError(fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(fs.Output(), "%s: %s\nRun '%s --help' for usage.\n", fs.Name(), oneLine(fmt.Sprintf(format, a...)), fs.Name())
	return 2
}

// failure writes "sensorgate NAME: err" on one line to the flag set's
// output (stderr) and returns 1: the convention for runtime failures.
func failure(fs *flag.FlagSet, err error) int {
	fmt.Fprintf(fs.Output(), "%s: %s\n", fs.Name(), oneLine(err.Error()))
	return 1
}

func oneLine(s string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ")
}
