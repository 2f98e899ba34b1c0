package mqttnet

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sensorgate/sensorgate/ingest"
)

// TLS is the client side of a TLS connection: the YAML `tls:` block of
// MQTT sources and of uplinks (ssl://, tls://, mqtts://, wss:// and
// https:// URLs).
type TLS struct {
	// CAFile is a PEM bundle of CAs to trust instead of the system pool.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the PEM client certificate and key for
	// mutual TLS (brokers that authenticate clients by certificate, AWS
	// IoT Core, Azure IoT Hub with X.509). Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the server certificate
	// (and sent as SNI).
	ServerName string `yaml:"server_name"`
	// ALPN protocols to offer, e.g. ["x-amzn-mqtt-ca"] for AWS IoT on 443.
	ALPN []string `yaml:"alpn"`
	// InsecureSkipVerify disables server certificate checks. For tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// IsSet reports whether any field is set.
func (t TLS) IsSet() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" ||
		len(t.ALPN) != 0 || t.InsecureSkipVerify
}

// Validate checks t without reading any file. Errors are
// *ingest.FieldError values with paths relative to the block
// ("cert_file"); prefix them with ingest.PrefixErrors.
func (t TLS) Validate() error {
	var errs []error
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs = append(errs, ingest.FieldErrorf("cert_file", "cert_file and key_file must be set together"))
	}
	return errors.Join(errs...)
}

// Build returns the *tls.Config for a server called host (used when
// ServerName is empty), reading the files now: call it at every connect
// to pick up renewed certificates. Errors name the YAML key and the file,
// never its content.
func (t TLS) Build(host string) (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         host,
		NextProtos:         t.ALPN,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in, documented as tests only
	}
	if t.ServerName != "" {
		c.ServerName = t.ServerName
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqttnet: tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqttnet: tls.ca_file %s: %w", t.CAFile, ErrNoCertificates)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqttnet: tls.cert_file/key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// ErrNoCertificates is wrapped when tls.ca_file holds no PEM certificate.
var ErrNoCertificates = errors.New("no PEM certificates found")

// Hint explains the TLS failures operators hit most, as a parenthesised
// suffix for err's log line or error ("" when it has nothing to add).
func (t TLS) Hint(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "certificate required") && t.CertFile == "":
		return " (the server requires a client certificate: set tls.cert_file and tls.key_file)"
	case strings.Contains(msg, "certificate required"), strings.Contains(msg, "bad certificate"),
		strings.Contains(msg, "unknown certificate authority"):
		return " (the server did not accept tls.cert_file: is it issued by a CA the server trusts?)"
	case strings.Contains(msg, "certificate signed by unknown authority"):
		return " (the server certificate is not signed by a CA in tls.ca_file or the system pool)"
	case strings.Contains(msg, "certificate is valid for"):
		return " (the server certificate does not name this host: check the URL or set tls.server_name)"
	}
	return ""
}
