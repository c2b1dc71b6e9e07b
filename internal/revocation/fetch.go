package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ocsp"
)

// crlSource is one CRL URL of an authority and what its fetches taught.
type crlSource struct {
	url        string
	delta      bool
	configured bool // from revocation.issuers: may be file://
	// Validators of the cached CRL, for conditional requests.
	etag, lastModified string
	// checkedAt is the last time the URL answered with a usable CRL (new,
	// the same, or 304 Not Modified).
	checkedAt time.Time
	// idle counts background fetches in a row past the refresh point that
	// brought nothing new (or failed); notBefore is the next one allowed.
	idle      int
	notBefore time.Time
	// seenAt is the last time a certificate in use named this URL (for a
	// URL read from certificates): past revocation.forget_after, the URL
	// is forgotten (forget.go). persistedSeen is the seenAt the cache
	// folder's index holds.
	seenAt, persistedSeen time.Time
}

// usableURLs keeps the http and https URLs a certificate points at: LDAP
// is not fetched, and a certificate never makes the proxy read a local
// file (file:// is for configured URLs only).
func usableURLs(urls []string) []string {
	var out []string
	for _, u := range urls {
		if p, err := url.Parse(u); err == nil && (p.Scheme == "http" || p.Scheme == "https") && p.Host != "" {
			out = append(out, u)
		}
	}
	return out
}

// ocspResponder is the responder to ask about cert: configured, or the
// certificate's own (http or https only).
func ocspResponder(st *issuerState, cert *x509.Certificate) string {
	if st.override != nil && st.override.OCSPURL != "" {
		return st.override.OCSPURL
	}
	if urls := usableURLs(cert.OCSPServer); len(urls) > 0 {
		return urls[0]
	}
	return ""
}

// fetchOCSP asks the responder about cert and caches a verified answer.
func (c *Checker) fetchOCSP(ctx context.Context, cert, issuer *x509.Certificate, sync bool) error {
	st := c.issuer(issuer)
	responder := ocspResponder(st, cert)
	if responder == "" {
		return ErrNoUsableURL
	}
	k, _ := keyOfSerial(cert.SerialNumber)
	c.track(st, cert, k)
	if sync {
		c.mu.RLock()
		cs := st.certs[k]
		recent := cs != nil && cs.ocsp != nil && c.o.Now().Sub(cs.ocspAt) < c.o.Config.CheckInterval
		c.mu.RUnlock()
		if recent {
			return nil
		}
	}
	err := c.fetchOnce(ctx, fmt.Sprintf("ocsp|%x|%x", issuer.RawSubjectPublicKeyInfo, k.b[32-k.n:]), sync, func(fctx context.Context) error {
		if sync {
			c.o.Metrics.RevocationSyncFetches.WithLabelValues(SourceOCSP).Inc()
		}
		req, err := ocsp.CreateRequest(cert, issuer, nil)
		if err != nil {
			return err
		}
		res, err := c.get(fctx, responder, req, c.o.Config.MaxOCSPBytes, nil, false)
		if err != nil {
			return c.fetchFailed(st, SourceOCSP, responder, err)
		}
		now := c.o.Now()
		a, err := parseOCSP(res.body, cert, issuer, now, c.o.Config.ClockSkew)
		if err != nil {
			return c.fetchFailed(st, SourceOCSP, responder, err)
		}
		c.mu.Lock()
		cs := st.certs[k]
		refused := ""
		if cs == nil {
			// The cache is full: the answer still decides this request.
			cs = &certState{cert: cert}
		}
		refused = c.storeOCSPLocked(st, cs, k, a, now)
		if refused == "" {
			cs.ocspURL, cs.lastErr = responder, ""
			if st.certs[k] == nil {
				c.transientLocked(st, k, cs)
			}
		}
		c.mu.Unlock()
		if refused != "" {
			return c.fetchFailed(st, SourceOCSP, responder, refusal(refused, a.thisUpdate, a.nextUpdate))
		}
		c.o.Metrics.RevocationFetches.WithLabelValues(SourceOCSP).Inc()
		if c.store != nil {
			c.store.saveOCSP(issuer, cert, responder, res.body, now, c.o.Logger)
		}
		return nil
	})
	if err != nil {
		c.mu.Lock()
		if cs := st.certs[k]; cs != nil {
			cs.lastErr = "ocsp: " + err.Error()
		}
		c.mu.Unlock()
	}
	return err
}

// transientLocked keeps an answer for a certificate the full cache did
// not track (the bound is soft: only certificates of chains that verified
// against the trust bundles get here); it is dropped once idle.
func (c *Checker) transientLocked(st *issuerState, k serialKey, cs *certState) {
	st.certs[k] = cs
	c.certCount++
}

