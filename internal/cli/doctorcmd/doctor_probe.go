package doctorcmd

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/boundedfile"
	"github.com/roc-proxy/roc-proxy/internal/egress"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/proxy"
	"github.com/roc-proxy/roc-proxy/internal/revocation"
	"github.com/roc-proxy/roc-proxy/internal/trust"
	"github.com/roc-proxy/roc-proxy/internal/version"
)

// partnerTarget is one partner of a route to try.
type partnerTarget struct {
	route      *config.Route
	hostport   string
	serverName string
	reqPath    string
	proxy      *egress.Proxy
	// skip says why the partner cannot be tried (a wildcard).
	skip string
}

// targets are the partners of route i: its upstream, or a dynamic
// route's exact names on each allowed port (and those named with
// --partner); a wildcard is listed, untried.
func (d *doctor) targets(i int, r *config.Route, extra []string) []partnerTarget {
	px := d.routeProxies[i]
	if r.Dynamic == nil {
		u, err := url.Parse(r.Upstream)
		if err != nil {
			return nil // config.Validate refuses it
		}
		sn := r.ServerName
		if sn == "" {
			sn = u.Hostname()
		}
		p := u.EscapedPath()
		if p == "" {
			p = "/"
		}
		return []partnerTarget{{route: r, hostport: urlHostPort(u), serverName: sn, reqPath: p, proxy: px}}
	}
	var out []partnerTarget
	for _, h := range r.Dynamic.Hosts {
		if strings.HasPrefix(h, "*.") {
			out = append(out, partnerTarget{route: r, hostport: h, skip: "name one: --partner " + r.Name + "=HOST"})
			continue
		}
		for _, port := range r.Dynamic.Ports {
			out = append(out, partnerTarget{route: r, hostport: net.JoinHostPort(h, strconv.Itoa(port)), serverName: h, reqPath: "/", proxy: px})
		}
	}
	for _, hp := range extra {
		h, _, _ := net.SplitHostPort(hp)
		out = append(out, partnerTarget{route: r, hostport: hp, serverName: h, reqPath: "/", proxy: px})
	}
	return out
}

// handshakeState is what the handshake taught.
type handshakeState struct {
	asked      bool // the partner asked for a client certificate
	chainErr   error
	chain      []*x509.Certificate
	revChecked bool
	revErr     error
}

// checkPartner tries one partner as the route's transport would, step by
// step, and stops at the first step that cannot go on.
func (d *doctor) checkPartner(ctx context.Context, t partnerTarget) Check {
	c := Check{Kind: "partner", Name: t.route.Name, Target: t.hostport, ServerName: t.serverName, Via: "direct"}
	if t.skip != "" {
		c.Via = ""
		c.add("dns", stSkip, t.skip, nil)
		c.Result = stSkip
		return c
	}
	d.partnerSteps(ctx, t, &c)
	c.finish()
	return c
}

