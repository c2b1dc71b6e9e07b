package revocation

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/proxy"
	"github.com/roc-proxy/roc-proxy/internal/testclock"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// pooledPartner is a keep-alive mutual-TLS partner counting the
// connections it accepted and saw closed.
type pooledPartner struct {
	url            string
	opened, closed atomic.Int64
}

func startPooledPartner(t testing.TB, w *world) *pooledPartner {
	t.Helper()
	pp := &pooledPartner{}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(rw, "<ok/>")
	}))
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(w.pki.SanteRoot.Cert)
	s.TLS = mtls.ServerConfig(mtls.ServerOptions{Certificate: w.pki.Servers["ok.amc.test"].TLSCertificate(), ClientCAs: clientCAs})
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			pp.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			pp.closed.Add(1)
		}
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	pp.url = s.URL
	return pp
}

// pooledTransport is a route's transport to the partner (proxy.Upstream,
// as internal/app builds it), with or without the standing check of its
// connections.
func pooledTransport(t testing.TB, w *world, rc *RouteChecker, guarded bool) *proxy.Upstream {
	t.Helper()
	store := trust.NewStore(&trust.Bundle{Name: "osi", Anchors: []*x509.Certificate{w.pki.OSIRoot.Cert}, Intermediates: []*x509.Certificate{w.pki.OSIServeur.Cert}})
	vo := trust.VerifierOptions{Bundles: []string{"osi"}, ServerName: "ok.amc.test"}
	if rc != nil {
		vo.Revocation = rc
	}
	if guarded {
		vo.Watch = func(chain []*x509.Certificate, onRevoked func()) trust.ChainGuard {
			return rc.WatchChain(chain, onRevoked)
		}
	}
	v, err := store.NewVerifier(vo)
	if err != nil {
		t.Fatal(err)
	}
	auth := w.pki.AuthCli.TLSCertificate()
	to := proxy.UpstreamOptions{
		TLS:                 mtls.ClientConfig(mtls.ClientOptions{ServerName: "ok.amc.test", VerifyConnection: v.VerifyConnection, ClientCertificate: func() *tls.Certificate { return auth }}),
		ConnectTimeout:      5 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second,
	}
	if guarded {
		to.VerifyPeer = func(ctx context.Context, cs tls.ConnectionState, closeConn func()) (proxy.PeerGuard, error) {
			g, err := v.VerifyConnectionGuard(ctx, cs, closeConn)
			if g == nil {
				return nil, err
			}
			return g, err
		}
	}
	tr := proxy.NewUpstream(to)
	t.Cleanup(tr.Close)
	return tr
}

func post(t testing.TB, tr http.RoundTripper, url string) error {
	return postConn(t, tr, url, false)
}

// postConn is post, asking the partner to close the connection after its
// answer when closeConn (what http.Transport's DisableKeepAlives does).
func postConn(t testing.TB, tr http.RoundTripper, url string, closeConn bool) error {
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	req.Close = closeConn
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil
}

// Item 7: a partner revoked after the handshake is not served on the
// pooled keep-alive connection (while a new handshake would be refused),
// and its idle pooled connection is closed at once.
func TestPooledConnectionOfRevokedPartner(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	leaf := p.Servers["ok.amc.test"]
	t0 := time.Now()
	var revoked atomic.Bool
	url := ocspServer(t, func(r *ocsp.Request) []byte {
		status := ocsp.Good
		if revoked.Load() && r.SerialNumber.Cmp(leaf.Cert.SerialNumber) == 0 {
			status = ocsp.Revoked
		}
		return ocspAt(t, p.OSIServeur, p.OSIServeur, r.SerialNumber, status, ocsp.KeyCompromise, t0.Add(-time.Minute), t0.Add(time.Hour), false)
	})
	cfg := testConfig()
	cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), OCSPURL: url}}
	clk := testclock.New(t0)
	c, m := newChecker(t, cfg, clk)
	rc := c.ForRoute(Policy{Hard: true, Sources: []string{SourceOCSP}, Route: "amc"})
	partner := startPooledPartner(t, w)
	tr := pooledTransport(t, w, rc, true)
	for i := 0; i < 5; i++ {
		if err := post(t, tr, partner.url); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if n := partner.opened.Load(); n != 1 {
		t.Fatalf("%d connections for 5 requests: the test needs one pooled connection", n)
	}
	// The partner is revoked; the background refresh learns it.
	revoked.Store(true)
	clk.Add(2 * time.Hour) // past the status' max age
	c.RefreshDue(context.Background())
	deadline := time.Now().Add(10 * time.Second)
	for partner.closed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if partner.closed.Load() == 0 {
		t.Error("the revoked partner's pooled connection was not closed")
	}
	err := post(t, tr, partner.url)
	var ve *trust.VerifyError
	if !errors.As(err, &ve) || ve.Reason != trust.ReasonRevoked {
		t.Fatalf("request after the revocation: %v, want a revoked refusal", err)
	}
	if n := partner.opened.Load(); n > 2 {
		t.Errorf("%d connections", n)
	}
	if m := m.RevocationPooledRefusals; m == nil {
		t.Fatal("no metric")
	}
}

