package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/saml"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func pki(t testing.TB) *testpki.PKI { return testpki.MustShared(t) }

func tlsCert(c *testpki.Cert) *tls.Certificate { return c.TLSCertificate() }

// upstream is a real TLS partner on 127.0.0.1 requiring client certificates
// from clientCA.
type upstream struct {
	*httptest.Server
	hits atomic.Int64
}

func startUpstream(t testing.TB, cert *testpki.Cert, clientCA *testpki.Cert, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.Cert)
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		h(w, r)
	}))
	u.TLS = mtls.ServerConfig(mtls.ServerOptions{Certificate: tlsCert(cert), ClientCAs: pool})
	u.Config.ErrorLog = zap.NewStdLog(zap.NewNop())
	u.StartTLS()
	t.Cleanup(u.Close)
	return u
}

// echo answers with what it received, as JSON.
func echo(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set(HeaderRequestID, "upstream-own-id")
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"path": r.URL.Path, "query": r.URL.RawQuery, "host": r.Host, "header": r.Header,
		"body": string(body), "client": trust.SubjectDN(r.TLS.PeerCertificates[0]), "resumed": r.TLS.DidResume,
	})
}

type routeOpt struct {
	prefix, serverName string
	upstream           string
	strip              bool
	maxBody, maxResp   int64
	total, respHeader  time.Duration
	verifyCount        *atomic.Int64
	methods            []string
	// dial replaces the TCP dial (an outbound proxy's tunnel).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// verifyPeer is the per-connection check with a standing guard.
	verifyPeer func(ctx context.Context, cs tls.ConnectionState, closeConn func()) (PeerGuard, error)
}

type fixture struct {
	h          *Handler
	reg        *prometheus.Registry
	m          *metrics.Metrics
	transports []*Upstream
}

