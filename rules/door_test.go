package rules

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/clock"
)

// The door's tests (moved from ingest/validate): the checks one by one
// through the door's own calls, in the order the engine makes them, then
// through the engine.

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

// newTestDoor builds an engine with no rules around a door and returns the
// door.
func newTestDoor(t testing.TB, cfg Validation, sensors map[string]SensorSpec, clk *clock.Clock) *door {
	t.Helper()
	e, err := New(Config{}, Options{Door: &Door{Validation: cfg, Sensors: sensors, Clock: clk}})
	if err != nil {
		t.Fatal(err)
	}
	return e.door
}

// admit is the door's decision on one reading as Engine.process makes it
// (allowlist at the route's creation, range resolved per route, check),
// with the reason of a rejection.
func admit(d *door, r *ingest.Reading) (bool, string) {
	if !d.allows(r.Sensor) {
		d.refuse(r)
		return false, ReasonUnknownSensor
	}
	before := d.stats().Rejected
	if d.check(d.rangeFor(r.Sensor, r.Metric), r) {
		return true, ""
	}
	for k, n := range d.stats().Rejected {
		if n != before[k] {
			return false, k
		}
	}
	return false, "time out of bounds"
}

var (
	t2026 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ns26  = t2026.UnixNano()
)

func TestDoorCheck(t *testing.T) {
	mc := &manualClock{wall: t2026, synced: true}
	clk := clock.New(mc.opts())
	sensors := map[string]SensorSpec{
		"gh-1": {Ranges: map[string]Range{"temperature": {Min: f(-40), Max: f(85)}, "rh": {Max: f(100)}}},
		"gh-2": {},
	}
	v := newTestDoor(t, Validation{Allow: []string{"extra"}, KnownSensorsOnly: true}, sensors, clk)
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
			ok, reason := admit(v, &r)
			if reason != tt.reason || ok != (tt.reason == "") {
				t.Fatalf("Check = %v %q, want %q", ok, reason, tt.reason)
			}
			if ok && r != tt.want {
				t.Fatalf("got  %+v\nwant %+v", r, tt.want)
			}
		})
	}
	st := v.stats()
	if st.Rejected[ReasonUnknownSensor] != 1 || st.Rejected[ReasonNotFinite] != 2 || st.Rejected[ReasonOutOfRange] != 1 ||
		st.FutureTime != 1 || st.StaleTime != 1 || st.Passed != 8 || st.Checked != 12 {
		t.Errorf("stats %+v", st)
	}
}

func TestOutOfRangeFlagPolicy(t *testing.T) {
	mc := &manualClock{wall: t2026, synced: true}
	v := newTestDoor(t, Validation{OutOfRange: PolicyFlag}, map[string]SensorSpec{"s": {Ranges: map[string]Range{"t": {Min: f(0)}}}}, clock.New(mc.opts()))
	r := ingest.Reading{Sensor: "s", Metric: "t", Value: -1, Time: ns26, Arrival: ns26}
	if ok, _ := admit(v, &r); !ok || !r.Quality.Has(ingest.QualityOutOfRange) {
		t.Fatalf("flag policy: %v %+v", ok, r)
	}
	if ok, _ := admit(v, &ingest.Reading{Sensor: "other", Metric: "t", Value: -1, Time: ns26, Arrival: ns26}); !ok {
		t.Fatal("no allowlist configured: every sensor passes")
	}
}

