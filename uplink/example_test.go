package uplink_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/uplink"
	"github.com/sensorgate/sensorgate/uplink/stdout"
)

// Wiring an uplink to an outbox: records appended to the outbox are
// forwarded (here by the stdout transport, to standard error) and removed once delivered.
func Example() {
	dir, _ := os.MkdirTemp("", "uplink-example")
	defer os.RemoveAll(dir)
	ob, err := buffer.Open(buffer.Config{Path: filepath.Join(dir, "outbox.db")}, buffer.Options{})
	if err != nil {
		panic(err)
	}
	defer ob.Close()

	cfgs := []uplink.Config{
		{Name: "cloud", Type: "mqtt", URL: "tcp://127.0.0.1:1883", Lanes: []string{"alerts", "summaries"}},
		{Name: "console", Type: "stdout"}, // gets the lanes nobody else serves: raw
	}
	uplink.AssignDefaultLanes(cfgs)
	for i := range cfgs {
		cfgs[i].Defaults()
	}
	if err := uplink.ValidateRouting(cfgs); err != nil {
		panic(err)
	}

	u, err := uplink.New(cfgs[1], ob, stdout.New(os.Stderr), uplink.Options{Gateway: "gw-1", Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		panic(err)
	}
	rec, _ := ingest.AppendReadings(nil, &ingest.ReadingBatch{Readings: []ingest.Reading{
		{Sensor: "gh-1", Metric: "temperature", Value: 21.5, Unit: "Cel", Time: time.Now().UnixNano()},
	}})
	if err := ob.Append(context.Background(), buffer.LaneRaw, rec); err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- u.Run(ctx) }()
	for u.Stats().Acked < 1 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}