// refusal explains a verified answer that was not cached.
func refusal(reason string, this, next time.Time) error {
	switch reason {
	case refusedStale:
		return fmt.Errorf("%w: answer %s (thisUpdate %s, nextUpdate %s)", ErrExpired, reason, this.UTC().Format(time.RFC3339), next.UTC().Format(time.RFC3339))
	case refusedOlder:
		return fmt.Errorf("%w (thisUpdate %s)", ErrOlderThanCached, this.UTC().Format(time.RFC3339))
	case refusedFinal:
		return ErrRevokedIsFinal
	case refusedResponderRevoked:
		return fmt.Errorf("%w: the delegated responder's certificate is revoked by its authority", ErrResponder)
	}
	return ErrDeltaBaseMismatch
}

// errClosed is a fetch asked for after Close.
var errClosed = fmt.Errorf("revocation checker closed: %w", context.Canceled)

// fetchOnce runs fetch once for all concurrent callers with the same key,
// under the checker's life and the fetch timeout; each caller waits at
// most until its own ctx ends. A request (sync) does not wait for a fetch
// that failed less than a check interval ago: it gets that failure at
// once; background refreshes try again.
func (c *Checker) fetchOnce(ctx context.Context, key string, sync bool, fetch func(context.Context) error) error {
	if sync {
		c.mu.RLock()
		f, failed := c.failures[key]
		c.mu.RUnlock()
		if failed && c.o.Now().Sub(f.at) < c.o.Config.CheckInterval {
			return f.err
		}
	}
	ch := c.sf.DoChan(key, func() (any, error) {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, errClosed
		}
		c.inflight.Add(1)
		c.mu.Unlock()
		defer c.inflight.Done()
		fctx, cancel := context.WithTimeout(c.life, c.o.Config.FetchTimeout)
		defer cancel()
		err := fetch(fctx)
		c.mu.Lock()
		if err != nil {
			c.failures[key] = failure{at: c.o.Now(), err: err}
		} else {
			delete(c.failures, key)
		}
		c.mu.Unlock()
		return nil, err
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", context.DeadlineExceeded, ctx.Err())
	}
}

