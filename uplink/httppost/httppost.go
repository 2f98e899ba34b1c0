package httppost

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/sensorgate/sensorgate/internal/backoff"
	"github.com/sensorgate/sensorgate/internal/secret"
	"github.com/sensorgate/sensorgate/uplink"
)

// maxAckBacklog bounds the records delivered but not yet acknowledged in
// the outbox.
const maxAckBacklog = 100_000

// maxRetryAfter caps how long a Retry-After header can make us wait.
const maxRetryAfter = time.Hour

// Transport posts batches to an HTTP endpoint.
type Transport struct {
	cfg    uplink.Config
	client *http.Client
	tr     *http.Transport
}

var _ uplink.Transport = (*Transport)(nil)

// New checks cfg (Defaults applied to a copy) and builds the HTTP client,
// reading the TLS files now.
func New(cfg uplink.Config) (*Transport, error) {
	cfg.Defaults()
	var tlsc *tls.Config
	if cfg.TLS.IsSet() {
		// No host: net/http names each server itself (redirects included)
		// unless tls.server_name is set.
		c, err := cfg.TLS.Build("")
		if err != nil {
			return nil, fmt.Errorf("httppost: %s: %w", cfg.Name, err)
		}
		tlsc = c
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsc
	tr.MaxIdleConnsPerHost = 4
	return &Transport{cfg: cfg, tr: tr, client: &http.Client{Transport: tr, CheckRedirect: keepMethodRedirects}}, nil
}

// Session posts batches until ctx is done; it retries by itself (with
// Retry-After) and returns early only when the outbox cannot be read.
func (t *Transport) Session(ctx context.Context, l *uplink.Link) (bool, error) {
	defer t.tr.CloseIdleConnections()
	p := &poster{cfg: t.cfg, l: l, client: t.client, bo: backoff.Backoff{Min: t.cfg.Backoff.Min, Max: t.cfg.Backoff.Max}}
	progressed := false
	for ctx.Err() == nil {
		ok, err := l.Fill(ctx)
		if err != nil {
			l.CountError()
			l.Logger().Error("http uplink", "err", err)
			return progressed, err
		}
		if !ok {
			if !l.WaitData(ctx) {
				break
			}
			continue
		}
		if !p.deliver(ctx, l.Next()) {
			break
		}
		progressed = true
	}
	return progressed, nil
}

type poster struct {
	cfg    uplink.Config
	l      *uplink.Link
	client *http.Client
	bo     backoff.Backoff
	body   []byte
	zbuf   bytes.Buffer
	zw     *gzip.Writer
}

// deliver sends batch until it is acknowledged or dead-lettered; it
// returns false only when ctx is done (the batch then stays in the outbox).
// A batch refused with a permanent 4xx is split in halves and each half
// sent again, so that only the offending records end in the dead lane.
func (p *poster) deliver(ctx context.Context, batch []uplink.Record) bool {
	l := p.l
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			l.Retried(len(batch))
		}
		status, retryAfter, err := p.post(ctx, batch)
		if ctx.Err() != nil {
			return false
		}
		switch {
		case err == nil && status >= 200 && status < 300:
			l.Online()
			p.bo.Reset()
			l.Ack(batch[0].Lane, uplink.Seqs(batch)...)
			if l.AckBacklog() > maxAckBacklog {
				l.FlushAcks() // the outbox cannot keep up: wait for it
			}
			return true
		case err == nil && !retryable(status):
			if len(batch) > 1 {
				h := len(batch) / 2
				return p.deliver(ctx, batch[:h]) && p.deliver(ctx, batch[h:])
			}
			l.Online()
			for {
				derr := l.DeadLetter(ctx, &batch[0])
				if derr == nil {
					l.SetLastError(fmt.Errorf("%w: HTTP status %d for record %s", uplink.ErrRejected, status, batch[0].ID))
					l.Logger().Warn("record rejected by upstream", "status", status, "id", batch[0].ID)
					return true
				}
				l.Logger().Error("http uplink", "err", derr)
				if !l.Sleep(ctx, p.bo.Next()) {
					return false
				}
			}
		}
		// Retry: network error, timeout, 408/425/429, 5xx, 401/403.
		l.CountError()
		l.Offline()
		d := p.bo.Next()
		if retryAfter > 0 {
			d = retryAfter
		}
		if err != nil {
			l.SetLastError(err)
			l.Logger().Warn("http post failed, retrying", "err", err, "in", d.Round(time.Millisecond))
		} else {
			l.SetLastError(fmt.Errorf("httppost: %s: post: HTTP status %d", p.cfg.Name, status))
			l.Logger().Warn("http post refused, retrying", "status", status, "in", d.Round(time.Millisecond))
		}
		if !l.Sleep(ctx, d) {
			return false
		}
	}
}

// keepMethodRedirects follows only 307 and 308, which repeat the POST with
// its body. Go would turn a POST into a GET on 301, 302 and 303 and then
// report the status of that GET: instead such a redirect is returned as
// is (a 3xx, retried, with the status in LastError).
func keepMethodRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return http.ErrUseLastResponse
	}
	if req.Response != nil && req.Response.StatusCode != http.StatusTemporaryRedirect &&
		req.Response.StatusCode != http.StatusPermanentRedirect {
		return http.ErrUseLastResponse
	}
	return nil
}

// retryable reports whether a non-2xx status is worth retrying: the
// upstream is overloaded or failing (429, 5xx), the request timed out
// (408) or was too early (425), or credentials are refused (401, 403, 407),
// which is not the records' fault (a rotated token file fixes it).
func retryable(status int) bool {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusProxyAuthRequired,
		http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return status >= 500 || status < 200 || (status >= 300 && status < 400)
}

// post sends one request; it returns the status and a Retry-After delay.
func (p *poster) post(ctx context.Context, batch []uplink.Record) (int, time.Duration, error) {
	l := p.l
	p.body = l.AppendPayload(p.body[:0], batch, true)
	body := p.body
	if p.cfg.Gzip {
		if p.zw == nil {
			p.zw = gzip.NewWriter(&p.zbuf)
		}
		p.zbuf.Reset()
		p.zw.Reset(&p.zbuf)
		p.zw.Write(body)
		p.zw.Close()
		body = p.zbuf.Bytes()
	}
	rctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, p.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, 0, fmt.Errorf("httppost: %s: %w", p.cfg.Name, secret.RedactURLError(err))
	}
	req.Header.Set("Content-Type", l.ContentType())
	req.Header.Set("User-Agent", "sensorgate")
	if p.cfg.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	for k, v := range p.cfg.Headers {
		req.Header.Set(k, v)
	}
	tok, err := p.cfg.TokenSource().Read()
	if err != nil {
		return 0, 0, fmt.Errorf("httppost: %s: %w", p.cfg.Name, err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("X-Sensorgate-Records", strconv.Itoa(len(batch)))
	l.Sent(len(batch), len(body))
	l.InFlight(len(batch))
	defer l.InFlight(-len(batch))
	resp, err := p.client.Do(req)
	if err != nil {
		// The error names the URL, and it goes to the log and /healthz.
		err = secret.RedactURLError(err)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return 0, 0, fmt.Errorf("httppost: %s: post: timeout after %s: %w", p.cfg.Name, p.cfg.Timeout, err)
		}
		return 0, 0, fmt.Errorf("httppost: %s: post: %w%s", p.cfg.Name, err, p.cfg.TLS.Hint(err))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, parseRetryAfter(resp.Header.Get("Retry-After"), l.Now()), nil
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 if absent/bad.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.Atoi(v); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	if d < 0 {
		return 0
	}
	return min(d, maxRetryAfter)
}