func (d *doctor) partnerSteps(ctx context.Context, t partnerTarget, c *Check) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	host, port, _ := net.SplitHostPort(t.hostport)
	proxied := t.proxy.Uses("https", t.hostport)
	if proxied {
		c.Via = t.proxy.String()
	}
	addrs, ok := d.resolve(ctx, c, host, proxied, t.proxy)
	if !ok {
		c.skipRest("connect", "tls", "chain", "revocation", "client_certificate")
		return
	}
	conn, err := d.connect(ctx, t.hostport, port, addrs, proxied, t.proxy, t.route.Timeouts.Connect)
	if err != nil {
		c.add("connect", stFail, connectSummary(err), err)
		c.skipRest("tls", "chain", "revocation", "client_certificate")
		return
	}
	defer conn.Close()
	if proxied {
		c.add("connect", stOK, "tunnel through the proxy", nil)
	} else {
		c.add("connect", stOK, conn.RemoteAddr().String(), nil)
	}

	verifier, err := d.mat.Store.NewVerifier(trust.VerifierOptions{Bundles: t.route.Trust, ServerName: t.serverName, Pins: t.route.SPKIPins.SHA256s(), Now: d.now})
	if err != nil {
		c.add("tls", stFail, "no verifier", err)
		return
	}
	hctx, hcancel := context.WithTimeout(ctx, t.route.Timeouts.TLSHandshake)
	defer hcancel()
	policy := t.route.Revocation.Policy
	st := &handshakeState{}
	cfg := mtls.ClientConfig(mtls.ClientOptions{
		ServerName: t.serverName,
		VerifyConnection: func(cs tls.ConnectionState) error {
			chains, err := verifier.Verify(cs.PeerCertificates)
			if err != nil {
				st.chainErr = err
				return err
			}
			st.chain = chains[0]
			// The status is fetched live, whatever the route's policy,
			// and a partner the route would refuse is not spoken to.
			st.revErr = d.checker.Check(hctx, st.chain, revocation.Policy{Hard: true, Sources: t.route.Revocation.Sources.Names(), Route: t.route.Name})
			st.revChecked = true
			if status, _, _ := revocationStep(st.revErr, policy); status == stFail {
				return st.revErr
			}
			return nil
		},
		ClientCertificate: func() *tls.Certificate { st.asked = true; return &d.mat.Auth.Certificate },
		Now:               d.now,
	})
	cfg.ClientSessionCache = nil // every run is a full handshake
	tc := tls.Client(conn, cfg)
	err = tc.HandshakeContext(hctx)
	if st.chain != nil {
		d.noteURLs(st.chain)
	}
	var alert string
	// In TLS 1.2 a partner refusing our certificate ends the handshake
	// with an alert after it (in TLS 1.3, after the handshake).
	refusedAfterCert := err != nil && st.chain != nil && st.asked && isAlert(err, &alert)
	switch {
	case err == nil:
		c.add("tls", stOK, tls.VersionName(tc.ConnectionState().Version), nil)
	case refusedAfterCert:
		c.add("tls", stOK, "ended after our certificate", nil)
	case st.chainErr != nil || st.revChecked:
		c.add("tls", stOK, "certificate received", nil)
	default:
		c.add("tls", stFail, tlsSummary(err), err)
		c.skipRest("chain", "revocation", "client_certificate")
		return
	}
	if st.chainErr != nil {
		reason := "refused"
		var ve *trust.VerifyError
		if errors.As(st.chainErr, &ve) {
			reason = string(ve.Reason)
		}
		c.add("chain", stFail, reason, st.chainErr)
		c.skipRest("revocation", "client_certificate")
		return
	}
	if st.chain == nil {
		c.add("chain", stFail, "not verified", err)
		c.skipRest("revocation", "client_certificate")
		return
	}
	c.add("chain", stOK, "ok", nil)
	status, summary, detail := revocationStep(st.revErr, policy)
	c.add("revocation", status, summary, detail)
	d.askEachSource(ctx, st.chain) // every URL of the partner's chain
	if status == stFail {
		c.skipRest("client_certificate")
		return
	}
	switch {
	case refusedAfterCert:
		c.add("client_certificate", stFail, "refused: alert "+alert, err)
		return
	case err != nil:
		c.add("client_certificate", stFail, "handshake ended: "+tlsSummary(err), err)
		return
	}
	c.add(d.probeClientCertificate(ctx, tc, t, st))
	return
}

