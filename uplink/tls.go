package uplink

import (
	"fmt"

	"github.com/sensorgate/sensorgate/internal/secret"
)

// PasswordSource is where the MQTT password comes from (password,
// password_file or password_env); transports Read it at every connect, so
// a rotated file works without a restart.
func (c Config) PasswordSource() secret.Source {
	return secret.Source{Key: "password", Inline: c.Password, File: c.PasswordFile, Env: c.PasswordEnv}
}

// TokenSource is where the HTTP bearer token comes from (token_file or
// token_env); read at every request.
func (c Config) TokenSource() secret.Source {
	return secret.Source{Key: "token", File: c.TokenFile, Env: c.TokenEnv}
}

// check reads once what the transport will read at every connect (TLS
// files, the password or token), so that New fails early on a typo.
func (c Config) check() error {
	if c.TLS.IsSet() {
		if _, err := c.TLS.Build(""); err != nil {
			return fmt.Errorf("uplink: %s: %w", c.Name, err)
		}
	}
	var src secret.Source
	switch c.Type {
	case TypeMQTT:
		src = c.PasswordSource()
	case TypeHTTP:
		src = c.TokenSource()
	default:
		return nil
	}
	if _, err := src.Read(); err != nil {
		return fmt.Errorf("uplink: %s: %w", c.Name, err)
	}
	return nil
}
