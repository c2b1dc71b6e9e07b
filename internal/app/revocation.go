package app

import (
	"context"
	"crypto/x509"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// prefetchRevocation warms the revocation cache: every authority of the
// trust bundles (and its own status, from its issuer), and the
// establishment's certificates, which are then watched.
func (p *Proxy) prefetchRevocation(ctx context.Context, cfg *config.Config, store *trust.Store) {
	auth := p.current.auth.Load()
	cas := append(store.Authorities(), auth.Chain[1:]...)
	p.revocation.Require(requiredAuthorities(cfg, store))
	p.revocation.Prefetch(ctx, cas, store.IntermediateChains())
	p.revocation.Watch(ctx, "ORG_AUTH_CLI", auth.Chain)
	if sign := p.current.sign.Load(); sign != nil {
		p.revocation.Watch(ctx, "ORG_SIGN", sign.Chain)
	}
}

// requiredAuthorities are what readiness waits for: the authorities of the
// trust bundles that hard routes use, for TLS and for their partner's
// signed answers (their CRLs, when known), and the chains of their
// intermediates (each one's status from its issuer).
func requiredAuthorities(cfg *config.Config, store *trust.Store) ([]*x509.Certificate, [][]*x509.Certificate) {
	hard := map[string]bool{}
	for _, r := range cfg.Routes {
		if r.Revocation.Policy == config.RevocationHard {
			for _, b := range r.Trust {
				hard[b] = true
			}
			if r.ResponseSignature.Policy != config.SignaturesOff {
				for _, b := range r.ResponseSignature.Trust {
					hard[b] = true
				}
			}
		}
	}
	var names []string
	for _, name := range store.Names() {
		if hard[name] {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, nil // (no name would mean every bundle)
	}
	return store.Authorities(names...), store.IntermediateChains(names...)
}

// revocationReadiness is what readiness still waits for. Readiness is a
// start-up gate: once every authority hard routes need had a usable
// status, later outages are reported on /healthz and in the metrics, not
// by taking every replica out of service at once (the SIH then gets a 502
// naming the reason instead of a refused connection).
func (p *Proxy) revocationReadiness() (missing []string, pastBudget bool) {
	if p.revocationWarm.Load() {
		return nil, false
	}
	ok, missing, pastBudget := p.revocation.Readiness()
	if ok {
		p.revocationWarm.Store(true)
		return nil, false
	}
	return missing, pastBudget
}