// fetchCRLs fetches the CRLs (and delta CRLs) that cover cert.
func (c *Checker) fetchCRLs(ctx context.Context, cert, issuer *x509.Certificate, sync bool) error {
	st := c.issuer(issuer)
	c.learnCRLURLs(st, cert)
	c.mu.RLock()
	var bases, deltas []*crlSource
	for _, s := range st.sources {
		if s.delta {
			deltas = append(deltas, s)
		} else {
			bases = append(bases, s)
		}
	}
	c.mu.RUnlock()
	if len(bases) == 0 {
		return ErrNoUsableURL
	}
	var errs []error
	for _, s := range bases {
		if err := c.fetchCRL(ctx, st, s, sync); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range deltas {
		if err := c.fetchCRL(ctx, st, s, sync); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// answeredRecently reports whether s gave a usable CRL less than a check
// interval ago.
func (c *Checker) answeredRecently(s *crlSource) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return !s.checkedAt.IsZero() && c.o.Now().Sub(s.checkedAt) < c.o.Config.CheckInterval
}

// learnCRLURLs records the CRL URLs cert points at, unless the
// configuration replaces them.
func (c *Checker) learnCRLURLs(st *issuerState, cert *x509.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.o.Now()
	if st.override == nil || len(st.override.CRLURLs) == 0 {
		for _, u := range usableURLs(cert.CRLDistributionPoints) {
			if s := c.addSourceLocked(st, u, false, false); s != nil {
				s.seenAt = later(s.seenAt, now)
			}
		}
	}
	if st.override == nil || len(st.override.DeltaCRLURLs) == 0 {
		for _, u := range usableURLs(FreshestCRLURLs(cert)) {
			if s := c.addSourceLocked(st, u, true, false); s != nil {
				s.seenAt = later(s.seenAt, now)
			}
		}
	}
}

// learnableLocked reports whether u may become a CRL source of st without
// being configured: an http(s) URL, where the configuration does not
// replace the certificates' own URLs of that kind; c.mu held.
func (c *Checker) learnableLocked(st *issuerState, u string, delta bool) bool {
	if len(usableURLs([]string{u})) == 0 {
		return false
	}
	if st.override == nil {
		return true
	}
	if delta {
		return len(st.override.DeltaCRLURLs) == 0
	}
	return len(st.override.CRLURLs) == 0
}

// fetchCRL fetches one CRL of st's authority (conditionally, when one is
// cached) and caches it when it verifies and is newer.
func (c *Checker) fetchCRL(ctx context.Context, st *issuerState, s *crlSource, sync bool) error {
	if sync && c.answeredRecently(s) {
		// A request does not fetch again what answered less than a check
		// interval ago: the status is unknown for another reason.
		return nil
	}
	needBase := false
	err := c.fetchOnce(ctx, "crl|"+s.url, sync, func(fctx context.Context) error {
		if sync {
			c.o.Metrics.RevocationSyncFetches.WithLabelValues(SourceCRL).Inc()
		}
		c.mu.RLock()
		cond := http.Header{}
		if cached := st.crls[s.url]; cached != nil || st.deltas[s.url] != nil {
			if s.etag != "" {
				cond.Set("If-None-Match", s.etag)
			}
			if s.lastModified != "" {
				cond.Set("If-Modified-Since", s.lastModified)
			}
		}
		c.mu.RUnlock()
		res, err := c.get(fctx, s.url, nil, c.o.Config.MaxCRLBytes, cond, s.configured)
		if err != nil {
			return c.fetchFailed(st, SourceCRL, s.url, err)
		}
		now := c.o.Now()
		if res.notModified {
			c.mu.Lock()
			l := st.crls[s.url]
			if s.delta {
				l = st.deltas[s.url]
			}
			stale := l == nil || now.After(l.nextUpdate)
			if !stale {
				s.checkedAt = now
			}
			c.mu.Unlock()
			if stale {
				// The server has nothing newer than a CRL that is stale
				// (or was never cached): that is a failure.
				return c.fetchFailed(st, SourceCRL, s.url, fmt.Errorf("%w: 304 Not Modified for a CRL past its nextUpdate", ErrExpired))
			}
			c.o.Metrics.RevocationNotModified.WithLabelValues(SourceCRL).Inc()
			if c.store != nil {
				c.store.confirmCRL(s.url, now, c.o.Config.MaxStatusAge/4, c.o.Logger)
			}
			return nil
		}
		l, err := parseCRL(res.body, st.cert, now, c.o.Config.ClockSkew)
		if err != nil {
			return c.fetchFailed(st, SourceCRL, s.url, err)
		}
		l.url = s.url
		if isDelta := l.baseNumber != nil; isDelta != s.delta {
			if isDelta {
				return c.fetchFailed(st, SourceCRL, s.url, errors.New("a delta CRL was published where a complete CRL is expected"))
			}
			return c.fetchFailed(st, SourceCRL, s.url, errors.New("a complete CRL was published where a delta CRL is expected"))
		}
		c.mu.Lock()
		if st.sources[s.url] != s {
			// Forgotten while it was fetched (forget.go): not cached again.
			c.mu.Unlock()
			return nil
		}
		refused, _ := c.storeCRLLocked(st, s, l, now)
		seen := s.seenAt
		if s.configured {
			seen = time.Time{}
		}
		if refused == "" {
			s.etag, s.lastModified = res.etag, res.lastModified
			if s.delta {
				needBase = deltaNeedsBaseLocked(st, l)
			}
			c.crlMetricsLocked()
		}
		c.mu.Unlock()
		if refused != "" {
			return c.fetchFailed(st, SourceCRL, s.url, refusal(refused, l.thisUpdate, l.nextUpdate))
		}
		c.o.Metrics.RevocationNextUpdate.WithLabelValues(SourceCRL, s.url).Set(float64(l.nextUpdate.Unix()))
		c.o.Metrics.RevocationThisUpdate.WithLabelValues(SourceCRL, s.url).Set(float64(l.thisUpdate.Unix()))
		c.o.Metrics.RevocationFetches.WithLabelValues(SourceCRL).Inc()
		if c.store != nil {
			c.store.saveCRL(st.cert, s.url, res.body, now, seen, c.o.Logger)
		}
		return nil
	})
	if err == nil && needBase {
		// The delta was made on top of a complete CRL newer than every
		// cached one: fetch the base it needs, now.
		c.fetchFailed(st, SourceCRL, s.url, ErrDeltaBaseMismatch)
		c.mu.RLock()
		var bases []*crlSource
		for _, b := range st.sources {
			if !b.delta {
				bases = append(bases, b)
			}
		}
		c.mu.RUnlock()
		for _, b := range bases {
			_ = c.fetchCRL(ctx, st, b, sync)
		}
	}
	return err
}

// crlMetricsLocked exports the number of cached CRLs; c.mu held.
func (c *Checker) crlMetricsLocked() {
	n := 0
	for _, is := range c.issuers {
		for _, s := range is {
			n += len(s.crls) + len(s.deltas)
		}
	}
	c.o.Metrics.RevocationCacheEntries.WithLabelValues(SourceCRL).Set(float64(n))
}

func (c *Checker) fetchFailed(st *issuerState, source, u string, err error) error {
	reason := "invalid"
	var ne interface{ Timeout() bool }
	var pe proxyError
	switch {
	case errors.As(err, &pe):
		reason = pe.ProxyReason() // proxy_auth, proxy_timeout...
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		reason = "timeout"
	case errors.Is(err, ErrTooLarge):
		reason = "too_large"
	case errors.Is(err, errHTTPStatus), errors.Is(err, errUnreachable):
		reason = "unavailable"
	case errors.Is(err, ErrDeltaBaseMismatch):
		reason = refusedDeltaBase
	case errors.Is(err, ErrExpired):
		reason = refusedStale
	case errors.Is(err, ErrOlderThanCached):
		reason = refusedOlder
	case errors.Is(err, ErrRevokedIsFinal):
		reason = refusedFinal
	}
	c.o.Metrics.RevocationFetchErrors.WithLabelValues(source, reason, st.label, c.urlLabel(st, source, u)).Inc()
	c.o.Logger.Warn("revocation fetch failed", zap.String("source", source), zap.String("issuer", st.label), zap.String("url", u),
		zap.String("reason", reason), zap.Error(err))
	return fmt.Errorf("%s: %w", u, err)
}

// proxyError is a failure of the outbound proxy (egress.Error): its
// reason labels the fetch error.
type proxyError interface {
	error
	ProxyReason() string
}

var (
	errHTTPStatus  = errors.New("unexpected HTTP status")
	errUnreachable = errors.New("unreachable")
)

type fetched struct {
	body               []byte
	notModified        bool
	etag, lastModified string
}

// get fetches u (POSTing body when set, with the conditional headers
// cond), reading at most limit bytes, within ctx. A file URL is read only
// when fileOK (a URL of the configuration).
func (c *Checker) get(ctx context.Context, u string, body []byte, limit int64, cond http.Header, fileOK bool) (*fetched, error) {
	if path, isFile, err := localPath(u); isFile {
		if err == nil && !fileOK {
			err = ErrNoUsableURL
		}
		if err != nil {
			return nil, err
		}
		b, err := readFile(ctx, path, limit)
		if err != nil {
			return nil, err
		}
		return &fetched{body: b}, nil
	}
	method, rd := http.MethodGet, io.Reader(nil)
	if body != nil {
		method, rd = http.MethodPost, bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	for k, v := range cond {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/ocsp-request")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		var pe proxyError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%w: %w", errUnreachable, err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w after %s", context.DeadlineExceeded, c.o.Config.FetchTimeout)
		}
		return nil, fmt.Errorf("%w: %v", errUnreachable, err)
	}
	defer resp.Body.Close()
	res := &fetched{etag: resp.Header.Get("ETag"), lastModified: resp.Header.Get("Last-Modified")}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		if len(cond) > 0 {
			res.notModified = true
			return res, nil
		}
		fallthrough
	default:
		return nil, fmt.Errorf("%w %d", errHTTPStatus, resp.StatusCode)
	}
	if res.body, err = readLimited(resp.Body, limit); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w after %s", context.DeadlineExceeded, c.o.Config.FetchTimeout)
		}
		return nil, err
	}
	return res, nil
}