// probeClientCertificate sends a harmless GET of the route's path on the
// verified connection: a TLS alert (TLS 1.3 refuses the client certificate
// after the handshake), or an HTTP 400/403/495/496 that is not XML or
// JSON, means the partner refused the establishment's certificate.
func (d *doctor) probeClientCertificate(ctx context.Context, tc *tls.Conn, t partnerTarget, st *handshakeState) (string, string, string, error) {
	deadline := time.Now().Add(t.route.Timeouts.ResponseHeader)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	tc.SetDeadline(deadline)
	host := t.serverName
	if _, port, _ := net.SplitHostPort(t.hostport); port != "443" {
		host = net.JoinHostPort(host, port)
	}
	_, err := io.WriteString(tc, "GET "+t.reqPath+" HTTP/1.1\r\nHost: "+host+"\r\nUser-Agent: roc-proxy-doctor/"+version.Release()+"\r\nAccept: */*\r\nConnection: close\r\n\r\n")
	var resp *http.Response
	if err == nil {
		// The answer's head is read within 64 KiB: a partner streaming
		// headers does not fill the memory.
		resp, err = http.ReadResponse(bufio.NewReader(boundedfile.CapReader(tc, 64<<10, errHeadTooLong)), &http.Request{Method: http.MethodGet})
	}
	var alert string
	var ne net.Error
	switch {
	case err != nil && isAlert(err, &alert):
		return "client_certificate", stFail, "refused: alert " + alert, err
	case err != nil && errors.As(err, &ne) && ne.Timeout():
		return "client_certificate", stWarn, "no answer to GET in time", err
	case errors.Is(err, errHeadTooLong):
		return "client_certificate", stFail, "malformed answer", err
	case err != nil:
		return "client_certificate", stFail, "closed without answering", err
	}
	resp.Body.Close()
	code := fmt.Sprintf("HTTP %d", resp.StatusCode)
	switch {
	case proxy.RefusedClientCertificate(resp):
		return "client_certificate", stFail, "refused: " + code, fmt.Errorf("the partner answered %s (%s) to GET %s", resp.Status, resp.Header.Get("Content-Type"), t.reqPath)
	case !st.asked:
		return "client_certificate", stWarn, "not asked for (" + code + ")", errors.New("the partner did not ask for a client certificate: it does not authenticate the establishment")
	}
	return "client_certificate", stOK, "accepted (" + code + ")", nil
}

var errHeadTooLong = errors.New("the answer's status line and headers exceed 64 KiB")

// resolve is the DNS step: the partner's name, or, through the proxy,
// the proxy's own (the proxy resolves the partner).
func (d *doctor) resolve(ctx context.Context, c *Check, host string, proxied bool, px *egress.Proxy) ([]string, bool) {
	if proxied {
		ph, _, _ := net.SplitHostPort(px.Addr())
		if net.ParseIP(ph) == nil {
			if _, err := d.lookup(ctx, ph); err != nil {
				c.add("dns", stFail, "proxy: "+dnsSummary(err), err)
				return nil, false
			}
		}
		c.add("dns", stOK, "by the proxy", nil)
		return nil, true
	}
	if net.ParseIP(host) != nil {
		c.add("dns", stOK, "IP address", nil)
		return []string{host}, true
	}
	addrs, err := d.lookup(ctx, host)
	if err != nil {
		c.add("dns", stFail, dnsSummary(err), err)
		return nil, false
	}
	summary := addrs[0]
	if len(addrs) > 1 {
		summary += fmt.Sprintf(" (+%d)", len(addrs)-1)
	}
	c.add("dns", stOK, summary, nil)
	return addrs, true
}

// connect is the TCP step: to the first address that answers, or a
// tunnel through the proxy, within the route's connect timeout.
func (d *doctor) connect(ctx context.Context, hostport, port string, addrs []string, proxied bool, px *egress.Proxy, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if proxied {
		return egress.NewDialer(px, timeout, nil).DialContext(ctx, "tcp", hostport)
	}
	var err error
	for _, a := range addrs {
		var conn net.Conn
		if conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(a, port)); err == nil {
			return conn, nil
		}
	}
	return nil, err
}

func dnsSummary(err error) string {
	var de *net.DNSError
	switch {
	case errors.As(err, &de) && de.IsNotFound:
		return "no such host"
	case errors.As(err, &de) && de.IsTimeout:
		return "timeout"
	}
	return "failed"
}

func connectSummary(err error) string {
	var pe *egress.Error
	var ne net.Error
	switch {
	case errors.As(err, &pe):
		return pe.Reason
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	}
	return "failed"
}

func tlsSummary(err error) string {
	var rh tls.RecordHeaderError
	var ne net.Error
	var alert string
	switch {
	case errors.As(err, &rh):
		return "not TLS"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case isAlert(err, &alert):
		return "alert " + alert
	case errors.Is(err, io.EOF):
		return "closed"
	}
	var pe *egress.Error
	if errors.As(err, &pe) {
		return pe.Reason
	}
	return "failed"
}

// isAlert reports whether err is a TLS alert from the peer, and which.
func isAlert(err error, alert *string) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		*alert = strings.TrimPrefix(oe.Err.Error(), "tls: ")
		return true
	}
	return false
}

// revocationURL is a revocation URL met: configured, or in a certificate.
type revocationURL struct{ url, kind string }

