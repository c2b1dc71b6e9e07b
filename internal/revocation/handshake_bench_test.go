package revocation

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// BenchmarkHandshake is a full mutual-TLS handshake with an AMC (new
// connection, no session resumption), with the route's revocation check
// (warm cache) and without: compare the two in the same run.
func BenchmarkHandshake(b *testing.B) {
	w := getWorld(b)
	p := w.pki
	srv := p.Servers["ok.amc.test"]
	serverCert := srv.TLSCertificate()
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(p.SanteRoot.Cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", mtls.ServerConfig(mtls.ServerOptions{Certificate: serverCert, ClientCAs: clientCAs}))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	store := trust.NewStore(&trust.Bundle{Name: "osi", Anchors: []*x509.Certificate{p.OSIRoot.Cert}, Intermediates: []*x509.Certificate{p.OSIServeur.Cert}})
	auth := p.AuthCli.TLSCertificate()
	checker, _ := newChecker(b, testConfig(), nil)
	for _, tc := range []struct {
		name  string
		check trust.ChainChecker
	}{{"revocation=on", checker.ForRoute(hard(bothSrc...))}, {"revocation=off", nil}} {
		b.Run(tc.name, func(b *testing.B) {
			v, err := store.NewVerifier(trust.VerifierOptions{Bundles: []string{"osi"}, ServerName: "ok.amc.test", Revocation: tc.check})
			if err != nil {
				b.Fatal(err)
			}
			cfg := mtls.ClientConfig(mtls.ClientOptions{ServerName: "ok.amc.test", VerifyConnection: v.VerifyConnection,
				ClientCertificate: func() *tls.Certificate { return auth }})
			cfg.ClientSessionCache = nil // a full handshake every time
			warm, err := tls.Dial("tcp", ln.Addr().String(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			warm.Close()
			b.ReportAllocs()
			for b.Loop() {
				raw, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				c := tls.Client(raw, cfg)
				if err := c.Handshake(); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}
