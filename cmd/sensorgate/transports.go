package main

import (
	"fmt"
	"io"

	"github.com/sensorgate/sensorgate/uplink"
	"github.com/sensorgate/sensorgate/uplink/httppost"
	"github.com/sensorgate/sensorgate/uplink/mqttpub"
	stdoutup "github.com/sensorgate/sensorgate/uplink/stdout"
)

// transportFunc builds the transport of one uplinks[] entry; stdout is
// where a stdout uplink writes.
type transportFunc func(cfg uplink.Config, stdout io.Writer) (uplink.Transport, error)

// transports maps uplinks[].type to its transport. A smaller build leaves
// a transport out by deleting its line (and its import): the package is
// then not linked into the binary.
func transports() map[string]transportFunc {
	return map[string]transportFunc{
		uplink.TypeMQTT:   func(c uplink.Config, _ io.Writer) (uplink.Transport, error) { return mqttpub.New(c) },
		uplink.TypeHTTP:   func(c uplink.Config, _ io.Writer) (uplink.Transport, error) { return httppost.New(c) },
		uplink.TypeStdout: func(_ uplink.Config, w io.Writer) (uplink.Transport, error) { return stdoutup.New(w), nil },
	}
}

// newUplink builds the uplink of one uplinks[] entry with the transport
// its type names.
func newUplink(cfg uplink.Config, ob uplink.Outbox, opts uplink.Options, stdout io.Writer) (*uplink.Uplink, error) {
	newTransport, ok := transports()[cfg.Type]
	if !ok {
		return nil, fmt.Errorf("uplink type %q is not built into this binary", cfg.Type)
	}
	tr, err := newTransport(cfg, stdout)
	if err != nil {
		return nil, err
	}
	return uplink.New(cfg, ob, tr, opts)
}
