// Command sensorgate runs the gateway and its operator tools.
//
//	sensorgate run --config FILE              run the gateway
//	sensorgate validate --config FILE         check a config: exit 0, or exit 2 with every problem and its line
//	sensorgate buffer stats|peek|compact ...  inspect or compact the outbox of a stopped gateway (--data DIR or --file PATH)
//	sensorgate simulate ...                   publish simulated sensor load to an MQTT broker, with a truth file (not in nosimulate builds)
//	sensorgate probe ...                      scan an I2C bus and name the known chips found
//	sensorgate version                        version, commit, Go version, GOOS/GOARCH
//
// # Command line
//
// Every command and subcommand (bare sensorgate, run, validate, buffer and
// buffer stats|peek|compact, simulate, probe, version) follows one
// convention, held by TestCommandLineConvention (cli_test.go):
//
//   - --help, -h or -help prints "Usage: ..." on stdout, once, and exits 0.
//   - A usage error (a bad flag, a missing or extra argument, an unknown
//     command, bare sensorgate with no command) prints one line,
//     "sensorgate CMD: what is wrong", and "Run 'sensorgate CMD --help' for
//     usage." on stderr, and exits 2. A config that cannot be read or is
//     invalid is one too: "sensorgate run: config x.yaml: no such file or
//     directory", or one "x.yaml: key: problem (line N)" line per problem.
//   - A runtime failure prints one line on stderr, "sensorgate CMD: what
//     failed: what to do", naming each path once, and exits 1: "sensorgate
//     run: data dir /var/lib/sensorgate is in use by another sensorgate
//     (pid 812): stop it first, or give this one another gateway.data_dir".
//   - Results go to stdout, notes and progress to stderr (buffer peek on an
//     empty outbox prints nothing on stdout and says so on stderr).
//
// # Data dir lock
//
// run holds DIR/sensorgate.pid (DIR is the outbox's directory,
// gateway.data_dir by default) while it runs: the file holds its pid and,
// on Unix, an exclusive flock. A second run on the same dir, and the buffer
// tools, name that pid. A clean stop removes the file; after a kill -9 the
// kernel has dropped the flock, so the file left behind does not block the
// next start.
//
// # Build tags
//
// The tag nosimulate leaves out the simulate command and with it the load
// generator (simulator/load, with its own MQTT publisher), which a gateway
// in the field does not need: `go build -tags nosimulate ./cmd/sensorgate`.
// Sensors of type "sim" still work in such a build. simulate.go and
// nosimulate.go are the tagged pair that supplies the command table's
// entry.
//
// # Basics
//
// run loads and validates the config before anything starts (a config error
// never leaves a half-started gateway), opens the outbox, then wires the
// pipeline from the sink end to the source end: uplinks, rules, sources.
// The wiring is [Main] (gateway.go): Open takes the outbox and the metrics
// listener, Run blocks until the context is done or a part fails, Close
// releases them; main_test.go runs it in-process.
// Readings flow through one bounded channel into the rules. The rules'
// sink (sink.go) keeps what they emit until their next checkpoint and then
// writes it with the state that changed and the sources' receipt entries
// in one outbox transaction; durable sources acknowledge after it. At
// start the last checkpoint's state is restored before any input (Run).
// Uplinks forward the records and delete them only when upstream
// confirmed. docs/durability.md has the whole contract.
//
// # Signals
//
// SIGINT and SIGTERM stop the sources first; when they have returned the
// readings channel is closed, the rules commit a last checkpoint (open
// windows stay in the state for the next start; with run --flush-on-stop
// they are emitted as final first), the outbox commits, and the uplinks
// get gateway.shutdown_grace to deliver (the wait ends as soon as the
// outbox has nothing left to deliver). What they could not deliver stays
// in the outbox for the next start. Exit status 0.
//
// SIGHUP re-reads the config. An invalid config is logged and ignored (the
// running one stays). A valid one replaces the pipeline: the old one stops
// source-first without flushing, the new engine adopts the open windows of
// every window rule that kept its kind (rules.Engine.Adopt; the others are
// flushed), so a window open across a reload is summarised once; the
// outbox stays open. Changes to buffer, gateway.data_dir and
// metrics.listen need a restart.
//
// # Configuration
//
// One YAML file. Unknown keys are errors, and every error names its key
// path and line: "rules.alerts[1].above: must be a number, got "warm" (line
// 23)". ${NAME} and ${NAME:-default} are replaced by environment variables
// inside values only, so a secret can never change the file's structure.
// Each section belongs to a package (rules.Config, buffer.Config, ...), which
// supplies its defaults and validation; this command only composes them.
//
// # Metrics
//
// metrics.listen (default 127.0.0.1:8353) serves /metrics in the Prometheus
// text format and /healthz as JSON. Every number in every component's
// Stats() is exported as sensorgate_<component>_<field>. The port is
// outside 9100-9999, the range the Prometheus default port allocations give
// to exporters (9100 is node_exporter's, which many Pis run). When the
// address is taken, run exits 1 saying so and naming metrics.listen. Both
// endpoints are unauthenticated: a listener outside loopback (0.0.0.0, ::,
// a LAN address) is allowed but logged as a WARN at start, naming the
// address.
//
// The config file is at most 1 MiB and 100,000 YAML nodes through alias
// expansion; validate bounds every size and count key (queues, payloads,
// rules, routes) and refuses windows under 100ms, naming the limit
// (docs/configuration.md, "Limits").
package main
