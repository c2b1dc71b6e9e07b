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

	"go.uber.org/zap"
	"golang.org/x/crypto/ocsp"
)

// usableURLs keeps the http, https and file URLs (LDAP is not fetched).
func usableURLs(urls []string) []string {
	var out []string
	for _, u := range urls {
		if p, err := url.Parse(u); err == nil && (p.Scheme == "http" || p.Scheme == "https" || p.Scheme == "file") {
			out = append(out, u)
		}
	}
	return out
}

// fetchOCSP asks the responder about cert and caches a verified answer.
func (c *Checker) fetchOCSP(ctx context.Context, cert, issuer *x509.Certificate, sync bool) error {
	st := c.issuer(issuer)
	var responder string
	if st.override != nil && st.override.OCSPURL != "" {
		responder = st.override.OCSPURL
	} else if urls := usableURLs(cert.OCSPServer); len(urls) > 0 && !strings.HasPrefix(urls[0], "file:") {
		responder = urls[0]
	}
	if responder == "" {
		return ErrNoUsableURL
	}
	k, _ := keyOfSerial(cert.SerialNumber)
	return c.fetchOnce(fmt.Sprintf("ocsp|%x|%x", issuer.RawSubjectPublicKeyInfo, k.b[32-k.n:]), sync, func() error {
		if sync {
			c.o.Metrics.RevocationSyncFetches.WithLabelValues(SourceOCSP).Inc()
		}
		req, err := ocsp.CreateRequest(cert, issuer, nil)
		if err != nil {
			return err
		}
		der, err := c.get(ctx, responder, req, c.o.Config.MaxOCSPBytes)
		if err != nil {
			return c.fetchFailed(SourceOCSP, responder, err)
		}
		a, err := parseOCSP(der, cert, issuer, c.o.Now(), c.o.Config.ClockSkew)
		if err != nil {
			return c.fetchFailed(SourceOCSP, responder, err)
		}
		c.storeOCSP(st, k, &ocspEntry{answer: a, cert: cert, url: responder})
		c.o.Metrics.RevocationFetches.WithLabelValues(SourceOCSP).Inc()
		if c.store != nil {
			c.store.saveOCSP(issuer, cert, responder, der, c.o.Logger)
		}
		return nil
	})
}

// fetchOnce runs fetch once for all concurrent callers with the same key.
// A request (sync) does not wait for a fetch that failed less than a check
// interval ago: it gets that failure at once; background refreshes retry.
func (c *Checker) fetchOnce(key string, sync bool, fetch func() error) error {
	if sync {
		c.mu.RLock()
		f, failed := c.failures[key]
		c.mu.RUnlock()
		if failed && c.o.Now().Sub(f.at) < c.o.Config.CheckInterval {
			return f.err
		}
	}
	_, err, _ := c.sf.Do(key, func() (any, error) {
		err := fetch()
		c.mu.Lock()
		if err != nil {
			c.failures[key] = failure{at: c.o.Now(), err: err}
		} else {
			delete(c.failures, key)
		}
		c.mu.Unlock()
		return nil, err
	})
	return err
}

func (c *Checker) storeOCSP(st *issuerState, k serialKey, e *ocspEntry) {
	e.lastUsed.Store(c.o.Now().Unix())
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, exists := st.ocsp[k]; !exists {
		if c.ocspCount >= maxOCSPEntries {
			return
		}
		c.ocspCount++
	}
	st.ocsp[k] = e
	c.o.Metrics.RevocationCacheEntries.WithLabelValues(SourceOCSP).Set(float64(c.ocspCount))
}

