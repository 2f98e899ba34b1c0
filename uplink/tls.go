package uplink

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// TLSConfig builds the client TLS configuration from c.TLS, reading the
// files now (every MQTT connect calls it again, so renewed certificates
// are picked up without a restart). It returns nil, nil when TLS is not
// configured (an ssl:// or https:// URL then uses the system roots).
func (c Config) TLSConfig() (*tls.Config, error) {
	t := c.TLS
	if !t.enabled() {
		return nil, nil
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		NextProtos:         t.ALPN,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in, documented as tests only
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("uplink: %s: tls.ca_file: %w", c.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("uplink: %s: tls.ca_file %s: no PEM certificates found", c.Name, t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("uplink: %s: tls.cert_file/key_file: %w", c.Name, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// ErrNoSecret is wrapped when a configured password or token file or
// environment variable is missing or empty.
var ErrNoSecret = errors.New("uplink: secret not available")

// readSecret returns the inline value, or the trimmed content of file, or
// the value of the environment variable env.
func readSecret(inline, file, env, what string) (string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%w: %s_file: %w", ErrNoSecret, what, err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", fmt.Errorf("%w: %s_file %s is empty", ErrNoSecret, what, file)
		}
		return s, nil
	case env != "":
		s, ok := os.LookupEnv(env)
		if !ok || s == "" {
			return "", fmt.Errorf("%w: %s_env: environment variable %s is not set", ErrNoSecret, what, env)
		}
		return s, nil
	}
	return inline, nil
}

// ReadPassword reads the MQTT password now (inline, password_file or
// password_env), so that a rotated file is picked up at the next connect.
func (c Config) ReadPassword() (string, error) {
	return readSecret(c.Password, c.PasswordFile, c.PasswordEnv, "password")
}

// ReadToken reads the HTTP bearer token now (token_file or token_env; "" if
// neither is set).
func (c Config) ReadToken() (string, error) {
	return readSecret("", c.TokenFile, c.TokenEnv, "token")
}

// checkSecrets fails early when a configured secret cannot be read.
func (c Config) checkSecrets() error {
	switch c.Type {
	case TypeMQTT:
		if _, err := c.ReadPassword(); err != nil {
			return fmt.Errorf("uplink: %s: %w", c.Name, err)
		}
	case TypeHTTP:
		if _, err := c.ReadToken(); err != nil {
			return fmt.Errorf("uplink: %s: %w", c.Name, err)
		}
	}
	return nil
}

// TLSHint explains the TLS failures operators hit most: a text to append
// to err's message, "" if there is nothing to add.
func (c Config) TLSHint(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "certificate required") && c.TLS.CertFile == "":
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
