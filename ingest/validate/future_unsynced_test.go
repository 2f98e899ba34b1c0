package validate

import (
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/clock"
)

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
			v, err := New(Config{}, nil, Options{Clock: clock.New(mc.opts())})
			if err != nil {
				t.Fatal(err)
			}
			r := ingest.Reading{Sensor: "s", Metric: "t", Value: 1, Time: far, Arrival: tc.wall.UnixNano()}
			if ok, reason := v.Check(&r); !ok {
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
