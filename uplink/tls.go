package uplink

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// tlsConfig builds the client TLS configuration from cfg.TLS, reading the
// files now (every MQTT connect calls it again, so renewed certificates
// are picked up without a restart). It returns nil, nil when TLS is not configured (an ssl:// or
// https:// URL then uses the system roots).
func (u *Uplink) tlsConfig() (*tls.Config, error) {
	t := u.cfg.TLS
	if !t.enabled() {
		return nil, nil
	}
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		NextProtos:         t.ALPN,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in, documented as tests only
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("uplink: %s: tls.ca_file: %w", u.cfg.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("uplink: %s: tls.ca_file %s: no PEM certificates found", u.cfg.Name, t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("uplink: %s: tls.cert_file/key_file: %w", u.cfg.Name, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
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

func (u *Uplink) password() (string, error) {
	return readSecret(u.cfg.Password, u.cfg.PasswordFile, u.cfg.PasswordEnv, "password")
}

func (u *Uplink) token() (string, error) {
	return readSecret("", u.cfg.TokenFile, u.cfg.TokenEnv, "token")
}

// checkSecrets fails early when a configured secret cannot be read.
func (u *Uplink) checkSecrets() error {
	switch u.cfg.Type {
	case TypeMQTT:
		if _, err := u.password(); err != nil {
			return fmt.Errorf("uplink: %s: %w", u.cfg.Name, err)
		}
	case TypeHTTP:
		if _, err := u.token(); err != nil {
			return fmt.Errorf("uplink: %s: %w", u.cfg.Name, err)
		}
	}
	return nil
}

// tlsHint explains the TLS failures operators hit most.
func (u *Uplink) tlsHint(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "certificate required") && u.cfg.TLS.CertFile == "":
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
