package rules

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/sensorgate/sensorgate/ingest"
)

// FuzzConfig: any YAML either fails to decode or validate with an error, or
// builds an engine that processes readings without panicking.
func FuzzConfig(f *testing.F) {
	dirs, _ := filepath.Glob("testdata/*/config.yaml")
	for _, d := range dirs {
		if b, err := os.ReadFile(d); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(m1Config))
	f.Add([]byte("stages: [{type: derive, inputs: [a], expr: 'a / 0', output: b}]\nwindows: [{size: 1ns}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := decodeConfig(b)
		if err != nil {
			return
		}
		e, err := New(cfg, Options{})
		if err != nil {
			t.Fatalf("validated config rejected by New: %v", err)
		}
		em := newEmitter(t.Context(), discard{})
		for i, m := range []string{"temperature", "humidity", "a", "m", "temperature"} {
			for _, v := range []float64{-1e300, 0, 21.5, math.NaN(), 1e300} {
				r := ingest.Reading{Sensor: "gh-1", Metric: m, Value: v, Unit: "degC", Time: int64(i) * 1e9}
				if err := e.process(em, &r); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := e.tick(em); err != nil {
			t.Fatal(err)
		}
		if err := e.flush(em); err != nil {
			t.Fatal(err)
		}
	})
}
