package uplink

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
)

// maxAckBacklog bounds the records delivered but not yet acknowledged in
// the outbox.
const maxAckBacklog = 100_000

// maxRetryAfter caps how long a Retry-After header can make us wait.
const maxRetryAfter = time.Hour

// runHTTP posts batches until ctx is done.
func (u *Uplink) runHTTP(ctx context.Context) error {
	tlsc, err := u.tlsConfig()
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsc
	tr.MaxIdleConnsPerHost = 4
	client := &http.Client{Transport: tr, CheckRedirect: keepMethodRedirects}
	defer tr.CloseIdleConnections()

	f := newFeeder(u)
	// Acknowledging (an fsync in the outbox) runs beside the next request.
	ak := newAcker(u)
	ackCtx, stopAcker := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); ak.run(ackCtx) }()
	defer func() { stopAcker(); wg.Wait() }()
	p := &poster{u: u, client: client, ak: ak, bo: backoff{min: u.cfg.Backoff.Min, max: u.cfg.Backoff.Max}}
	for ctx.Err() == nil {
		ok, err := f.fill(ctx)
		if err != nil {
			u.c.errors.Add(1)
			u.log.Error("http uplink", "err", err)
			if !sleep(ctx, p.bo.next()) {
				break
			}
			continue
		}
		if !ok {
			if !u.waitData(ctx) {
				break
			}
			continue
		}
		if !p.deliver(ctx, f.next()) {
			break
		}
	}
	return nil
}

type poster struct {
	u      *Uplink
	ak     *acker
	client *http.Client
	bo     backoff
	body   []byte
	zbuf   bytes.Buffer
	zw     *gzip.Writer
}

// deliver sends batch until it is acknowledged or dead-lettered; it
// returns false only when ctx is done (the batch then stays in the outbox).
// A batch refused with a permanent 4xx is split in halves and each half
// sent again, so that only the offending records end in the dead lane.
func (p *poster) deliver(ctx context.Context, batch []item) bool {
	u := p.u
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			u.c.retries.Add(uint64(len(batch)))
		}
		status, retryAfter, err := p.post(ctx, batch)
		if ctx.Err() != nil {
			return false
		}
		switch {
		case err == nil && status >= 200 && status < 300:
			u.setOnline()
			p.bo.reset()
			p.ak.add(batch[0].rec.Lane, seqsOf(batch)...)
			if p.ak.backlog() > maxAckBacklog {
				p.ak.flush() // the outbox cannot keep up: wait for it
			}
			return true
		case err == nil && !retryable(status):
			if len(batch) > 1 {
				h := len(batch) / 2
				return p.deliver(ctx, batch[:h]) && p.deliver(ctx, batch[h:])
			}
			u.setOnline()
			recs := []buffer.Record{batch[0].rec}
			for {
				derr := u.deadLetter(ctx, batch[0].rec.Lane, recs)
				if derr == nil {
					u.setErr(fmt.Errorf("%w: HTTP status %d for record %s", ErrRejected, status, batch[0].rec.ID))
					u.log.Warn("record rejected by upstream", "status", status, "id", batch[0].rec.ID)
					return true
				}
				u.log.Error("http uplink", "err", derr)
				if !sleep(ctx, p.bo.next()) {
					return false
				}
			}
		}
		// Retry: network error, timeout, 408/425/429, 5xx, 401/403.
		u.c.errors.Add(1)
		u.setOffline()
		d := p.bo.next()
		if retryAfter > 0 {
			d = retryAfter
		}
		if err != nil {
			u.setErr(err)
			u.log.Warn("http post failed, retrying", "err", err, "in", d.Round(time.Millisecond))
		} else {
			u.setErr(fmt.Errorf("uplink: %s: post: HTTP status %d", u.cfg.Name, status))
			u.log.Warn("http post refused, retrying", "status", status, "in", d.Round(time.Millisecond))
		}
		if !sleep(ctx, d) {
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
func (p *poster) post(ctx context.Context, batch []item) (int, time.Duration, error) {
	u := p.u
	p.body = u.enc.appendPayload(p.body[:0], batch)
	body := p.body
	if u.cfg.Gzip {
		if p.zw == nil {
			p.zw = gzip.NewWriter(&p.zbuf)
		}
		p.zbuf.Reset()
		p.zw.Reset(&p.zbuf)
		p.zw.Write(body)
		p.zw.Close()
		body = p.zbuf.Bytes()
	}
	rctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, u.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, 0, fmt.Errorf("uplink: %s: %w", u.cfg.Name, err)
	}
	req.Header.Set("Content-Type", u.enc.contentType())
	req.Header.Set("User-Agent", "sensorgate")
	if u.cfg.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	for k, v := range u.cfg.Headers {
		req.Header.Set(k, v)
	}
	tok, err := u.token()
	if err != nil {
		return 0, 0, fmt.Errorf("uplink: %s: %w", u.cfg.Name, err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("X-Sensorgate-Records", strconv.Itoa(len(batch)))
	u.c.messages.Add(1)
	u.c.sent.Add(uint64(len(batch)))
	u.c.bytes.Add(uint64(len(body)))
	u.c.inflight.Add(int64(len(batch)))
	defer u.c.inflight.Add(-int64(len(batch)))
	resp, err := p.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return 0, 0, fmt.Errorf("uplink: %s: post: timeout after %s: %w", u.cfg.Name, u.cfg.Timeout, err)
		}
		return 0, 0, fmt.Errorf("uplink: %s: post: %w%s", u.cfg.Name, err, u.tlsHint(err))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, parseRetryAfter(resp.Header.Get("Retry-After"), u.now()), nil
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
