package egress

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/sim"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// benchRoute is a route's transport (mtls.NewTransport, as the proxy
// builds it) to a mutual-TLS partner, directly or through the simulated
// forward proxy (in this process: its relaying is counted too).
func benchRoute(b *testing.B, viaProxy, keepAlive bool) (*http.Transport, string) {
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
	o := mtls.TransportOptions{
		TLS:            mtls.ClientConfig(mtls.ClientOptions{ServerName: testpki.IDBHost, VerifyConnection: v.VerifyConnection, ClientCertificate: func() *tls.Certificate { return auth }}),
		ConnectTimeout: 5 * time.Second, TLSHandshakeTimeout: 5 * time.Second, ResponseHeaderTimeout: 5 * time.Second,
	}
	url := partner.URL + "/ws"
	if viaProxy {
		proxy, err := sim.StartForwardProxy(sim.ForwardProxyOptions{Username: "roc", Password: secret,
			Hosts: map[string]string{testpki.IDBHost + ":443": partner.Listener.Addr().String()}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { proxy.Close() })
		p, err := Load(&config.OutboundProxy{URL: proxy.URL, Username: "roc", PasswordEnv: "P"}, "outbound_proxy", func(string) string { return secret })
		if err != nil {
			b.Fatal(err)
		}
		o.Dial = NewDialer(p, 5*time.Second, nil).DialContext
		url = "https://" + testpki.IDBHost + "/ws"
	}
	tr := mtls.NewTransport(o)
	tr.DisableKeepAlives = !keepAlive
	b.Cleanup(tr.CloseIdleConnections)
	return tr, url
}

func benchPost(b *testing.B, tr *http.Transport, url string, body []byte) {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
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
				tr, url := benchRoute(b, viaProxy, keepAlive)
				benchPost(b, tr, url, body)
				b.ReportAllocs()
				for b.Loop() {
					benchPost(b, tr, url, body)
				}
			})
		}
	}
}

// BenchmarkUses is the decision each new connection and each revocation
// fetch takes: "httpproxy" is x/net's matching alone (what Uses was), and
// "Uses" adds the name's normalisation (case, trailing dot, localhost).
func BenchmarkUses(b *testing.B) {
	p, err := Load(&config.OutboundProxy{URL: "http://proxy.hopital.example:3128", NoProxy: []string{".hopital.example", "10.0.0.0/8", "amc.example:8443"}}, "outbound_proxy", nil)
	if err != nil {
		b.Fatal(err)
	}
	const target = "ws.amc-assurance.example:443"
	b.Run("httpproxy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.useProxy(&url.URL{Scheme: "https", Host: target})
		}
	})
	b.Run("Uses", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.Uses("https", target)
		}
	})
}
