package egress_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/egress"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/proxy"
	"github.com/roc-proxy/roc-proxy/internal/sim"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// benchSecret is the simulated forward proxy's password.
const benchSecret = "bench-Pr0xy-secret"

// benchRoute is a route's transport (proxy.Upstream, as internal/app
// builds it) to a mutual-TLS partner, directly or through the simulated
// forward proxy (in this process: its relaying is counted too).
func benchRoute(b *testing.B, viaProxy bool) (*proxy.Upstream, string) {
	pki := testpki.MustShared(b)
	partner := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write(bytes.Repeat([]byte("<item>x</item>"), 150))
	}))
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(pki.SanteRoot.Cert)
	partner.TLS = &tls.Config{Certificates: []tls.Certificate{*pki.Servers[testpki.IDBHost].TLSCertificate()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs}
	partner.StartTLS()
	b.Cleanup(partner.Close)
	store := trust.NewStore(&trust.Bundle{Name: "osi", Anchors: []*x509.Certificate{pki.OSIRoot.Cert}, Intermediates: []*x509.Certificate{pki.OSIServeur.Cert}})
	v, err := store.NewVerifier(trust.VerifierOptions{Bundles: []string{"osi"}, ServerName: testpki.IDBHost})
	if err != nil {
		b.Fatal(err)
	}
	auth := pki.AuthCli.TLSCertificate()
	o := proxy.UpstreamOptions{
		TLS:            mtls.ClientConfig(mtls.ClientOptions{ServerName: testpki.IDBHost, VerifyConnection: v.VerifyConnection, ClientCertificate: func() *tls.Certificate { return auth }}),
		ConnectTimeout: 5 * time.Second, TLSHandshakeTimeout: 5 * time.Second, ResponseHeaderTimeout: 5 * time.Second,
	}
	url := partner.URL + "/ws"
	if viaProxy {
		fwd, err := sim.StartForwardProxy(sim.ForwardProxyOptions{Username: "roc", Password: benchSecret,
			Hosts: map[string]string{testpki.IDBHost + ":443": partner.Listener.Addr().String()}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { fwd.Close() })
		p, err := egress.Load(&config.OutboundProxy{URL: fwd.URL, Username: "roc", PasswordEnv: "P"}, "outbound_proxy", func(string) string { return benchSecret })
		if err != nil {
			b.Fatal(err)
		}
		o.DialContext = egress.NewDialer(p, 5*time.Second, nil).DialContext
		url = "https://" + testpki.IDBHost + "/ws"
	}
	tr := proxy.NewUpstream(o)
	b.Cleanup(tr.Close)
	return tr, url
}

// benchPost sends body; without keepAlive, the partner is asked to close
// the connection after its answer (as http.Transport's DisableKeepAlives).
func benchPost(b *testing.B, tr *proxy.Upstream, url string, body []byte, keepAlive bool) {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Close = !keepAlive
	resp, err := tr.RoundTrip(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// BenchmarkRouteRequest is one request of a route to its mutual-TLS
// partner, directly and through the outbound proxy, on a pooled keep-alive
// connection (pooled) and on a new connection each time (churn: TCP, for
// the proxy the CONNECT exchange, and a full mutual-TLS handshake).
// Compare direct and proxy within one run.
func BenchmarkRouteRequest(b *testing.B) {
	body := bytes.Repeat([]byte("a"), 2048)
	for _, keepAlive := range []bool{true, false} {
		for _, viaProxy := range []bool{false, true} {
			name := map[bool]string{true: "pooled", false: "churn"}[keepAlive] + "/" + map[bool]string{false: "direct", true: "proxy"}[viaProxy]
			b.Run(name, func(b *testing.B) {
				tr, url := benchRoute(b, viaProxy)
				benchPost(b, tr, url, body, keepAlive)
				b.ReportAllocs()
				for b.Loop() {
					benchPost(b, tr, url, body, keepAlive)
				}
			})
		}
	}
}
