package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
)

// RenewableUpstream is a route's connection pool to its partner, started
// afresh when ORG_AUTH_CLI is renewed: pooled keep-alive connections and
// resumable TLS sessions carry the client certificate they were made with.
type RenewableUpstream struct {
	build func() *Upstream
	cur   atomic.Pointer[Upstream]
	// ownRevoked reports whether ORG_AUTH_CLI is known revoked: the
	// partner's refusals are then classified as such.
	ownRevoked func() bool
}

// NewRenewableUpstream starts a pool made by build, and a new one on each
// Renew. ownRevoked (nil: never) says whether ORG_AUTH_CLI is known
// revoked.
func NewRenewableUpstream(build func() *Upstream, ownRevoked func() bool) *RenewableUpstream {
	t := &RenewableUpstream{build: build, ownRevoked: ownRevoked}
	t.cur.Store(build())
	return t
}

// RoundTrip uses the current pool. While ORG_AUTH_CLI is known revoked,
// a partner's refusal (a TLS alert, or an HTTP 400, 403, 495 or 496 that
// is not a SOAP answer: what nginx and most front ends send for a refused
// client certificate) becomes ErrOwnCertificateRevoked, so that the SIH
// and the access log say why.
func (t *RenewableUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.cur.Load().RoundTrip(r)
	if t.ownRevoked == nil || !t.ownRevoked() {
		return resp, err
	}
	var opErr *net.OpError
	switch {
	case err != nil && errors.As(err, &opErr) && opErr.Op == "remote error":
		return nil, fmt.Errorf("%w: %v", ErrOwnCertificateRevoked, err)
	case err == nil && RefusedClientCertificate(resp):
		resp.Body.Close()
		return nil, fmt.Errorf("%w: the partner answered %s", ErrOwnCertificateRevoked, resp.Status)
	}
	return resp, err
}

// RefusedClientCertificate reports whether resp looks like a front end refusing the
// client certificate rather than the partner's service answering.
func RefusedClientCertificate(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusForbidden, 495, 496:
	default:
		return false
	}
	ct := strings.ToLower(resp.Header.Get("Content-Type"))
	return !strings.Contains(ct, "xml") && !strings.Contains(ct, "json")
}

// Renew starts a new pool; requests in flight finish on the old one,
// whose idle connections are closed now and the others as their exchange
// ends: none serves again with the old certificate.
func (t *RenewableUpstream) Renew() {
	old := t.cur.Swap(t.build())
	old.Close()
}

// CloseIdleConnections closes the current pool's idle connections.
func (t *RenewableUpstream) CloseIdleConnections() { t.cur.Load().CloseIdleConnections() }

// Close closes the current pool, its connections in use as their
// exchange ends (a reload replaced the route).
func (t *RenewableUpstream) Close() { t.cur.Load().Close() }