func (d *doctor) noteURL(u, kind string) {
	if !d.urlsSeen[u] {
		d.urlsSeen[u] = true
		d.urls = append(d.urls, revocationURL{u, kind})
	}
}

// noteURLs records the revocation URLs of certificates (LDAP ones too:
// they are listed as not fetched).
func (d *doctor) noteURLs(certs []*x509.Certificate) {
	for _, c := range certs {
		for _, u := range c.CRLDistributionPoints {
			d.noteURL(u, "crl")
		}
		for _, u := range revocation.FreshestCRLURLs(c) {
			d.noteURL(u, "delta_crl")
		}
		for _, u := range c.OCSPServer {
			d.noteURL(u, "ocsp")
		}
	}
}

func (d *doctor) revocationURLs() []revocationURL { return d.urls }

// checkURL tries one revocation URL: DNS and the connection (through the
// proxy where it applies), and what the revocation engine got from it.
func (d *doctor) checkURL(ctx context.Context, ru revocationURL) Check {
	c := Check{Kind: "revocation_url", Name: ru.kind, Target: ru.url, Via: "direct"}
	d.urlSteps(ctx, ru, &c)
	c.finish()
	return c
}

func (d *doctor) urlSteps(ctx context.Context, ru revocationURL, c *Check) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	u, err := url.Parse(ru.url)
	switch {
	case err != nil:
		c.add("fetch", stFail, "not a URL", err)
		return
	case u.Scheme == "ldap" || u.Scheme == "ldaps":
		c.add("fetch", stSkip, "LDAP: not fetched", errors.New("roc-proxy does not fetch LDAP: give an HTTP or file:// mirror in revocation.issuers"))
		return
	case u.Scheme == "file":
		c.Via = "-"
		c.add("dns", stSkip, "local file", nil)
		c.add("connect", stSkip, "local file", nil)
	case u.Scheme == "http" || u.Scheme == "https":
		proxied := d.fetch.UsesURL(u)
		if proxied {
			c.Via = d.fetch.String()
		}
		addrs, ok := d.resolve(ctx, c, u.Hostname(), proxied, d.fetch)
		if !ok {
			c.skipRest("connect", "fetch")
			return
		}
		timeout := d.cfg.Revocation.FetchTimeout
		var conn net.Conn
		if proxied && u.Scheme == "http" {
			// Sent in absolute form: the connection is to the proxy.
			conn, err = (&net.Dialer{Timeout: timeout}).DialContext(ctx, "tcp", d.fetch.Addr())
		} else {
			_, port, _ := net.SplitHostPort(urlHostPort(u))
			conn, err = d.connect(ctx, urlHostPort(u), port, addrs, proxied, d.fetch, timeout)
		}
		if err != nil {
			c.add("connect", stFail, connectSummary(err), err)
			c.skipRest("fetch")
			return
		}
		conn.Close()
		c.add("connect", stOK, "ok", nil)
	default:
		c.add("fetch", stSkip, u.Scheme+": not fetched", nil)
		return
	}
	c.add(d.fetchStep(ru))
	return
}

// fetchStep is what the revocation engine got from the URL while the
// checks ran.
func (d *doctor) fetchStep(ru revocationURL) (string, string, string, error) {
	if ru.kind == "ocsp" {
		err, asked := d.ocsp[ru.url]
		switch {
		case !asked:
			return "fetch", stSkip, "not asked", nil
		case err != nil:
			return "fetch", stFail, "no usable answer", err
		}
		return "fetch", stOK, "answered", nil
	}
	for _, is := range d.checker.Snapshot().Issuers {
		for _, l := range is.CRLs {
			if l.URL != ru.url {
				continue
			}
			switch {
			case l.Fetched && l.Stale:
				return "fetch", stWarn, "stale since " + l.NextUpdate.UTC().Format(time.DateTime), errors.New(l.LastError)
			case l.Fetched:
				return "fetch", stOK, "CRL #" + l.Number + ", next " + l.NextUpdate.UTC().Format(time.DateTime), nil
			case l.LastError != "":
				return "fetch", stFail, "failed", errors.New(l.LastError)
			}
		}
	}
	return "fetch", stSkip, "not asked", nil
}