// The standing check also refuses a request on a pooled connection that
// is already open when the revocation is learnt without a sweep having
// closed it yet (the check is made before each write).
func TestBindingRefusesOnceRevoked(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	leaf := p.Servers["ok.amc.test"]
	t0 := time.Now()
	clk := testclock.New(t0)
	var revoked atomic.Bool
	url := ocspServer(t, func(r *ocsp.Request) []byte {
		status := ocsp.Good
		if revoked.Load() {
			status = ocsp.Revoked
		}
		now := clk.Now()
		return ocspAt(t, p.OSIServeur, p.OSIServeur, r.SerialNumber, status, ocsp.CertificateHold, now.Add(-time.Minute), now.Add(time.Hour), false)
	})
	cfg := testConfig()
	cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), OCSPURL: url}}
	c, _ := newChecker(t, cfg, clk)
	rc := c.ForRoute(Policy{Hard: true, Sources: []string{SourceOCSP}})
	chain := []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}
	if err := rc.CheckChain(context.Background(), chain); err != nil {
		t.Fatal(err)
	}
	b := rc.WatchChain(chain, nil)
	defer b.Release()
	if err := b.Allow(); err != nil {
		t.Fatal(err)
	}
	revoked.Store(true)
	clk.Add(31 * time.Minute)
	c.RefreshDue(context.Background())
	wantStatus(t, b.Allow(), StatusRevoked, SourceOCSP)
	// Past nextUpdate + grace with nothing new, a hard route's pooled
	// connection is refused too.
	revoked.Store(false)
	clk.Add(31 * time.Minute)
	c.RefreshDue(context.Background())
	if err := b.Allow(); err != nil {
		t.Fatalf("hold lifted by a newer answer: %v", err)
	}
	clk.Add(5 * time.Hour)
	wantStatus(t, b.Allow(), StatusUnknown, SourceNone)
}

// BenchmarkPooledAllow is the added cost per request on a pooled
// connection: the standing check of a chain of 3, nothing changed.
func BenchmarkPooledAllow(b *testing.B) {
	w := getWorld(b)
	c, _ := newChecker(b, testConfig(), nil)
	rc := c.ForRoute(hard(bothSrc...))
	chain := chainOf(w.pki.Servers["ok.amc.test"])
	if err := rc.CheckChain(context.Background(), chain); err != nil {
		b.Fatal(err)
	}
	g := rc.WatchChain(chain, nil)
	defer g.Release()
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Allow(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPooledRequest is one request on a pooled keep-alive connection
// to a mutual-TLS partner, with the standing check of the connection
// (guarded) and without: compare the two in the same run.
func BenchmarkPooledRequest(b *testing.B) {
	w := getWorld(b)
	c, _ := newChecker(b, testConfig(), nil)
	rc := c.ForRoute(hard(bothSrc...))
	partner := startPooledPartner(b, w)
	for _, guarded := range []bool{true, false} {
		name := "guarded"
		if !guarded {
			name = "unguarded"
		}
		b.Run(name, func(b *testing.B) {
			tr := pooledTransport(b, w, rc, guarded)
			if err := post(b, tr, partner.url); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := post(b, tr, partner.url); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkChurnRequest is one request on a new mutual-TLS connection
// (keep-alive off: a full handshake each time, session resumption aside),
// with the route's revocation check and the connection's standing check
// (hard), and without any revocation check (off): what bench/run.sh --mode
// revocation compares, inside one process.
func BenchmarkChurnRequest(b *testing.B) {
	w := getWorld(b)
	c, _ := newChecker(b, testConfig(), nil)
	partner := startPooledPartner(b, w)
	for _, mode := range []string{"hard", "off"} {
		b.Run("revocation="+mode, func(b *testing.B) {
			var tr *proxy.Upstream
			if mode == "hard" {
				tr = pooledTransport(b, w, c.ForRoute(hard(bothSrc...)), true)
			} else {
				tr = pooledTransport(b, w, nil, false)
			}
			if err := postConn(b, tr, partner.url, true); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := postConn(b, tr, partner.url, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
