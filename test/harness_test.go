package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// binPath is the sensorgate binary built once for this package's tests.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sensorgate-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "sensorgate")
	build := exec.Command("go", "build", "-race", "-o", binPath, "../cmd/sensorgate")
	if !raceEnabled {
		build = exec.Command("go", "build", "-o", binPath, "../cmd/sensorgate")
	}
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building sensorgate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// client connects a paho client to url, failing the test if it cannot.
func client(t testing.TB, url, id string) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetAutoReconnect(true).
		SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond).SetMaxReconnectInterval(time.Second).SetCleanSession(true)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publish(t testing.TB, c paho.Client, topic string, qos byte, payload []byte) {
	t.Helper()
	tok := c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// upstreamMsg is one record as the uplink publishes it (see uplink's doc.go).
type upstreamMsg struct {
	RecordID string          `json:"record_id"`
	Gateway  string          `json:"gateway"`
	Kind     string          `json:"kind"`
	Summary  *summaryJSON    `json:"summary"`
	Alert    json.RawMessage `json:"alert"`
}

type summaryJSON struct {
	ID     string            `json:"id"`
	Rev    int               `json:"rev"`
	Window string            `json:"window"`
	Sensor string            `json:"sensor"`
	Metric string            `json:"metric"`
	Unit   string            `json:"unit"`
	Start  int64             `json:"start"`
	End    int64             `json:"end"`
	Count  uint64            `json:"count"`
	Sum    float64           `json:"sum"`
	Min    float64           `json:"min"`
	Max    float64           `json:"max"`
	Mean   float64           `json:"mean"`
	Meta   map[string]string `json:"meta"`
}

// collector keeps every record published upstream.
type collector struct {
	mu     sync.Mutex
	msgs   []upstreamMsg
	topics []string
	bad    int
}

// collect keeps what is published on filter on b from now on, including
// after restarts (an inline subscription inside the broker).
func collect(b *mqtttest.Broker, filter string) *collector {
	col := &collector{}
	b.Subscribe(filter, func(m mqtttest.Message) { col.add(m.Topic, m.Payload) })
	return col
}

// startBroker starts an anonymous in-process broker on a free port.
func startBroker(t testing.TB) *mqtttest.Broker {
	t.Helper()
	return mqtttest.StartBroker(t, mqtttest.BrokerOptions{})
}

func (c *collector) add(topic string, payload []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.topics = append(c.topics, topic)
	// A message may carry one record or an array of them.
	trimmed := bytes.TrimSpace(payload)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var many []upstreamMsg
		if json.Unmarshal(trimmed, &many) != nil {
			c.bad++
			return
		}
		c.msgs = append(c.msgs, many...)
		return
	}
	var m upstreamMsg
	if json.Unmarshal(trimmed, &m) != nil {
		c.bad++
		return
	}
	c.msgs = append(c.msgs, m)
}

func (c *collector) snapshot() []upstreamMsg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]upstreamMsg(nil), c.msgs...)
}

// summaries returns the received summaries, de-duplicated by record id (the
// uplink delivers at least once) and keeping the highest revision per id.
func (c *collector) summaries() []summaryJSON {
	byID := map[string]summaryJSON{}
	seen := map[string]bool{}
	for _, m := range c.snapshot() {
		if m.Summary == nil || seen[m.RecordID] {
			continue
		}
		seen[m.RecordID] = true
		if old, ok := byID[m.Summary.ID]; !ok || m.Summary.Rev > old.Rev {
			byID[m.Summary.ID] = *m.Summary
		}
	}
	out := make([]summaryJSON, 0, len(byID))
	for _, s := range byID {
		out = append(out, s)
	}
	return out
}

// gatewayProc is a running sensorgate binary.
type gatewayProc struct {
	t      testing.TB
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	stdout bytes.Buffer
	done   chan struct{}
	err    error
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func writeConfig(t testing.TB, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startGateway runs `sensorgate run --config cfg` and stops it (SIGKILL if
// it is still running) when the test ends.
func startGateway(t testing.TB, cfg string, extra ...string) *gatewayProc {
	t.Helper()
	return startGatewayIn(t, "", cfg, extra...)
}

// startGatewayIn is startGateway with the working directory set to dir.
func startGatewayIn(t testing.TB, dir, cfg string, extra ...string) *gatewayProc {
	t.Helper()
	g := &gatewayProc{t: t, done: make(chan struct{})}
	args := append([]string{"run", "--config", cfg}, extra...)
	g.cmd = exec.Command(binPath, args...)
	g.cmd.Dir = dir
	g.cmd.Stdout = lockedWriter{&g.mu, &g.stdout}
	g.cmd.Stderr = lockedWriter{&g.mu, &g.stderr}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.err = g.cmd.Wait(); close(g.done) }()
	t.Cleanup(func() {
		select {
		case <-g.done:
		default:
			_ = g.cmd.Process.Kill()
			<-g.done
		}
		if t.Failed() {
			t.Logf("gateway stderr:\n%s", tail(g.logs(), 60))
		}
	})
	return g
}

func (g *gatewayProc) logs() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stderr.String()
}

func (g *gatewayProc) out() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stdout.String()
}

// waitLog waits until the gateway's log contains s.
func (g *gatewayProc) waitLog(s string, timeout time.Duration) {
	g.t.Helper()
	mqtttest.WaitFor(g.t, timeout, func() bool { return strings.Contains(g.logs(), s) }, "gateway log "+s)
}

// terminate sends SIGTERM and waits for a clean exit.
func (g *gatewayProc) terminate() {
	g.t.Helper()
	// Before main has installed its handler, SIGTERM's default action
	// kills the process; wait until it has started.
	g.waitLog("sensorgate starting", 30*time.Second)
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(60 * time.Second):
		g.t.Fatal("gateway did not exit within 60s of SIGTERM")
	}
	if g.err != nil {
		g.t.Fatalf("gateway exited with %v", g.err)
	}
}

// kill sends SIGKILL and waits.
func (g *gatewayProc) kill() {
	_ = g.cmd.Process.Kill()
	<-g.done
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// scanLines returns the lines of s.
func scanLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
