// Command sensorgate is the edge gateway: see the package doc (doc.go).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

// Set at build time: -ldflags "-X main.version=v1.2.3 -X main.commit=abc123".
var (
	version = "dev"
	commit  = ""
)

type command struct {
	name  string
	short string
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	cs := []command{
		{"run", "run the gateway", cmdRun},
		{"validate", "check a config file and report every problem with its line", cmdValidate},
		{"buffer", "inspect or compact the outbox: buffer stats|peek|compact --data DIR", cmdBuffer},
	}
	cs = append(cs, simulateCommand()...)
	return append(cs,
		command{"probe", "scan an I2C bus and name the known chips found", cmdProbe},
		command{"version", "print version, commit, Go version and platform", cmdVersion},
	)
}

func main() {
	os.Exit(realMain(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "sensorgate: no command given\nRun 'sensorgate --help' for usage.\n")
		return 2
	}
	if isHelp(args[0]) || args[0] == "help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "sensorgate: unknown command %q\nRun 'sensorgate --help' for usage.\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "sensorgate: an edge gateway for sensor streams (MQTT and local chips -> rules and windows -> durable outbox -> upstream)\n\nUsage:\n  sensorgate <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.short)
	}
	fmt.Fprintf(w, "\nRun 'sensorgate <command> --help' for a command's flags.\n")
}

func cmdVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "sensorgate version", "Print the version, commit, Go version and GOOS/GOARCH.", stderr)
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	c := commit
	if c == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	fmt.Fprintf(stdout, "sensorgate %s\ncommit %s\n%s %s/%s\n", version, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}

// signalContext returns a context cancelled by SIGINT or SIGTERM, and a
// channel that receives SIGHUP.
func signalContext(parent context.Context) (context.Context, <-chan os.Signal, func()) {
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return ctx, hup, func() { stop(); signal.Stop(hup) }
}