// localPath reads a file URL (RFC 8089: file:///p, file:/p and
// file://localhost/p name /p; the scheme in any case): isFile reports a
// file URL, err one that names no local absolute path.
func localPath(raw string) (path string, isFile bool, err error) {
	u, perr := url.Parse(raw)
	if perr != nil || !strings.EqualFold(u.Scheme, "file") {
		return "", false, nil
	}
	if (u.Host != "" && !strings.EqualFold(u.Host, "localhost")) || !strings.HasPrefix(u.Path, "/") {
		return "", true, fmt.Errorf("%s: a file URL must name an absolute local path (file:///path)", raw)
	}
	return u.Path, true, nil
}

// readFile reads a configured local CRL within ctx. Only regular files are
// read: a FIFO or a device would block (opened without blocking, then
// checked), and a file system that hangs only holds the reading goroutine
// until it answers, never the caller.
func readFile(ctx context.Context, path string, limit int64) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			done <- result{err: err}
			return
		}
		if !fi.Mode().IsRegular() {
			done <- result{err: fmt.Errorf("%s: %w", path, ErrNotRegularFile)}
			return
		}
		b, err := readLimited(f, limit)
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: reading %s", context.DeadlineExceeded, path)
	}
}

func readLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w (%d bytes)", ErrTooLarge, limit)
	}
	return b, nil
}

// OCSPResponder is the responder asked about cert, issued by issuer: the
// one configured for the issuer, or the certificate's own (http or https
// only); "" when there is none. Only for certificates of verified chains
// (it records the issuer).
func (c *Checker) OCSPResponder(cert, issuer *x509.Certificate) string {
	return ocspResponder(c.issuer(issuer), cert)
}