// fetchCRLs fetches the CRLs (and delta CRLs) that cover cert.
func (c *Checker) fetchCRLs(ctx context.Context, cert, issuer *x509.Certificate, sync bool) error {
	st := c.issuer(issuer)
	c.mu.Lock()
	if st.override == nil || len(st.override.CRLURLs) == 0 {
		for _, u := range usableURLs(cert.CRLDistributionPoints) {
			st.crlURLs[u] = true
		}
	}
	if st.override == nil || len(st.override.DeltaCRLURLs) == 0 {
		for _, u := range usableURLs(FreshestCRLURLs(cert)) {
			st.deltaURLs[u] = true
		}
	}
	bases, deltas := keys(st.crlURLs), keys(st.deltaURLs)
	c.mu.Unlock()
	if len(bases) == 0 {
		return ErrNoUsableURL
	}
	var errs []error
	for _, u := range bases {
		if err := c.fetchCRL(ctx, st, u, false, sync); err != nil {
			errs = append(errs, err)
		}
	}
	for _, u := range deltas {
		if err := c.fetchCRL(ctx, st, u, true, sync); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// fetchCRL fetches one CRL of st's authority and caches it when it verifies.
func (c *Checker) fetchCRL(ctx context.Context, st *issuerState, u string, delta, sync bool) error {
	return c.fetchOnce("crl|"+u, sync, func() error {
		if sync {
			c.o.Metrics.RevocationSyncFetches.WithLabelValues(SourceCRL).Inc()
		}
		der, err := c.get(ctx, u, nil, c.o.Config.MaxCRLBytes)
		if err != nil {
			return c.fetchFailed(SourceCRL, u, err)
		}
		if err := c.addCRL(st, u, der, delta); err != nil {
			return c.fetchFailed(SourceCRL, u, err)
		}
		c.o.Metrics.RevocationFetches.WithLabelValues(SourceCRL).Inc()
		if c.store != nil {
			c.store.saveCRL(st.cert, u, der, c.o.Logger)
		}
		return nil
	})
}

// addCRL verifies der as a CRL of st's authority and caches it.
func (c *Checker) addCRL(st *issuerState, u string, der []byte, wantDelta bool) error {
	l, err := parseCRL(der, st.cert, c.o.Now(), c.o.Config.ClockSkew)
	if err != nil {
		return err
	}
	l.url = u
	isDelta := l.baseNumber != nil
	if isDelta != wantDelta {
		if isDelta {
			return errors.New("a delta CRL was published where a complete CRL is expected")
		}
		return errors.New("a complete CRL was published where a delta CRL is expected")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	target := st.crls
	if isDelta {
		target = st.deltas
		if !c.deltaMatchesLocked(st, l) {
			return ErrDeltaBaseMismatch
		}
	}
	if old := target[u]; old != nil && old.number.Cmp(l.number) > 0 {
		return fmt.Errorf("CRL number %s is older than the cached %s", l.number, old.number)
	}
	target[u] = l
	c.o.Metrics.RevocationNextUpdate.WithLabelValues(SourceCRL, u).Set(float64(l.nextUpdate.Unix()))
	c.o.Metrics.RevocationThisUpdate.WithLabelValues(SourceCRL, u).Set(float64(l.thisUpdate.Unix()))
	n := 0
	for _, is := range c.issuers {
		for _, s := range is {
			n += len(s.crls) + len(s.deltas)
		}
	}
	c.o.Metrics.RevocationCacheEntries.WithLabelValues(SourceCRL).Set(float64(n))
	return nil
}

func (c *Checker) deltaMatchesLocked(st *issuerState, d *crl) bool {
	for _, base := range st.crls {
		if d.appliesTo(base) {
			return true
		}
	}
	return false
}

func (c *Checker) fetchFailed(source, u string, err error) error {
	reason := "invalid"
	var ne interface{ Timeout() bool }
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		reason = "timeout"
	case errors.Is(err, ErrTooLarge):
		reason = "too_large"
	case errors.Is(err, errHTTPStatus), errors.Is(err, errUnreachable):
		reason = "unavailable"
	case errors.Is(err, ErrDeltaBaseMismatch):
		reason = "delta_base_mismatch"
	}
	c.o.Metrics.RevocationFetchErrors.WithLabelValues(source, reason).Inc()
	c.o.Logger.Warn("revocation fetch failed", zap.String("source", source), zap.String("url", u), zap.String("reason", reason), zap.Error(err))
	return fmt.Errorf("%s: %w", u, err)
}

var (
	errHTTPStatus  = errors.New("unexpected HTTP status")
	errUnreachable = errors.New("unreachable")
)

// get fetches u (POSTing body when set), reading at most limit bytes.
func (c *Checker) get(ctx context.Context, u string, body []byte, limit int64) ([]byte, error) {
	if path, ok := strings.CutPrefix(u, "file://"); ok {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readLimited(f, limit)
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.Config.FetchTimeout)
	defer cancel()
	method, rd := http.MethodGet, io.Reader(nil)
	if body != nil {
		method, rd = http.MethodPost, bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/ocsp-request")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w after %s", context.DeadlineExceeded, c.o.Config.FetchTimeout)
		}
		return nil, fmt.Errorf("%w: %v", errUnreachable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w %d", errHTTPStatus, resp.StatusCode)
	}
	return readLimited(resp.Body, limit)
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

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
