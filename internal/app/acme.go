package app

import (
	"context"
	"crypto/x509"
	"fmt"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// startACME obtains (or loads from its storage) the SIH listener's
// certificate from the hospital's ACME certificate authority, and keeps it
// renewed, with OCSP stapling. A certificate already in storage is served
// even when the authority is unreachable; without one, start-up fails with
// the reason, and the restart tries again.
func (p *Proxy) startACME(ctx context.Context, a *config.ACME, clientCAs *x509.CertPool) error {
	var roots *x509.CertPool
	if a.CABundle != "" {
		certs, err := trust.ReadCertificates(a.CABundle)
		if err != nil {
			return fmt.Errorf("listen.tls.acme.ca_bundle: %w", err)
		}
		roots = x509.NewCertPool()
		for _, c := range certs {
			roots.AddCert(c)
		}
	}
	log := p.log.Named("acme")
	var magic *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		Logger:           log,
	})
	magic = certmagic.New(cache, certmagic.Config{Storage: &certmagic.FileStorage{Path: a.Storage}, Logger: log})
	magic.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA: a.Directory, TestCA: a.Directory, Email: a.Email, Agreed: true, TrustedRoots: roots,
		DisableHTTPChallenge: true, AltTLSALPNPort: a.AltTLSALPNPort, Logger: log,
	})}
	if err := magic.ManageSync(ctx, a.Domains); err != nil {
		cache.Stop()
		return fmt.Errorf("listen.tls.acme: no certificate for %v from %s (none stored in %s either): %w", a.Domains, a.Directory, a.Storage, err)
	}
	p.acmeCache = cache
	p.sihTLS = mtls.ListenerConfig(mtls.ListenerOptions{GetCertificate: magic.GetCertificate,
		NextProtos: magic.TLSConfig().NextProtos, ClientCAs: clientCAs})
	log.Info("SIH listener certificate managed by ACME", zap.Strings("domains", a.Domains), zap.String("directory", a.Directory))
	return nil
}