// newFixture builds a Handler whose routes trust the test IGC OSI and
// authenticate with the test ORG_AUTH_CLI.
func newFixture(t testing.TB, routes map[string]routeOpt, opts ...func(*Options)) *fixture {
	t.Helper()
	p := pki(t)
	store := trust.NewStore(&trust.Bundle{Name: "osi", Anchors: []*x509.Certificate{p.OSIRoot.Cert}, Intermediates: []*x509.Certificate{p.OSIServeur.Cert}})
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.BuildInfo{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	auth := tlsCert(p.AuthCli)
	var specs []RouteSpec
	var transports []*Upstream
	for name, o := range routes {
		v, err := store.NewVerifier(trust.VerifierOptions{Bundles: []string{"osi"}, ServerName: o.serverName})
		if err != nil {
			t.Fatal(err)
		}
		verify := v.VerifyConnection
		if o.verifyCount != nil {
			verify = func(cs tls.ConnectionState) error { o.verifyCount.Add(1); return v.VerifyConnection(cs) }
		}
		tr := NewUpstream(UpstreamOptions{
			TLS:                   mtls.ClientConfig(mtls.ClientOptions{ServerName: o.serverName, VerifyConnection: verify, ClientCertificate: func() *tls.Certificate { return auth }}),
			ConnectTimeout:        2 * time.Second,
			TLSHandshakeTimeout:   2 * time.Second,
			ResponseHeaderTimeout: or(o.respHeader, 5*time.Second),
			DialContext:           o.dial,
			VerifyPeer:            o.verifyPeer,
		})
		t.Cleanup(tr.Close)
		transports = append(transports, tr)
		u, err := url.Parse(o.upstream)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, RouteSpec{Name: name, PathPrefix: o.prefix, StripPrefix: o.strip, Upstream: u,
			MaxBodyBytes: int64(or(time.Duration(o.maxBody), 1<<20)), MaxResponseBytes: int64(or(time.Duration(o.maxResp), 1<<20)), TotalTimeout: or(o.total, 10*time.Second), Transport: tr,
			Methods: o.methods})
	}
	log := zap.NewNop()
	if tt, ok := t.(*testing.T); ok {
		log = zaptest.NewLogger(tt)
	}
	o := Options{Routes: specs, Logger: log, Metrics: m}
	for _, opt := range opts {
		opt(&o)
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{h: h, reg: reg, m: m, transports: transports}
}

func or(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// do sends one request through the handler on a real listener.
func (f *fixture) server(t testing.TB) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(f.h)
	t.Cleanup(s.Close)
	return s
}

type problemBody struct {
	Error, Reason, Message string
	RequestID              string `json:"request_id"`
}

func decodeProblem(t *testing.T, resp *http.Response) problemBody {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error body content type %q", ct)
	}
	var p problemBody
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestForwarding(t *testing.T) {
	p := pki(t)
	up := startUpstream(t, p.Servers[testpki.AnnuaireHost], p.SanteRoot, echo)
	f := newFixture(t, map[string]routeOpt{
		"annuaire": {prefix: "/annuaire/", upstream: up.URL + "/ws/base", serverName: testpki.AnnuaireHost, strip: true},
		"keep":     {prefix: "/keep", upstream: up.URL + "/base", serverName: testpki.AnnuaireHost},
	})
	srv := f.server(t)

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/annuaire/search/v1?x=1", strings.NewReader("<soap/>"))
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "must not pass")
	req.Header.Set("X-Forwarded-For", "10.6.6.6")
	req.Header.Set("X-Real-Ip", "10.6.6.6")
	req.Header.Set("X-Ssl-Client-Cert", "forged")
	req.Header.Set("Forwarded", "for=10.6.6.6")
	req.Header.Set("SOAPAction", `"search"`)
	req.Header.Set(HeaderRequestID, "sih-42.a:b")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var got struct {
		Path, Query, Host, Body, Client string
		Header                          http.Header
	}
	json.NewDecoder(resp.Body).Decode(&got)
	if got.Path != "/ws/base/search/v1" || got.Query != "x=1" || got.Body != "<soap/>" {
		t.Errorf("forwarded %s?%s body %q", got.Path, got.Query, got.Body)
	}
	if want := strings.TrimPrefix(up.URL, "https://"); got.Host != want {
		t.Errorf("Host %q, want the upstream's %q", got.Host, want)
	}
	for _, h := range []string{"X-Hop", "X-Forwarded-For", "X-Real-Ip", "X-Ssl-Client-Cert", "Forwarded", "Connection"} {
		if v := got.Header.Get(h); v != "" {
			t.Errorf("%s reached the partner: %q", h, v)
		}
	}
	if got.Header.Get("Soapaction") != `"search"` {
		t.Errorf("SOAPAction lost: %v", got.Header)
	}
	if got.Header.Get(HeaderRequestID) != "sih-42.a:b" || resp.Header.Values(HeaderRequestID)[0] != "sih-42.a:b" || len(resp.Header.Values(HeaderRequestID)) != 1 {
		t.Errorf("request id: upstream saw %q, SIH got %v", got.Header.Get(HeaderRequestID), resp.Header.Values(HeaderRequestID))
	}
	if !strings.HasPrefix(got.Client, "CN="+testpki.AuthCliCN+",OU="+testpki.IDNatStruct) {
		t.Errorf("partner authenticated %q", got.Client)
	}

	// Without strip_prefix, the prefix stays; prefixes match whole segments.
	resp2, err := srv.Client().Post(srv.URL+"/keep/x", "text/xml", nil)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp2.Body).Decode(&got)
	resp2.Body.Close()
	if got.Path != "/base/keep/x" {
		t.Errorf("unstripped path %q", got.Path)
	}
	resp3, err := srv.Client().Post(srv.URL+"/keepx", "text/xml", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp3.Body.Close()
	if resp3.StatusCode != 404 {
		t.Errorf("/keepx matched /keep: %d", resp3.StatusCode)
	}
}

func TestRequestIDReplacedWhenUnsafe(t *testing.T) {
	for _, in := range []string{"", "a b", strings.Repeat("x", 129), "id\nforged-log-line", "é"} {
		got := requestID(in)
		if got == in || len(got) != 32 || !validRequestID(got) {
			t.Errorf("requestID(%q) = %q", in, got)
		}
	}
}

