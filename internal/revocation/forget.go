package revocation

import (
	"crypto/x509"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// A CRL URL read from certificates (a distribution point, a delta
// pointer) is followed while certificates in use name it. Once none has
// for revocation.forget_after (a partner removed, an authority that moved
// its CRL and let the old URL die), it is forgotten: no longer fetched,
// its metric series deleted (else its stale nextUpdate alerts for ever),
// its persisted CRL removed; what its last CRL listed stays revoked (rule
// 1). A certificate naming it again makes it learnt again. Configured
// URLs are never forgotten.

// certCRLURLs are the http(s) CRL and delta CRL URLs cert names.
func certCRLURLs(cert *x509.Certificate) []string {
	return append(usableURLs(cert.CRLDistributionPoints), usableURLs(FreshestCRLURLs(cert))...)
}

// forgetUnnamedLocked marks the URLs the certificates of st in use name
// as seen at their last use, then forgets the learnt URLs nothing named
// for forget_after; it returns those. c.mu held.
func (c *Checker) forgetUnnamedLocked(st *issuerState, now time.Time) []string {
	for _, cs := range st.certs {
		if !cs.urlsRead {
			cs.crlURLs, cs.urlsRead = certCRLURLs(cs.cert), true
		}
		used := time.Unix(cs.lastUsed.Load(), 0)
		for _, u := range cs.crlURLs {
			if s := st.sources[u]; s != nil {
				s.seenAt = later(s.seenAt, used)
			}
		}
	}
	var out []string
	for u, s := range st.sources {
		if s.configured || now.Sub(s.seenAt) <= c.o.Config.ForgetAfter {
			continue
		}
		c.forgetSourceLocked(st, s)
		out = append(out, u)
		c.o.Logger.Info("CRL URL read from certificates forgotten: no certificate in use names it any more",
			zap.String("issuer", st.label), zap.String("url", u), zap.Time("last_named", s.seenAt),
			zap.Duration("forget_after", c.o.Config.ForgetAfter))
	}
	return out
}

// forgetSourceLocked drops learnt URL s of st, keeping for good what its
// cached CRLs list; c.mu held.
func (c *Checker) forgetSourceLocked(st *issuerState, s *crlSource) {
	u := s.url
	for _, l := range []*crl{st.crls[u], st.deltas[u]} {
		if l == nil {
			continue
		}
		for k, reason := range l.revoked {
			if finalReason(reason) {
				c.finalLocked(st, k, SourceCRL)
			}
		}
	}
	delete(st.crls, u)
	delete(st.deltas, u)
	delete(st.sources, u)
	st.learnt--
	delete(c.failures, "crl|"+u)
	c.epoch.Add(1)
	c.crlMetricsLocked()
	for _, list := range c.issuers {
		for _, other := range list {
			if other.sources[u] != nil {
				return // another authority's source: its series stay
			}
		}
	}
	c.o.Metrics.RevocationNextUpdate.DeleteLabelValues(SourceCRL, u)
	c.o.Metrics.RevocationThisUpdate.DeleteLabelValues(SourceCRL, u)
	c.o.Metrics.RevocationFetchErrors.DeletePartialMatch(prometheus.Labels{"source": SourceCRL, "url": u})
}

// seenToPersistLocked adds to seen the learnt URLs of st whose seenAt
// moved by forget_after/8 since the cache folder's index recorded it, so
// that a restart does not make them look just named (a pod restarting
// more often than forget_after would never forget). c.mu held.
func (c *Checker) seenToPersistLocked(st *issuerState, seen map[string]time.Time) map[string]time.Time {
	if c.store == nil {
		return seen
	}
	for u, s := range st.sources {
		if s.configured || s.seenAt.Sub(s.persistedSeen) < c.o.Config.ForgetAfter/8 {
			continue
		}
		if seen == nil {
			seen = map[string]time.Time{}
		}
		seen[u], s.persistedSeen = s.seenAt, s.seenAt
	}
	return seen
}