func TestDoorConfigValidate(t *testing.T) {
	c := Validation{MaxFutureSkew: -1, OutOfRange: "maybe", Allow: []string{"a", ""}}
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
	_, err := New(Config{}, Options{Door: &Door{Sensors: map[string]SensorSpec{"s": {Ranges: map[string]Range{"t": {Min: f(2), Max: f(1)}}}}}})
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
	v := newTestDoor(t, Validation{}, nil, clk)

	mc.advance(30 * time.Second)
	clk.Refresh()
	// A reading without a payload time, stamped by the unsynced clk.
	early := ingest.Reading{Sensor: "s", Metric: "t", Value: 1, Time: clk.Now().UnixNano(), Arrival: clk.Now().UnixNano(), Quality: ingest.QualityNoEventTime}
	held := early // the same reading, still in flight when NTP syncs
	if ok, _ := admit(v, &early); !ok || !early.Quality.Has(ingest.QualityClockUnsynced) || early.Arrival != early.Time {
		t.Fatalf("unsynced reading: %+v", early)
	}
	// A device with its own good clock sends 2026 times: not "future" while
	// we are unsynced, but flagged because our arrival stamp is bogus.
	dev := ingest.Reading{Sensor: "s", Metric: "t", Value: 1, Time: ns26, Arrival: clk.Now().UnixNano()}
	if ok, _ := admit(v, &dev); !ok || dev.Quality != ingest.QualityClockUnsynced || dev.Time != ns26 {
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
	if ok, _ := admit(v, &held); !ok {
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
	if st := v.stats(); st.Corrected != 1 || st.Jumps != 2 {
		t.Errorf("stats %+v", st)
	}
}

// Run passes what the door accepts on to the stages, drops the rest, and
// refreshes the door's clock on the door's tick while it runs.
func TestDoorInEngineRun(t *testing.T) {
	mc := &manualClock{wall: t2026, synced: true}
	clk := clock.New(mc.opts())
	tick := make(chan time.Time)
	cfg := parseConfig(t, `
windows:
  - {size: 10s}
`)
	e, err := New(cfg, Options{Door: &Door{Validation: Validation{KnownSensorsOnly: true},
		Sensors: map[string]SensorSpec{"a": {}, "b": {}}, Clock: clk, Tick: tick}})
	if err != nil {
		t.Fatal(err)
	}
	in := make(chan ingest.Reading, 4)
	sink := &collect{}
	done := make(chan error, 1)
	go func() { done <- e.Run(context.Background(), in, sink) }()
	in <- ingest.Reading{Sensor: "a", Metric: "m", Value: 1, Time: ns26, Arrival: ns26}
	in <- ingest.Reading{Sensor: "a", Metric: "m", Value: math.NaN(), Time: ns26, Arrival: ns26}
	in <- ingest.Reading{Sensor: "intruder", Metric: "m", Value: 1, Time: ns26, Arrival: ns26}
	mc.advance(time.Second)
	mc.step(time.Hour)
	tick <- mc.wall // the watcher takes it: a jump is recorded
	in <- ingest.Reading{Sensor: "b", Metric: "m", Value: 2, Time: ns26, Arrival: ns26}
	tick <- mc.wall // sent only once the watcher is back from the first refresh
	close(in)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(sink.summaries) != 2 || sink.summaries[0].Sensor != "a" || sink.summaries[0].Count != 1 ||
		sink.summaries[0].Rejected != 1 || sink.summaries[1].Sensor != "b" {
		t.Fatalf("summaries %+v", sink.summaries)
	}
	ds := e.DoorStats()
	if ds.Rejected[ReasonNotFinite] != 1 || ds.Rejected[ReasonUnknownSensor] != 1 || ds.Passed != 2 || ds.Checked != 4 || ds.Jumps != 1 {
		t.Fatalf("door stats %+v", ds)
	}
	if st := e.Stats(); st.Readings != 4 || st.Rejected != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// The door runs on every reading first, may change it and may drop it,
// without costing an allocation per reading (it replaces the Options.Admit
// hook, whose test this was).
func TestDoorDoesNotAllocate(t *testing.T) {
	mc := &manualClock{wall: t2026, synced: true}
	cfg := parseConfig(t, m1Config)
	e, err := New(cfg, Options{Door: &Door{Validation: Validation{KnownSensorsOnly: true},
		Sensors: map[string]SensorSpec{"gh-1": {Ranges: map[string]Range{"temperature": {Min: f(-40), Max: f(85)}}}, "gh-2": {}},
		Clock:   clock.New(mc.opts())}})
	if err != nil {
		t.Fatal(err)
	}
	em := newEmitter(context.Background(), discard{})
	sensors := []string{"gh-1", "gh-2", "gh-3"}
	var i int64
	step := func() {
		r := ingest.Reading{Sensor: sensors[i%3], Metric: "temperature", Value: float64(20 + i%7), Time: ns26 + i*int64(time.Millisecond), Arrival: ns26, Unit: "degC"}
		i++
		if err := e.process(em, &r); err != nil {
			t.Fatal(err)
		}
	}
	for range 30_000 {
		step()
	}
	if ds := e.DoorStats(); ds.Passed != 20_000 || ds.Rejected[ReasonUnknownSensor] != 10_000 {
		t.Fatalf("door stats %+v", ds)
	}
	if n := testing.AllocsPerRun(20_000, step); n != 0 {
		t.Fatalf("%v allocations per reading with a door", n)
	}
}

func BenchmarkDoorCheck(b *testing.B) {
	mc := &manualClock{wall: t2026, synced: true}
	sensors := map[string]SensorSpec{}
	for i := range 1000 {
		sensors[string(rune('a'+i%26))+string(rune('0'+i/26%10))+string(rune('A'+i/260))] = SensorSpec{Ranges: map[string]Range{"t": {Min: f(-40), Max: f(85)}}}
	}
	v := newTestDoor(b, Validation{KnownSensorsOnly: true}, sensors, clock.New(mc.opts()))
	r0 := ingest.Reading{Sensor: "a0A", Metric: "t", Value: 20, Time: ns26, Arrival: ns26}
	b.ReportAllocs()
	for b.Loop() {
		// What the engine does per reading once the route exists (the
		// allowlist and the range were resolved when it was made), plus
		// the sensor lookup the route cache saves.
		r := r0
		if v.allows(r.Sensor) {
			v.check(v.rangeFor(r.Sensor, r.Metric), &r)
		}
	}
}

// A gateway whose kernel reports the clock unsynchronised but whose wall
// time is plausible (no NTP daemon, or fake-hwclock) must still refuse a
// timestamp decades ahead as event time: trusted, it would move the key's
// watermark there and every later reading would be late. A gateway still in
// 1970 cannot judge, and keeps the payload's time.
func TestFutureTimeWhileUnsyncedButPlausible(t *testing.T) {
	far := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for _, tc := range []struct {
		name       string
		wall       time.Time
		wantFuture bool
	}{
		{"plausible wall time, unsynced", t2026, true},
		{"1970 boot, unsynced", time.Unix(100, 0), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mc := &manualClock{wall: tc.wall}
			v := newTestDoor(t, Validation{}, nil, clock.New(mc.opts()))
			r := ingest.Reading{Sensor: "s", Metric: "t", Value: 1, Time: far, Arrival: tc.wall.UnixNano()}
			if ok, reason := admit(v, &r); !ok {
				t.Fatalf("rejected: %s", reason)
			}
			if got := r.Quality.Has(ingest.QualityFutureTime); got != tc.wantFuture {
				t.Fatalf("future flag %v, want %v (reading %+v)", got, tc.wantFuture, r)
			}
			if tc.wantFuture && (r.Time != r.Arrival || r.OrigTime != far) {
				t.Fatalf("time not replaced by arrival: %+v", r)
			}
			if !r.Quality.Has(ingest.QualityClockUnsynced) {
				t.Fatal("unsynced gateway did not flag the reading")
			}
		})
	}
}
