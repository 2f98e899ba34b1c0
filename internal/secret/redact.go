package secret

import (
	"errors"
	"net/url"
	"strings"
)

// Redacted replaces a secret in what RedactURL returns.
const Redacted = "REDACTED"

// RedactURL returns raw with the userinfo password and every query value
// replaced by Redacted, and the fragment dropped: a URL is logged, put in
// errors and shown in /healthz, and an upstream's token often rides in its
// query (?token=, ?sig=, ?api_key=). Every value goes, not only those
// whose key looks like a secret, because the key names are the upstream's
// choice; the keys stay, to tell the URLs apart. A URL that does not
// parse is returned as "(invalid url)": its text could be anything.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid url)"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), Redacted)
	}
	if u.RawQuery != "" {
		parts := strings.Split(u.RawQuery, "&")
		for i, p := range parts {
			if k, _, ok := strings.Cut(p, "="); ok {
				parts[i] = k + "=" + Redacted
			}
		}
		u.RawQuery = strings.Join(parts, "&")
		u.ForceQuery = false
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// RedactURLError rewrites the URL inside err (a *url.Error, as net/http's
// Client returns) with RedactURL and returns err; net/http removes the
// password itself but keeps the query. Call it on the error as returned,
// before wrapping it: fmt.Errorf formats the message when it is called.
func RedactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = RedactURL(ue.URL)
	}
	return err
}
