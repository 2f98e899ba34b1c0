package validate

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/clock"
)

// manualClock is a hand-driven wall clock, monotonic clock and sync status.
type manualClock struct {
	wall   time.Time
	mono   time.Duration
	synced bool
}

func (m *manualClock) advance(d time.Duration) { m.wall = m.wall.Add(d); m.mono += d }

// step moves the wall clock only (what NTP does to an unsynced clock).
func (m *manualClock) step(d time.Duration) { m.wall = m.wall.Add(d) }

func (m *manualClock) opts() clock.Options {
	return clock.Options{
		Now:    func() time.Time { return m.wall },
		Mono:   func() time.Duration { return m.mono },
		Status: func() (bool, bool) { return m.synced, true },
	}
}

func f(v float64) *float64 { return &v }

var (
	t2026 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ns26  = t2026.UnixNano()
)

func TestCheck(t *testing.T) {
	mc := &manualClock{wall: t2026, synced: true}
	clk := clock.New(mc.opts())
	sensors := map[string]SensorSpec{
		"gh-1": {Ranges: map[string]Range{"temperature": {Min: f(-40), Max: f(85)}, "rh": {Max: f(100)}}},
		"gh-2": {},
	}
	v, err := New(Config{Allow: []string{"extra"}, KnownSensorsOnly: true}, sensors, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		in     ingest.Reading
		reason string
		want   ingest.Reading
	}{
		{"good", ingest.Reading{Sensor: "gh-1", Metric: "temperature", Value: 20, Time: ns26 - 1e9, Arrival: ns26}, "",
			ingest.Reading{Sensor: "gh-1", Metric: "temperature", Value: 20, Time: ns26 - 1e9, Arrival: ns26}},
		{"bounds included", ingest.Reading{Sensor: "gh-1", Metric: "temperature", Value: 85, Time: ns26, Arrival: ns26}, "",
			ingest.Reading{Sensor: "gh-1", Metric: "temperature", Value: 85, Time: ns26, Arrival: ns26}},
		{"allowlisted extra", ingest.Reading{Sensor: "extra", Metric: "x", Value: 1e9, Time: ns26, Arrival: ns26}, "",
			ingest.Reading{Sensor: "extra", Metric: "x", Value: 1e9, Time: ns26, Arrival: ns26}},
		{"open lower bound", ingest.Reading{Sensor: "gh-1", Metric: "rh", Value: -5, Time: ns26, Arrival: ns26}, "",
			ingest.Reading{Sensor: "gh-1", Metric: "rh", Value: -5, Time: ns26, Arrival: ns26}},
		{"unknown sensor", ingest.Reading{Sensor: "intruder", Metric: "t", Value: 1, Time: ns26, Arrival: ns26}, ReasonUnknownSensor, ingest.Reading{}},
		{"NaN", ingest.Reading{Sensor: "gh-2", Metric: "t", Value: math.NaN(), Time: ns26, Arrival: ns26}, ReasonNotFinite, ingest.Reading{}},
		{"-Inf", ingest.Reading{Sensor: "gh-2", Metric: "t", Value: math.Inf(-1), Time: ns26, Arrival: ns26}, ReasonNotFinite, ingest.Reading{}},
		{"above range", ingest.Reading{Sensor: "gh-1", Metric: "temperature", Value: 85.01, Time: ns26, Arrival: ns26}, ReasonOutOfRange, ingest.Reading{}},
		{"future", ingest.Reading{Sensor: "gh-2", Metric: "t", Value: 1, Time: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano(), Arrival: ns26}, "",
			ingest.Reading{Sensor: "gh-2", Metric: "t", Value: 1, Time: ns26, Arrival: ns26, OrigTime: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano(), Quality: ingest.QualityFutureTime}},
		{"within skew", ingest.Reading{Sensor: "gh-2", Metric: "t", Value: 1, Time: ns26 + int64(4*time.Minute), Arrival: ns26}, "",
			ingest.Reading{Sensor: "gh-2", Metric: "t", Value: 1, Time: ns26 + int64(4*time.Minute), Arrival: ns26}},
		{"stale 1970", ingest.Reading{Sensor: "gh-2", Metric: "t", Value: 1, Time: 3600e9, Arrival: ns26}, "",
			ingest.Reading{Sensor: "gh-2", Metric: "t", Value: 1, Time: ns26, Arrival: ns26, OrigTime: 3600e9, Quality: ingest.QualityStaleTime}},
		{"no event time is not judged", ingest.Reading{Sensor: "gh-2", Metric: "t", Value: 1, Time: ns26, Arrival: ns26, Quality: ingest.QualityNoEventTime}, "",
			ingest.Reading{Sensor: "gh-2", Metric: "t", Value: 1, Time: ns26, Arrival: ns26, Quality: ingest.QualityNoEventTime}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.in
			ok, reason := v.Check(&r)
			if reason != tt.reason || ok != (tt.reason == "") {
				t.Fatalf("Check = %v %q, want %q", ok, reason, tt.reason)
			}
			if ok && r != tt.want {
				t.Fatalf("got  %+v\nwant %+v", r, tt.want)
			}
		})
	}
	st := v.Stats()
	if st.Rejected[ReasonUnknownSensor] != 1 || st.Rejected[ReasonNotFinite] != 2 || st.Rejected[ReasonOutOfRange] != 1 ||
		st.FutureTime != 1 || st.StaleTime != 1 || st.Passed != 8 || st.Checked != 12 {
		t.Errorf("stats %+v", st)
	}
}