func TestErrors(t *testing.T) {
	p := pki(t)
	good := startUpstream(t, p.Servers[testpki.IDBHost], p.SanteRoot, echo)
	rogueCert, err := p.IssueServer(p.RogueRoot, testpki.IDBHost, testpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rogue := startUpstream(t, rogueCert, p.SanteRoot, echo)
	// A partner that does not accept IGC-Santé clients.
	picky := startUpstream(t, p.Servers[testpki.IDBHost], p.RogueRoot, echo)
	release := make(chan struct{})
	slow := startUpstream(t, p.Servers[testpki.IDBHost], p.SanteRoot, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "https://" + down.Addr().String()
	down.Close()
	plain := httptest.NewServer(http.HandlerFunc(echo))
	big := startUpstream(t, p.Servers[testpki.IDBHost], p.SanteRoot, func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 4096))
	})
	t.Cleanup(plain.Close)

	idb := testpki.IDBHost
	f := newFixture(t, map[string]routeOpt{
		"good":      {prefix: "/good/", upstream: good.URL, serverName: idb, maxBody: 1024},
		"rogue":     {prefix: "/rogue/", upstream: rogue.URL, serverName: idb},
		"wrongname": {prefix: "/wrongname/", upstream: good.URL, serverName: "other.amc.test"},
		"picky":     {prefix: "/picky/", upstream: picky.URL, serverName: idb},
		"slowhdr":   {prefix: "/slowhdr/", upstream: slow.URL, serverName: idb, respHeader: 200 * time.Millisecond},
		"slowtotal": {prefix: "/slowtotal/", upstream: slow.URL, serverName: idb, total: 200 * time.Millisecond},
		"down":      {prefix: "/down/", upstream: downURL, serverName: idb},
		"plain":     {prefix: "/plain/", upstream: strings.Replace(plain.URL, "http:", "https:", 1), serverName: idb},
		"big":       {prefix: "/big/", upstream: big.URL, serverName: idb, maxResp: 1024},
	})
	srv := f.server(t)

	tests := []struct {
		name, path string
		body       io.Reader
		size       int64 // -1: chunked
		status     int
		code       string
		reason     string
	}{
		{"unknown route", "/nothing/here", nil, 0, 404, CodeUnknownRoute, ""},
		{"dot segments", "/good/../rogue/", nil, 0, 400, CodeBadRequest, "path"},
		{"escaped slash", "/good/a%2Fb", nil, 0, 400, CodeBadRequest, "path"},
		{"declared body too large", "/good/", bytes.NewReader(make([]byte, 2048)), 2048, 413, CodeBodyTooLarge, ""},
		{"chunked body too large", "/good/", io.LimitReader(zeros{}, 4096), -1, 413, CodeBodyTooLarge, ""},
		{"untrusted partner", "/rogue/", nil, 0, 502, CodeUpstreamTLS, string(trust.ReasonUnknownAuthority)},
		{"wrong name", "/wrongname/", nil, 0, 502, CodeUpstreamTLS, string(trust.ReasonNameMismatch)},
		{"partner refuses our certificate", "/picky/", nil, 0, 502, CodeUpstreamTLS, "rejected_by_partner"},
		{"partner not speaking TLS", "/plain/", nil, 0, 502, CodeUpstreamTLS, "not_tls"},
		{"response header timeout", "/slowhdr/", nil, 0, 504, CodeUpstreamTimeout, "response_header"},
		{"total timeout", "/slowtotal/", nil, 0, 504, CodeUpstreamTimeout, "total"},
		{"partner down", "/down/", nil, 0, 502, CodeUpstreamUnavailable, ""},
		{"partner answer too large", "/big/", nil, 0, 502, CodeUpstreamError, "response_too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := good.hits.Load()
			req, _ := http.NewRequest(http.MethodPost, srv.URL+tc.path, tc.body)
			req.ContentLength = tc.size
			if tc.body == nil {
				req.ContentLength = 0
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			pb := decodeProblem(t, resp)
			if pb.Error != tc.code || pb.Reason != tc.reason || pb.Message == "" || pb.RequestID == "" {
				t.Fatalf("body %+v, want %s/%s", pb, tc.code, tc.reason)
			}
			if strings.Contains(pb.Message, "127.0.0.1") {
				t.Errorf("internal address leaked to the SIH: %q", pb.Message)
			}
			if tc.status == 413 && tc.size > 0 && good.hits.Load() != before {
				t.Error("a body over the limit reached the partner")
			}
		})
	}
	if n := testutil.ToFloat64(f.m.UpstreamTLSErrors.WithLabelValues("rogue", "unknown_authority")); n != 1 {
		t.Errorf("tls error metric = %v", n)
	}
	if n := testutil.ToFloat64(f.m.Requests.WithLabelValues("unmatched", "404")); n != 1 {
		t.Errorf("request metric for unmatched 404 = %v", n)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// A resumed TLS session must be verified again: VerifyConnection runs on
// every handshake, full or abbreviated.
func TestResumedSessionIsVerifiedAgain(t *testing.T) {
	p := pki(t)
	up := startUpstream(t, p.Servers[testpki.AnnuaireHost], p.SanteRoot, echo)
	var verified atomic.Int64
	f := newFixture(t, map[string]routeOpt{
		"r": {prefix: "/r/", upstream: up.URL, serverName: testpki.AnnuaireHost, verifyCount: &verified},
	})
	srv := f.server(t)
	var resumed bool
	for i := 0; i < 2; i++ {
		resp, err := srv.Client().Post(srv.URL+"/r/", "text/xml", nil)
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ Resumed bool }
		json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		resumed = got.Resumed
		f.transports[0].CloseIdleConnections() // force a new, resumable connection
	}
	if !resumed {
		t.Fatal("second connection did not resume the TLS session")
	}
	if n := verified.Load(); n != 2 {
		t.Fatalf("VerifyConnection ran %d times for 2 handshakes", n)
	}
}

