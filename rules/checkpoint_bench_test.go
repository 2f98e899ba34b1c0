package rules

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
)

// byteCounter is a Committer that counts what a checkpoint would write.
type byteCounter struct {
	discard
	state, keys int
}

func (c *byteCounter) Commit(_ context.Context, cp *Checkpoint) error {
	for _, s := range cp.State {
		c.state += len(s.Key) + len(s.Value)
		c.keys++
	}
	return nil
}

// BenchmarkCheckpoint: 1,000 sensors x 2 metrics, 10 s tumbling windows
// (count, mean, min, max), a reading per key per second, a checkpoint
// every 20 readings (a broker's in-flight window) and every 1,000. It
// reports the bytes of state (keys and values) a checkpoint writes per
// reading and per changed key; the cost per reading includes the
// checkpoint's encoding.
func BenchmarkCheckpoint(b *testing.B) {
	for _, every := range []int{20, 1000} {
		b.Run(fmt.Sprintf("every=%d", every), func(b *testing.B) {
			cfg := parseConfig(b, `
windows:
  - {name: 10s, size: 10s, lateness: 2s}
`)
			e, err := New(cfg, Options{Commit: &CommitPolicy{}})
			if err != nil {
				b.Fatal(err)
			}
			sink := &byteCounter{}
			em := newEmitter(context.Background(), sink)
			names := benchSensorNames()
			metrics := []string{"temperature", "humidity"}
			const keys = 1000 * 2
			base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
			var r ingest.Reading
			proc := func(i int) {
				k := i % keys
				t := base + int64(i/keys)*int64(time.Second) + int64(k)*1000
				r = ingest.Reading{Sensor: names[k/2], Metric: metrics[k%2], Value: 20 + float64((i*7919)%1000)/100,
					Unit: "degC", Time: t, Arrival: t + int64(time.Millisecond)}
				if err := e.process(em, &r); err != nil {
					b.Fatal(err)
				}
				if (i+1)%every == 0 {
					if err := e.checkpoint(em, false); err != nil {
						b.Fatal(err)
					}
				}
			}
			i := 0
			for ; i < keys*30; i++ { // warm: every key has opened and closed windows
				proc(i)
			}
			sink.state, sink.keys = 0, 0
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				proc(i)
				i++
			}
			b.StopTimer()
			b.ReportMetric(float64(sink.state)/float64(b.N), "state-B/reading")
			if sink.keys > 0 {
				b.ReportMetric(float64(sink.state)/float64(sink.keys), "B/key")
			}
		})
	}
}

// BenchmarkRestore reports the start-up cost of Restore: the state of
// 1,000 sensors x 2 metrics (one open 10 s window and one alert state
// each), loaded from a map. The cost grows with the keys in the store, not
// with the readings committed.
func BenchmarkRestore(b *testing.B) {
	cfg := parseConfig(b, `
alerts:
  - {id: hot, above: 30}
windows:
  - {name: 10s, size: 10s, lateness: 2s}
`)
	e, err := New(cfg, Options{Commit: &CommitPolicy{}})
	if err != nil {
		b.Fatal(err)
	}
	st := newStore()
	em := newEmitter(context.Background(), st)
	names := benchSensorNames()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for i := range 2000 * 5 {
		k := i % 2000
		r := ingest.Reading{Sensor: names[k/2], Metric: []string{"temperature", "humidity"}[k%2], Value: 21.5, Unit: "degC",
			Time: base + int64(i/2000)*int64(time.Second), Arrival: base + int64(i/2000)*int64(time.Second)}
		if err := e.process(em, &r); err != nil {
			b.Fatal(err)
		}
	}
	if err := e.checkpoint(em, false); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		e2, err := New(cfg, Options{Commit: &CommitPolicy{}})
		if err != nil {
			b.Fatal(err)
		}
		if err := e2.Restore(st.load); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(len(st.kv)), "keys")
	b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(b.N)/float64(len(st.kv)), "ns/key")
}