func TestOutOfRangeFlagPolicy(t *testing.T) {
	mc := &manualClock{wall: t2026, synced: true}
	v, err := New(Config{OutOfRange: PolicyFlag}, map[string]SensorSpec{"s": {Ranges: map[string]Range{"t": {Min: f(0)}}}}, Options{Clock: clock.New(mc.opts())})
	if err != nil {
		t.Fatal(err)
	}
	r := ingest.Reading{Sensor: "s", Metric: "t", Value: -1, Time: ns26, Arrival: ns26}
	if ok, _ := v.Check(&r); !ok || !r.Quality.Has(ingest.QualityOutOfRange) {
		t.Fatalf("flag policy: %v %+v", ok, r)
	}
	if ok, _ := v.Check(&ingest.Reading{Sensor: "other", Metric: "t", Value: -1, Time: ns26, Arrival: ns26}); !ok {
		t.Fatal("no allowlist configured: every sensor passes")
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{MaxFutureSkew: -1, OutOfRange: "maybe", Allow: []string{"a", ""}}
	var paths []string
	for _, e := range ingest.FlattenErrors(c.Validate()) {
		var fe *ingest.FieldError
		if errors.As(e, &fe) {
			paths = append(paths, fe.Path)
		}
	}
	if len(paths) != 3 || paths[0] != "max_future_skew" || paths[1] != "out_of_range" || paths[2] != "allow[1]" {
		t.Errorf("paths %v", paths)
	}
	_, err := New(Config{}, map[string]SensorSpec{"s": {Ranges: map[string]Range{"t": {Min: f(2), Max: f(1)}}}}, Options{})
	if err == nil {
		t.Error("min > max accepted")
	}
}

// TestClockUnsyncedBootThenNTPJump plays a Pi without RTC: it boots in 1970,
// readings arrive, NTP steps the clock to 2026; readings stamped before the
// jump are corrected by the amount of the jump.
func TestClockUnsyncedBootThenNTPJump(t *testing.T) {
	boot := time.Unix(0, 0).UTC().Add(5 * time.Second) // kernel starts at the epoch
	mc := &manualClock{wall: boot}
	clk := clock.New(mc.opts())
	if clk.Synced() || clk.EverSynced() {
		t.Fatal("1970 clock reported synced")
	}
	v, err := New(Config{}, nil, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}

	mc.advance(30 * time.Second)
	clk.Refresh()
	// A reading without a payload time, stamped by the unsynced clk.
	early := ingest.Reading{Sensor: "s", Metric: "t", Value: 1, Time: clk.Now().UnixNano(), Arrival: clk.Now().UnixNano(), Quality: ingest.QualityNoEventTime}
	held := early // the same reading, still in flight when NTP syncs
	if ok, _ := v.Check(&early); !ok || !early.Quality.Has(ingest.QualityClockUnsynced) || early.Arrival != early.Time {
		t.Fatalf("unsynced reading: %+v", early)
	}
	// A device with its own good clock sends 2026 times: not "future" while
	// we are unsynced, but flagged because our arrival stamp is bogus.
	dev := ingest.Reading{Sensor: "s", Metric: "t", Value: 1, Time: ns26, Arrival: clk.Now().UnixNano()}
	if ok, _ := v.Check(&dev); !ok || dev.Quality != ingest.QualityClockUnsynced || dev.Time != ns26 {
		t.Fatalf("device time while unsynced: %+v", dev)
	}

	mc.advance(time.Second)
	preJump := mc.wall
	mc.step(t2026.Sub(mc.wall)) // NTP: 1970 -> 2026
	mc.synced = true
	j, jumped := clk.Refresh()
	if !jumped || !j.Unsynced || j.Offset != t2026.Sub(preJump).Nanoseconds() {
		t.Fatalf("jump %+v %v", j, jumped)
	}
	if !clk.Synced() || !clk.EverSynced() {
		t.Fatal("not synced after NTP")
	}
	if ok, _ := v.Check(&held); !ok {
		t.Fatal("held reading rejected")
	}
	wantArrival := held.Arrival // corrected value checked below
	if want := t2026.Add(-time.Second).UnixNano(); wantArrival != want || held.Time != want || !held.Quality.Has(ingest.QualityClockUnsynced) {
		t.Fatalf("corrected reading %+v, want arrival %d", held, want)
	}
	// Stamps taken after the jump are not touched.
	now := clk.Now().UnixNano()
	if c, moved := clk.Correct(now); moved || c != now {
		t.Fatalf("post-jump stamp moved: %d -> %d", now, c)
	}
	// A small NTP slew-step later while synced is recorded but not used to
	// move stamps.
	mc.advance(time.Minute)
	mc.step(3 * time.Second)
	if j, jumped := clk.Refresh(); !jumped || j.Unsynced {
		t.Fatalf("second jump %+v %v", j, jumped)
	}
	if c, moved := clk.Correct(now); moved {
		t.Fatalf("synced stamp corrected to %d", c)
	}
	if st := v.Stats(); st.Corrected != 1 || st.Jumps != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestRunPassesGoodClosesOut(t *testing.T) {
	mc := &manualClock{wall: t2026, synced: true}
	tick := make(chan time.Time)
	v, err := New(Config{}, nil, Options{Clock: clock.New(mc.opts()), Tick: tick})
	if err != nil {
		t.Fatal(err)
	}
	in := make(chan ingest.Reading, 4)
	out := make(chan ingest.Reading, 4)
	done := make(chan error, 1)
	go func() { done <- v.Run(context.Background(), in, out) }()
	in <- ingest.Reading{Sensor: "a", Metric: "m", Value: 1, Time: ns26, Arrival: ns26}
	in <- ingest.Reading{Sensor: "a", Metric: "m", Value: math.NaN(), Time: ns26, Arrival: ns26}
	mc.advance(time.Second)
	tick <- mc.wall
	in <- ingest.Reading{Sensor: "b", Metric: "m", Value: 2, Time: ns26, Arrival: ns26}
	close(in)
	var got []ingest.Reading
	for r := range out { // Run closes out when in is exhausted
		got = append(got, r)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Sensor != "a" || got[1].Sensor != "b" {
		t.Fatalf("got %+v", got)
	}
}

func TestCheckDoesNotAllocate(t *testing.T) {
	mc := &manualClock{wall: t2026, synced: true}
	v, _ := New(Config{KnownSensorsOnly: true}, map[string]SensorSpec{"gh-1": {Ranges: map[string]Range{"t": {Min: f(-40), Max: f(85)}}}},
		Options{Clock: clock.New(mc.opts())})
	r0 := ingest.Reading{Sensor: "gh-1", Metric: "t", Value: 20, Time: ns26, Arrival: ns26}
	allocs := testing.AllocsPerRun(1000, func() {
		r := r0
		if ok, _ := v.Check(&r); !ok {
			t.Fatal("rejected")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocs per Check", allocs)
	}
}

func BenchmarkCheck(b *testing.B) {
	mc := &manualClock{wall: t2026, synced: true}
	sensors := map[string]SensorSpec{}
	for i := range 1000 {
		sensors[string(rune('a'+i%26))+string(rune('0'+i/26%10))+string(rune('A'+i/260))] = SensorSpec{Ranges: map[string]Range{"t": {Min: f(-40), Max: f(85)}}}
	}
	v, _ := New(Config{KnownSensorsOnly: true}, sensors, Options{Clock: clock.New(mc.opts())})
	r0 := ingest.Reading{Sensor: "a0A", Metric: "t", Value: 20, Time: ns26, Arrival: ns26}
	b.ReportAllocs()
	for b.Loop() {
		r := r0
		v.Check(&r)
	}
}