func TestClientGoneIsNotAnUpstreamError(t *testing.T) {
	p := pki(t)
	hold := make(chan struct{})
	up := startUpstream(t, p.Servers[testpki.IDBHost], p.SanteRoot, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(hold) })
	f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: up.URL, serverName: testpki.IDBHost}})
	srv := f.server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/r/", nil)
	if _, err := srv.Client().Do(req); err == nil {
		t.Fatal("request finished despite the client giving up")
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(f.m.Requests.WithLabelValues("r", "499")) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("client-closed request not counted as 499")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A chunked partner answer is passed on whole, with a Content-Length, and a
// chunked SIH request reaches the partner with one.
func TestBodiesAreForwardedWhole(t *testing.T) {
	p := pki(t)
	up := startUpstream(t, p.Servers[testpki.IDBHost], p.SanteRoot, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Got-Length", fmt.Sprint(r.ContentLength))
		for i := 0; i < 3; i++ {
			w.Write(body)
			w.(http.Flusher).Flush() // chunked, several chunks
		}
	})
	f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: up.URL, serverName: testpki.IDBHost}})
	srv := f.server(t)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/r/", io.MultiReader(strings.NewReader("<a>"), strings.NewReader("</a>")))
	req.ContentLength = -1 // chunked from the SIH
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "<a></a><a></a><a></a>" || resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
		t.Errorf("answer %q, length %d, transfer encoding %v", body, resp.ContentLength, resp.TransferEncoding)
	}
	if got := resp.Header.Get("X-Got-Length"); got != "7" {
		t.Errorf("partner saw Content-Length %s, want 7", got)
	}
}

// The response-signature policy: enforce refuses, log lets through and
// counts. The verification itself is saml.VerifyResponse's (tested there).
func TestResponseSignaturePolicy(t *testing.T) {
	p := pki(t)
	up := startUpstream(t, p.Servers[testpki.IDBHost], p.SanteRoot, echo)
	for _, tc := range []struct {
		name    string
		enforce bool
		verdict error
		status  int
		result  string
	}{
		{"enforce, valid", true, nil, 200, "valid"},
		{"enforce, invalid", true, errors.New("signature 1: digest mismatch"), 502, "invalid"},
		{"enforce, absent", true, saml.ErrNoSignature, 502, "absent"},
		{"log, invalid", false, errors.New("signature 1: digest mismatch"), 200, "invalid"},
		{"log, absent", false, saml.ErrNoSignature, 200, "absent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: up.URL, serverName: testpki.IDBHost}})
			f.h.routes[0].ResponseSignatures = func(context.Context, []byte) (int, error) { return 1, tc.verdict }
			f.h.routes[0].Enforce = tc.enforce
			srv := f.server(t)
			resp, err := srv.Client().Post(srv.URL+"/r/", "text/xml", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == 502 {
				if pb := decodeProblem(t, resp); pb.Reason != "response_signature" {
					t.Fatalf("reason %q", pb.Reason)
				}
			}
			if n := testutil.ToFloat64(f.m.ResponseSignatures.WithLabelValues("r", tc.result)); n != 1 {
				t.Fatalf("metric %s = %v", tc.result, n)
			}
		})
	}
}

