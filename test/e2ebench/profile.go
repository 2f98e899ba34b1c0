package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// profileEnv names the file the profiling build writes its CPU profile to.
const profileEnv = "SENSORGATE_E2EBENCH_CPUPROFILE"

// profileSource is added to package main of cmd/sensorgate with `go build
// -overlay` for --cpuprofile runs only: the tree is not touched and the
// normal binary has none of it. SIGUSR1 starts a CPU profile, SIGUSR2 stops
// it and writes the heap profile next to it (<path>.heap); the benchmark
// sends them at load start and once the gateway has drained, so the profile
// covers exactly the measured interval.
const profileSource = `package main

import (
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func init() {
	path := os.Getenv("` + profileEnv + `")
	if path == "" {
		return
	}
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		var f *os.File
		for s := range ch {
			switch {
			case s == syscall.SIGUSR1 && f == nil:
				var err error
				if f, err = os.Create(path + ".tmp"); err != nil {
					f = nil
					continue
				}
				if pprof.StartCPUProfile(f) != nil {
					f.Close()
					f = nil
				}
			case s == syscall.SIGUSR2 && f != nil:
				pprof.StopCPUProfile()
				f.Close()
				f = nil
				if h, err := os.Create(path + ".heap"); err == nil {
					pprof.Lookup("heap").WriteTo(h, 0)
					h.Close()
				}
				os.Rename(path+".tmp", path)
			}
		}
	}()
}
`

// buildGateway builds ./cmd/sensorgate of the module at root into dir the
// way releases are built (CGO_ENABLED=0, -trimpath, -ldflags "-s -w"; no
// -race). With profiling, the overlay above is compiled in.
func buildGateway(root, dir string, profiling bool) (string, error) {
	name := "sensorgate"
	args := []string{"build"}
	if profiling {
		name = "sensorgate-prof"
		src := filepath.Join(dir, "zz_e2ebench_profile.go")
		if err := os.WriteFile(src, []byte(profileSource), 0o644); err != nil {
			return "", err
		}
		ov, err := json.Marshal(map[string]map[string]string{"Replace": {
			filepath.Join(root, "cmd", "sensorgate", "zz_e2ebench_profile.go"): src,
		}})
		if err != nil {
			return "", err
		}
		ovPath := filepath.Join(dir, "overlay.json")
		if err := os.WriteFile(ovPath, ov, 0o644); err != nil {
			return "", err
		}
		args = append(args, "-overlay", ovPath)
	}
	out := filepath.Join(dir, name)
	// As released: static, trimmed, stripped (README "Build for a Raspberry Pi").
	args = append(args, "-trimpath", "-ldflags", "-s -w", "-o", out, "./cmd/sensorgate")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %v: %w", args, err)
	}
	return out, nil
}

// pprofTop runs `go tool pprof -top` on a profile.
func pprofTop(bin, profile string, extra ...string) (string, error) {
	args := append([]string{"tool", "pprof", "-top", "-nodecount=35"}, extra...)
	if bin != "" {
		args = append(args, bin)
	}
	args = append(args, profile)
	out, err := exec.Command("go", args...).CombinedOutput()
	return string(out), err
}

// component is a group of goroutine entry points in the CPU profile.
type component struct {
	name  string
	roots *regexp.Regexp
}

// components are the gateway's goroutines, by what they do. A reading goes
// paho reader -> paho comms/router (mqttsub's handler queues the message)
// -> mqttsub.Run (decode) -> validate -> rules -> outbox -> uplink.
var components = []component{
	{"paho network reader (socket reads, packet parsing)", regexp.MustCompile(`paho.*\.startIncoming\.func1$`)},
	{"paho comms and router (dispatch to the mqttsub handler, acks)", regexp.MustCompile(`paho.*\.(startIncomingComms\.func1|\(\*client\)\.startCommsWorkers\.func\d+|startOutgoingComms\.func\d+|\(\*router\)\.matchAndDispatch\.func\d+|keepalive)$`)},
	{"mqttsub.Run (decode JSON, hand readings on)", regexp.MustCompile(`mqttsub\.\(\*Subscriber\)\.Run$`)},
	{"validate (door checks)", regexp.MustCompile(`validate\.\(\*Validator\)\.Run$`)},
	{"rules.Run (stages, windows, summaries)", regexp.MustCompile(`rules\.\(\*Engine\)\.Run$`)},
	{"outbox (group commit)", regexp.MustCompile(`buffer\.\(\*Outbox\)\.(run|writer|commitLoop|loop)\w*$`)},
	{"uplink (publish summaries, acks)", regexp.MustCompile(`uplink\.(\(\*Uplink\)\.Run|\(\*\w+\)\.run)$`)},
	{"garbage collector", regexp.MustCompile(`^runtime\.(gcBgMarkWorker|bgsweep|bgscavenge)$`)},
	{"scheduler: goroutine switches and wake-ups", regexp.MustCompile(`^runtime\.mcall$`)},
}

var topLine = regexp.MustCompile(`^\s*\S+\s+\S+%\s+\S+%\s+(\S+)\s+(\S+)%\s+(.+?)(?: \(inline\))?$`)

// pprofBreakdown sums the cumulative share of each component's roots in a
// CPU profile. Shares may overlap a little where a root calls another.
func pprofBreakdown(bin, profile string) (string, error) {
	args := []string{"tool", "pprof", "-top", "-cum", "-nodecount=100000", "-nodefraction=0", "-edgefraction=0"}
	if bin != "" {
		args = append(args, bin)
	}
	out, err := exec.Command("go", append(args, profile)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, out)
	}
	shares := make([]float64, len(components))
	for _, line := range strings.Split(string(out), "\n") {
		m := topLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		pct, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			continue
		}
		for i, c := range components {
			if c.roots.MatchString(m[3]) {
				shares[i] += pct
			}
		}
	}
	var b strings.Builder
	b.WriteString("| where (goroutine) | share of CPU samples |\n|---|---|\n")
	total := 0.0
	for i, c := range components {
		fmt.Fprintf(&b, "| %s | %.1f%% |\n", c.name, shares[i])
		total += shares[i]
	}
	fmt.Fprintf(&b, "| other | %.1f%% |\n", math.Max(0, 100-total))
	return b.String(), nil
}
