package mqtttest

import (
	"crypto/tls"
	"crypto/x509"
	"os"
)

func parseLeaf(c tls.Certificate) (*x509.Certificate, error) {
	return x509.ParseCertificate(c.Certificate[0])
}

func dirExists(p string) bool { _, err := os.Stat(p); return err == nil }