// Dynamic addressing reaches only the hosts and ports of the patterns,
// whatever the client tries; the route's trust and names still apply.
func TestDynamicAddressingIsNoOpenRelay(t *testing.T) {
	p := pki(t)
	up := startUpstream(t, p.Servers[testpki.AnnuaireHost], p.SanteRoot, echo)
	_, upPort, _ := net.SplitHostPort(strings.TrimPrefix(up.URL, "https://"))
	port, _ := strconv.Atoi(upPort)
	f := newFixture(t, map[string]routeOpt{"amc": {prefix: "/amc/", upstream: up.URL}})
	r := f.h.routes[0]
	r.Upstream, r.Dynamic = nil, &DynamicSpec{Hosts: []string{"*.amc.test", "ws.mutuelle.test"}, Ports: []int{port}}
	// The partner's name resolves to loopback, as DNS would.
	r.Transport.(*Upstream).o.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, _ := net.SplitHostPort(addr)
		if host != testpki.AnnuaireHost {
			return nil, fmt.Errorf("dialled %s: a host outside the patterns", addr)
		}
		return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:"+port)
	}
	srv := f.server(t)
	hostPort := testpki.AnnuaireHost + ":" + upPort

	resp, err := srv.Client().Post(srv.URL+"/amc/"+hostPort+"/ws/search", "text/xml", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Path, Host string }
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if resp.StatusCode != 200 || got.Path != "/ws/search" || got.Host != hostPort {
		t.Fatalf("allowed partner: %d %+v", resp.StatusCode, got)
	}
	for _, tc := range []struct{ name, path string }{
		{"host outside the patterns", "/amc/evil.example:" + upPort + "/x"},
		{"look-alike suffix", "/amc/evilamc.test:" + upPort + "/x"},
		{"pattern as a prefix", "/amc/annuaire.amc.test.evil.example:" + upPort + "/x"},
		{"IP literal", "/amc/127.0.0.1:" + upPort + "/x"},
		{"user info", "/amc/user@annuaire.amc.test:" + upPort + "/x"},
		{"trailing dot", "/amc/annuaire.amc.test.:" + upPort + "/x"},
		{"port not allowed", "/amc/annuaire.amc.test:8443/x"},
		{"default port not allowed", "/amc/annuaire.amc.test/x"},
		{"no host", "/amc/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := srv.Client().Post(srv.URL+tc.path, "text/xml", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 403 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if pb := decodeProblem(t, resp); pb.Error != CodeForbidden || pb.Reason != "destination" {
				t.Fatalf("body %+v", pb)
			}
		})
	}
	// Encoded dots or slashes, dot segments and bracketed IPv6 literals
	// are refused before routing (400) or at the destination check (403).
	for _, path := range []string{"/amc/annuaire%2eamc%2etest:" + upPort + "/x", "/amc/a.amc.test:" + upPort + "/../x", "/amc/[::1]:" + upPort + "/x"} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, nil)
		req.URL.Opaque = path // sent as written
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 && resp.StatusCode != 403 {
			t.Errorf("%s: status %d", path, resp.StatusCode)
		}
	}
	// An absolute-form request or a forged Host names no partner.
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST https://evil.example/amc/evil.example:%s/x HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", upPort)
	reply, _ := io.ReadAll(conn)
	if !bytes.HasPrefix(reply, []byte("HTTP/1.1 403")) {
		t.Errorf("absolute-form request: %s", reply)
	}
	if n := testutil.ToFloat64(f.m.Forbidden.WithLabelValues("destination")); n < 10 {
		t.Errorf("forbidden metric = %v", n)
	}
}

func TestClientAddressAllowList(t *testing.T) {
	p := pki(t)
	up := startUpstream(t, p.Servers[testpki.IDBHost], p.SanteRoot, echo)
	for _, tc := range []struct {
		cidrs  []string
		status int
	}{
		{nil, 200},
		{[]string{"10.0.0.0/8"}, 403},
		{[]string{"10.0.0.0/8", "127.0.0.0/8"}, 200},
	} {
		f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: up.URL, serverName: testpki.IDBHost}})
		for _, c := range tc.cidrs {
			f.h.allow = append(f.h.allow, netip.MustParsePrefix(c))
		}
		srv := f.server(t)
		resp, err := srv.Client().Post(srv.URL+"/r/", "text/xml", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("allow %v: status %d, want %d", tc.cidrs, resp.StatusCode, tc.status)
		}
	}
}
