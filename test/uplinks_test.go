package test

import (
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
