package revocation

import (
	"context"
	"crypto/x509"
	"time"

	"go.uber.org/zap"
)

// idleCert is how long a certificate nobody asked about is kept fresh.
const idleCert = 24 * time.Hour

// maxCRLBackoff bounds the wait between two fetches of a CRL past its
// refresh point that keeps bringing nothing new.
const maxCRLBackoff = 15 * time.Minute

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

// statusAgeLocked is how long ago a source last answered for cs: its OCSP
// responder, or a CRL that covers it. c.mu held.
func (c *Checker) statusAgeLocked(st *issuerState, cs *certState, now time.Time) time.Duration {
	last := cs.ocspAt
	for u, s := range st.sources {
		if l := st.crls[u]; l != nil && !s.delta && l.covers(cs.cert) && s.checkedAt.After(last) {
			last = s.checkedAt
		}
	}
	if last.IsZero() {
		return now.Sub(c.started)
	}
	return now.Sub(last)
}

type crlJob struct {
	st *issuerState
	s  *crlSource
}

// RefreshDue fetches again, outside any lock:
//   - every CRL past its refresh point (conditionally, backing off while
//     the authority publishes nothing new), and every CRL never fetched;
//   - every OCSP answer in use past its refresh point;
//   - the status of every certificate in use that no source confirmed for
//     revocation.max_status_age: OCSP first, the CRLs when OCSP cannot
//     answer;
//
// then drops certificates nobody used for a day and re-evaluates the
// establishment's own certificates. A failed refresh keeps the cached
// answer (until nextUpdate + grace for a good status).
func (c *Checker) RefreshDue(ctx context.Context) {
	now := c.o.Now()
	maxAge := c.o.Config.MaxStatusAge
	type ocspJob struct {
		st   *issuerState
		cert *x509.Certificate
		aged bool
	}
	var crls []crlJob
	var ocsps []ocspJob
	aged := map[*issuerState]bool{} // a certificate's status must be confirmed by a CRL
	live := c.liveBindings()
	var forgotten []string
	var seen map[string]time.Time
	c.mu.Lock()
	// A chain held by an open pooled connection is in use, even when no
	// new handshake asked about it: only its connection's standing check
	// (Allow, which must stay a lock-free read) does. Without this, a
	// partner served on the same keep-alive connections for more than a
	// day would drop out of the refresh, and a revocation would be seen
	// only at its answers' nextUpdate, not within max_status_age.
	for _, b := range live {
		for _, l := range b.links {
			c.inUseLocked(l.st, l.cert, l.k, now)
		}
	}
	for _, list := range c.issuers {
		for _, st := range list {
			forgotten = append(forgotten, c.forgetUnnamedLocked(st, now)...)
			seen = c.seenToPersistLocked(st, seen)
			for _, s := range st.sources {
				l := st.crls[s.url]
				if s.delta {
					l = st.deltas[s.url]
				}
				if (l == nil || c.due(l.thisUpdate, l.nextUpdate, now)) && !now.Before(s.notBefore) {
					crls = append(crls, crlJob{st, s})
				}
			}
			var oldest time.Duration
			var earliest time.Time
			for k, cs := range st.certs {
				if now.Sub(time.Unix(cs.lastUsed.Load(), 0)) > idleCert {
					if cs.ocsp == nil || now.After(cs.ocsp.nextUpdate.Add(c.o.Config.Grace)) {
						delete(st.certs, k)
						c.certCount--
					}
					continue
				}
				if cs.ocsp != nil && (earliest.IsZero() || cs.ocsp.nextUpdate.Before(earliest)) {
					earliest = cs.ocsp.nextUpdate
				}
				age := c.statusAgeLocked(st, cs, now)
				oldest = max(oldest, age)
				_, final := st.final[k]
				switch {
				case final:
				case cs.ocsp != nil && c.due(cs.ocsp.thisUpdate, cs.ocsp.nextUpdate, now), age >= maxAge && ocspResponder(st, cs.cert) != "":
					ocsps = append(ocsps, ocspJob{st, cs.cert, age >= maxAge})
				case age >= maxAge:
					aged[st] = true
				}
			}
			c.o.Metrics.RevocationStatusAge.WithLabelValues(st.label).Set(oldest.Seconds())
			if earliest.IsZero() {
				c.o.Metrics.RevocationOCSPNextUpdate.WithLabelValues(st.label).Set(0)
			} else {
				c.o.Metrics.RevocationOCSPNextUpdate.WithLabelValues(st.label).Set(float64(earliest.Unix()))
			}
		}
	}
	c.o.Metrics.RevocationCacheEntries.WithLabelValues(SourceOCSP).Set(float64(c.certCount))
	c.mu.Unlock()
	if c.store != nil {
		c.store.forgetCRLs(forgotten, c.o.Logger)
		c.store.seenCRLs(seen, c.o.Logger)
	}

	// Complete CRLs first: a delta only applies on top of its base.
	c.refreshCRLs(ctx, crls, false, now)
	c.refreshCRLs(ctx, crls, true, now)
	for _, j := range ocsps {
		if ctx.Err() != nil {
			return
		}
		if err := c.fetchOCSP(ctx, j.cert, j.st.cert, false); err != nil && j.aged {
			aged[j.st] = true
		}
	}
	// The status of these certificates is too old and OCSP could not
	// confirm it: ask their authority's CRLs now, whatever the back-off.
	for st := range aged {
		c.mu.RLock()
		var jobs []crlJob
		for _, s := range st.sources {
			jobs = append(jobs, crlJob{st, s})
		}
		c.mu.RUnlock()
		c.refreshCRLs(ctx, jobs, false, now)
		c.refreshCRLs(ctx, jobs, true, now)
	}
	c.checkOwn(ctx)
}

