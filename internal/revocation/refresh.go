package revocation

import (
	"context"
	"crypto/x509"
	"time"

	"go.uber.org/zap"
)

// idleOCSP is how long an OCSP answer nobody asked for is kept refreshed.
const idleOCSP = 24 * time.Hour

// Run refreshes due answers every check interval until ctx is done.
func (c *Checker) Run(ctx context.Context) {
	t := time.NewTicker(c.o.Config.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.RefreshDue(ctx)
		}
	}
}

// due reports whether an answer valid from this to next should be fetched
// again: past the configured share of its validity.
func (c *Checker) due(this, next, now time.Time) bool {
	life := next.Sub(this)
	return !now.Before(this.Add(time.Duration(float64(life) * c.o.Config.RefreshAt)))
}

// RefreshDue fetches again, outside any lock, every CRL and every recently
// used OCSP answer past its refresh point, drops OCSP answers nobody used for
// a day, and re-evaluates the establishment's own certificates. A failed
// refresh keeps the cached answer until nextUpdate + grace.
func (c *Checker) RefreshDue(ctx context.Context) {
	type crlJob struct {
		st    *issuerState
		url   string
		delta bool
	}
	type ocspJob struct{ cert, issuer *x509.Certificate }
	var crls []crlJob
	var ocsps []ocspJob
	now := c.o.Now()
	c.mu.Lock()
	for _, list := range c.issuers {
		for _, st := range list {
			for u := range st.crlURLs {
				if l := st.crls[u]; l == nil || c.due(l.thisUpdate, l.nextUpdate, now) {
					crls = append(crls, crlJob{st, u, false})
				}
			}
			for u := range st.deltaURLs {
				if l := st.deltas[u]; l == nil || c.due(l.thisUpdate, l.nextUpdate, now) {
					crls = append(crls, crlJob{st, u, true})
				}
			}
			for k, e := range st.ocsp {
				idle := now.Sub(time.Unix(e.lastUsed.Load(), 0)) > idleOCSP
				switch {
				case idle && now.After(e.answer.nextUpdate.Add(c.o.Config.Grace)):
					delete(st.ocsp, k)
					c.ocspCount--
				case !idle && c.due(e.answer.thisUpdate, e.answer.nextUpdate, now):
					ocsps = append(ocsps, ocspJob{e.cert, st.cert})
				}
			}
		}
	}
	c.o.Metrics.RevocationCacheEntries.WithLabelValues(SourceOCSP).Set(float64(c.ocspCount))
	c.mu.Unlock()

	// Complete CRLs first: a delta only applies on top of its base.
	for _, j := range crls {
		if !j.delta {
			_ = c.fetchCRL(ctx, j.st, j.url, false, false)
		}
	}
	for _, j := range crls {
		if j.delta {
			_ = c.fetchCRL(ctx, j.st, j.url, true, false)
		}
	}
	for _, j := range ocsps {
		_ = c.fetchOCSP(ctx, j.cert, j.issuer, false)
	}
	c.checkOwn(ctx)
}

// Prefetch makes the cache warm before the first request: it loads persisted
// answers for the given authorities, fetches their configured CRLs, and
// checks the given chains (the authorities of the trust bundles with their
// issuers, and the establishment's own chains).
func (c *Checker) Prefetch(ctx context.Context, cas []*x509.Certificate, chains [][]*x509.Certificate) {
	for _, ca := range cas {
		c.issuer(ca)
	}
	if c.store != nil {
		c.store.load(c, cas)
	}
	c.RefreshDue(ctx)
	for _, chain := range chains {
		for i := 0; i+1 < len(chain); i++ {
			c.status(ctx, chain[i], chain[i+1], []string{SourceCRL, SourceOCSP})
		}
	}
}

// Watch adds one of the establishment's own certificates (by role:
// ORG_AUTH_CLI, ORG_SIGN) to the certificates re-checked at every refresh.
func (c *Checker) Watch(ctx context.Context, role string, chain []*x509.Certificate) {
	c.mu.Lock()
	c.own[role] = &ownCert{chain: chain}
	c.mu.Unlock()
	c.checkOwn(ctx)
}

// OwnStatus is the last known status of an own certificate.
func (c *Checker) OwnStatus(role string) Status {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if o := c.own[role]; o != nil {
		return o.status
	}
	return StatusUnknown
}

func (c *Checker) checkOwn(ctx context.Context) {
	c.mu.RLock()
	own := make(map[string]*ownCert, len(c.own))
	for role, o := range c.own {
		own[role] = o
	}
	c.mu.RUnlock()
	for role, o := range own {
		status, source := StatusGood, SourceNone
		for i := 0; i+1 < len(o.chain) && status == StatusGood; i++ {
			st, src, detail := c.status(ctx, o.chain[i], o.chain[i+1], []string{SourceOCSP, SourceCRL})
			if st != StatusGood {
				status, source = st, src
				if st == StatusRevoked {
					c.o.Logger.Error("own certificate is REVOKED: renew it", zap.String("role", role),
						zap.String("subject", c.o.Subject(o.chain[i])), zap.String("source", src))
				} else {
					c.o.Logger.Warn("own certificate's revocation status is unknown", zap.String("role", role),
						zap.String("subject", c.o.Subject(o.chain[i])), zap.String("detail", detail))
				}
			}
		}
		c.mu.Lock()
		o.status, o.source = status, source
		c.mu.Unlock()
		for _, s := range []Status{StatusGood, StatusRevoked, StatusUnknown} {
			v := 0.0
			if s == status {
				v = 1
			}
			c.o.Metrics.RevocationOwnStatus.WithLabelValues(role, s.String()).Set(v)
		}
	}
}
