package listener

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// ACMEOptions are what ObtainACME takes.
type ACMEOptions struct {
	Config *config.ACME // listen.tls.acme
	// ClientCAs are the SIH's client certificate authorities
	// (listen.tls.client_ca), nil for none.
	ClientCAs *x509.CertPool
	// Retry is the first wait before asking the ACME authority again when
	// no certificate could be had (default 5 s, doubling up to 5 min).
	Retry  time.Duration
	Logger *zap.Logger
	// Failures counts the attempts that got no certificate.
	Failures prometheus.Counter
}

// ACME is the SIH listener's certificate managed by ACME: its TLS
// configuration, the certificate kept renewed (with OCSP stapling) until
// Stop.
type ACME struct {
	TLS   *tls.Config
	cache *certmagic.Cache
}

// Stop ends the renewals.
func (a *ACME) Stop() { a.cache.Stop() }

// ObtainACME gets the SIH listener's certificate (from storage or the ACME
// authority), asking again with a growing wait while the authority cannot
// be reached and nothing is stored: the admin port answers meanwhile
// (/healthz ok, /readyz 503), so Kubernetes neither restarts the pod nor
// sends it traffic. It returns the last error when ctx ends first.
func ObtainACME(ctx context.Context, o ACMEOptions) (*ACME, error) {
	wait := o.Retry
	if wait <= 0 {
		wait = 5 * time.Second
	}
	for attempt := 1; ; attempt++ {
		a, err := startACME(ctx, o.Config, o.ClientCAs, o.Logger.Named("acme"))
		if err == nil {
			if attempt > 1 {
				o.Logger.Info("SIH listener certificate obtained", zap.Int("attempt", attempt))
			}
			return a, nil
		}
		o.Failures.Inc()
		o.Logger.Error("no SIH listener certificate yet: the SIH port opens once one is obtained", zap.Int("attempt", attempt), zap.Duration("retry_in", wait), zap.Error(err))
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Minute)
	}
}

// startACME obtains (or loads from its storage) the SIH listener's
// certificate from the hospital's ACME certificate authority, and keeps it
// renewed, with OCSP stapling. A certificate already in storage is served
// even when the authority is unreachable.
func startACME(ctx context.Context, a *config.ACME, clientCAs *x509.CertPool, log *zap.Logger) (*ACME, error) {
	var roots *x509.CertPool
	if a.CABundle != "" {
		var err error
		if roots, err = trust.ReadPool(a.CABundle); err != nil {
			return nil, fmt.Errorf("listen.tls.acme.ca_bundle: %w", err)
		}
	}
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
		return nil, fmt.Errorf("listen.tls.acme: no certificate for %v from %s (none stored in %s either): %w", a.Domains, a.Directory, a.Storage, err)
	}
	log.Info("SIH listener certificate managed by ACME", zap.Strings("domains", a.Domains), zap.String("directory", a.Directory))
	return &ACME{cache: cache, TLS: mtls.ListenerConfig(mtls.ListenerOptions{GetCertificate: magic.GetCertificate,
		NextProtos: magic.TLSConfig().NextProtos, ClientCAs: clientCAs})}, nil
}
