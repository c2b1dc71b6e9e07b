package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

func TestClientVerifier(t *testing.T) {
	p := pki(t)
	roots := x509.NewCertPool()
	roots.AddCert(p.SanteRoot.Cert)
	now := time.Now()
	v := newClientVerifier(roots, func() time.Time { return now })
	req := func(chain ...*x509.Certificate) *http.Request {
		r, _ := http.NewRequest(http.MethodPost, "https://roc-proxy/idb/", nil)
		r.TLS = &tls.ConnectionState{PeerCertificates: chain}
		return r
	}
	if err := v.verify(req(p.AuthCli.Cert, p.SanteOrg.Cert)); err != nil {
		t.Fatalf("client certificate of the SIH's authority: %v", err)
	}
	for name, r := range map[string]*http.Request{
		"no certificate":            req(),
		"another authority":         req(p.Servers[testpki.IDBHost].Cert),
		"missing intermediate":      req(p.AuthCli.Cert),
		"plain HTTP (no TLS state)": func() *http.Request { r := req(); r.TLS = nil; return r }(),
	} {
		if err := v.verify(r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A verdict does not outlive the certificate.
	now = p.AuthCli.Cert.NotAfter.Add(time.Second)
	if err := v.verify(req(p.AuthCli.Cert, p.SanteOrg.Cert)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired certificate: %v", err)
	}
}

// BenchmarkClientVerifier is the per-request cost of the SIH client
// certificate check once its verdict is cached.
func BenchmarkClientVerifier(b *testing.B) {
	p := pki(b)
	roots := x509.NewCertPool()
	roots.AddCert(p.SanteRoot.Cert)
	v := newClientVerifier(roots, nil)
	r, _ := http.NewRequest(http.MethodPost, "https://roc-proxy/idb/", nil)
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{p.AuthCli.Cert, p.SanteOrg.Cert}}
	b.ReportAllocs()
	for b.Loop() {
		if err := v.verify(r); err != nil {
			b.Fatal(err)
		}
	}
}
