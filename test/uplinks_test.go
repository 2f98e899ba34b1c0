package test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/test/mqtttest"
	"github.com/sensorgate/sensorgate/uplink"
	"github.com/sensorgate/sensorgate/uplink/httppost"
	"github.com/sensorgate/sensorgate/uplink/mqttpub"
)

// newUplink is uplink.New with the transport cfg.Type names, as
// cmd/sensorgate picks it.
func newUplink(cfg uplink.Config, ob uplink.Outbox, opts uplink.Options) (*uplink.Uplink, error) {
	var tr uplink.Transport
	var err error
	switch cfg.Type {
	case uplink.TypeHTTP:
		tr, err = httppost.New(cfg)
	default:
		tr, err = mqttpub.New(cfg)
	}
	if err != nil {
		return nil, err
	}
	return uplink.New(cfg, ob, tr, opts)
}

// deliverOneAlert runs an uplink built from cfg on a fresh outbox holding
// one alert until the alert is acknowledged (wantErr empty) or failures
// reports two failed attempts, and returns the uplink's stats and how many
// records are still in the outbox.
func deliverOneAlert(t *testing.T, cfg uplink.Config, wantErr string, failures func(uplink.Stats) uint64) (uplink.Stats, int) {
	t.Helper()
	ob, err := buffer.Open(buffer.Config{Path: filepath.Join(t.TempDir(), "outbox.db")}, buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	b, _ := ingest.AppendAlert(nil, &ingest.Alert{ID: "a1", Rule: "r", Sensor: "s", Metric: "t", State: "fire"})
	if err := ob.Append(context.Background(), buffer.LaneAlerts, b); err != nil {
		t.Fatal(err)
	}
	u, err := newUplink(cfg, ob, uplink.Options{Gateway: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	stop := mqtttest.Go(t, u.Run)
	if wantErr == "" {
		mqtttest.WaitFor(t, 30*time.Second, func() bool { return u.Stats().Acked == 1 }, "delivery")
	} else {
		mqtttest.WaitFor(t, 30*time.Second, func() bool { return failures(u.Stats()) >= 2 }, "two failed attempts")
	}
	stop()
	recs, err := ob.Read(buffer.LaneAlerts, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	return u.Stats(), len(recs)
}