// refreshCRLs fetches the complete (or delta) CRLs of jobs, and backs off
// those that bring nothing new: the wait doubles from the check interval
// up to maxCRLBackoff (and max_status_age), and starts again once the
// authority publishes.
func (c *Checker) refreshCRLs(ctx context.Context, jobs []crlJob, delta bool, now time.Time) {
	for _, j := range jobs {
		if j.s.delta != delta || ctx.Err() != nil {
			continue
		}
		c.mu.RLock()
		before := j.st.crls[j.s.url]
		if delta {
			before = j.st.deltas[j.s.url]
		}
		c.mu.RUnlock()
		err := c.fetchCRL(ctx, j.st, j.s, false)
		c.mu.Lock()
		after := j.st.crls[j.s.url]
		if delta {
			after = j.st.deltas[j.s.url]
		}
		switch {
		case after != before:
			j.s.idle, j.s.notBefore = 0, time.Time{}
		case after == nil && err != nil && j.s.configured:
			// Configured and never fetched: keep trying every check
			// interval (readiness waits for it). A URL read from a
			// certificate that never answered backs off below: requests
			// about its certificates still try it once per check
			// interval.
		default:
			j.s.idle++
			wait := min(c.o.Config.CheckInterval<<min(j.s.idle, 20), maxCRLBackoff, c.o.Config.MaxStatusAge)
			j.s.notBefore = now.Add(wait)
		}
		c.mu.Unlock()
	}
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
		for i := 0; i+1 < len(chain) && ctx.Err() == nil; i++ {
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
			v, detail := c.status(ctx, o.chain[i], o.chain[i+1], []string{SourceOCSP, SourceCRL})
			if i == 0 || v.status != StatusGood {
				source = v.source
			}
			if v.status != StatusGood {
				status = v.status
				if v.status == StatusRevoked {
					c.o.Logger.Error("own certificate is REVOKED: renew it", zap.String("role", role),
						zap.String("subject", c.o.Subject(o.chain[i])), zap.String("source", v.source))
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
