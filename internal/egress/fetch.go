package egress

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"time"
)

// FetchTransport returns the transport of revocation fetches (CRLs, OCSP)
// through p: http:// URLs are sent to the proxy in absolute form (GET
// http://host/path), as forward proxies expect (many refuse CONNECT to
// port 80), https:// URLs go through a CONNECT tunnel, and the hosts of
// no_proxy directly. With a nil p everything goes directly: the proxy
// environment variables are not read. timeout bounds each connection
// (and, through the proxy, its answer to CONNECT); observe, when set, is
// told each outcome through the proxy ("ok" or a reason).
func FetchTransport(p *Proxy, timeout time.Duration, observe func(string)) http.RoundTripper {
	direct := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	base := func() *http.Transport {
		return &http.Transport{
			DialContext:         direct.DialContext,
			MaxIdleConns:        16,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: timeout,
		}
	}
	plain := base()
	if p != nil {
		plain.Proxy = func(r *http.Request) (*url.URL, error) {
			if p.UsesURL(r.URL) {
				return p.url, nil
			}
			return nil, nil
		}
	}
	tunneled := base()
	tunneled.DialContext = NewDialer(p, timeout, observe).DialContext
	return &fetchTransport{p: p, plain: plain, tunneled: tunneled, observe: observe}
}

type fetchTransport struct {
	p               *Proxy
	plain, tunneled *http.Transport
	observe         func(string)
}

func (t *fetchTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "http" || !t.p.UsesURL(r.URL) {
		if r.URL.Scheme == "http" {
			return t.plain.RoundTrip(r)
		}
		return t.tunneled.RoundTrip(r)
	}
	// Through the proxy in absolute form: the credentials go to the proxy
	// only (a request that goes directly never carries them).
	if t.p.cred != nil {
		r = r.Clone(r.Context())
		r.Header.Set("Proxy-Authorization", t.p.cred.header)
	}
	request := r.Method + " " + r.URL.Redacted()
	resp, err := t.plain.RoundTrip(r)
	var oe *net.OpError
	switch {
	case err != nil && errors.As(err, &oe) && oe.Op == "proxyconnect":
		reason := ReasonUnreachable
		var ne net.Error
		if errors.As(oe.Err, &ne) && ne.Timeout() {
			reason = ReasonTimeout
		}
		err = &Error{Reason: reason, Proxy: t.p.addr, Request: request, Err: oe.Err}
	case err == nil && (resp.StatusCode == http.StatusProxyAuthRequired ||
		resp.StatusCode == http.StatusUnauthorized && t.p.cred != nil):
		// 401 to a request that carried our credentials: tinyproxy's
		// answer to wrong ones (as to CONNECT); CRL and OCSP servers
		// ask for none.
		resp.Body.Close()
		err = &Error{Reason: ReasonAuth, Proxy: t.p.addr, Request: request, Status: printable(resp.Status)}
		resp = nil
	}
	if t.observe != nil {
		var e *Error
		switch {
		case err == nil:
			t.observe("ok")
		case errors.As(err, &e):
			t.observe(e.Reason)
		default:
			t.observe("failed") // after the proxy took the request
		}
	}
	return resp, err
}

// CloseIdleConnections closes the idle connections of both transports.
func (t *fetchTransport) CloseIdleConnections() {
	t.plain.CloseIdleConnections()
	t.tunneled.CloseIdleConnections()
}
