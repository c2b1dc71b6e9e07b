package revocation

import (
	"bytes"
	"crypto/x509"
	"time"
)

// This file is the one place that says which answer decides a
// certificate's status and which answer may replace which. The rules:
//
//  1. A revocation for any reason but certificateHold is final for its
//     issuer and serial: once a verified answer from any source (OCSP, a
//     complete or a delta CRL, fresh or already stale) says so, nothing
//     can undo it.
//  2. An answer may only replace the cached answer of the same source
//     when it is newer: a later thisUpdate (then producedAt for OCSP); for
//     a CRL from the same URL, a number no lower and a thisUpdate no
//     earlier, one of them later. An older answer is a replay: refused,
//     logged, counted. Of two OCSP answers with the same thisUpdate and
//     producedAt, a revoked one replaces a good one, never the reverse.
//  3. An answer that arrives already past its nextUpdate is refused
//     (logged, counted, remembered as a failure); its final revocations
//     are kept all the same.
//  4. A cached answer is usable until nextUpdate, then within the grace
//     only because its refresh has failed (every cached answer was fresh
//     when it came, rule 3): each such use is counted and logged.
//  5. Any usable source saying revoked (a hold included) wins over any
//     source saying good. Good comes only from the route's sources.

// reasonCertificateHold is the only revocation reason that can be lifted.
const reasonCertificateHold = 6

// farFuture is the re-evaluation time of a verdict no clock can change.
var farFuture = time.Unix(1<<62, 0)

// finalRevocation is a revocation rule 1 keeps.
type finalRevocation struct {
	source string
}

// verdict is the status of one certificate now, and until when it holds
// unless the cache changes.
type verdict struct {
	status Status
	source string
	grace  bool
	until  time.Time
}

// finalReason reports whether a revocation reason makes a revocation final.
func finalReason(reason int) bool {
	return reason != reasonCertificateHold && reason != reasonRemoveFromCRL
}

// decideLocked applies rules 1, 4 and 5 to what is cached; c.mu held (read).
func (c *Checker) decideLocked(st *issuerState, cs *certState, cert *x509.Certificate, k serialKey, sources []string, now time.Time) verdict {
	if f, ok := st.final[k]; ok {
		return verdict{status: StatusRevoked, source: f.source, until: farFuture}
	}
	grace := c.o.Config.Grace
	var crlGood, ocspGood verdict
	for _, base := range st.crls {
		// What a CRL of the authority lists is revoked, whatever its scope
		// (a serial names one certificate of the authority); what it does
		// not list is good only for the certificates its scope covers.
		if reason, listed := base.revoked[k]; listed && finalReason(reason) {
			return verdict{status: StatusRevoked, source: SourceCRL, until: farFuture}
		}
		if !base.covers(cert) {
			continue
		}
		if now.After(base.nextUpdate.Add(grace)) {
			continue
		}
		var delta *crl
		for _, d := range st.deltas {
			if d.appliesTo(base) && !now.After(d.nextUpdate.Add(grace)) && (delta == nil || d.number.Cmp(delta.number) > 0) {
				delta = d
			}
		}
		if lookupCRL(base, delta, k) == StatusRevoked {
			return verdict{status: StatusRevoked, source: SourceCRL, until: base.nextUpdate.Add(grace)}
		}
		until := base.nextUpdate.Add(grace)
		if crlGood.status == StatusUnknown || until.After(crlGood.until) {
			crlGood = verdict{status: StatusGood, source: SourceCRL, until: until, grace: now.After(base.nextUpdate)}
		}
	}
	if cs != nil && cs.ocsp != nil && !now.After(cs.ocsp.nextUpdate.Add(grace)) {
		a := cs.ocsp
		switch a.status {
		case StatusRevoked:
			return verdict{status: StatusRevoked, source: SourceOCSP, until: a.nextUpdate.Add(grace)}
		case StatusGood:
			ocspGood = verdict{status: StatusGood, source: SourceOCSP, until: a.nextUpdate.Add(grace), grace: now.After(a.nextUpdate)}
		}
	}
	// Good: the first of the route's sources that is not in its grace,
	// else the first in its grace.
	var best verdict
	for _, src := range sources {
		v := crlGood
		if src == SourceOCSP {
			v = ocspGood
		}
		if v.status == StatusUnknown {
			continue
		}
		if best.status == StatusUnknown || best.grace && !v.grace {
			best = v
		}
	}
	if best.status == StatusGood {
		// The status stays good while any of the route's good answers is
		// usable.
		for _, v := range []verdict{crlGood, ocspGood} {
			if v.status == StatusGood && v.until.After(best.until) && inSources(sources, v.source) {
				best.until = v.until
			}
		}
	}
	return best
}

func inSources(sources []string, s string) bool {
	for _, x := range sources {
		if x == s {
			return true
		}
	}
	return false
}

// Why a verified answer was not cached.
const (
	refusedStale     = "stale"
	refusedOlder     = "older_than_cached"
	refusedFinal     = "revoked_is_final"
	refusedDeltaBase = "delta_base_mismatch"
	// refusedResponderRevoked is counted with reason "invalid".
	refusedResponderRevoked = "responder_revoked"
)

// ocspNewer reports whether answer a is newer than b (rule 2), and whether
// they are the same answer.
func ocspNewer(a, b *ocspAnswer) (newer, same bool) {
	switch {
	case a.thisUpdate.After(b.thisUpdate):
		return true, false
	case a.thisUpdate.Before(b.thisUpdate):
		return false, false
	case a.producedAt.After(b.producedAt):
		return true, false
	case a.producedAt.Equal(b.producedAt):
		return false, true
	}
	return false, false
}

// storeOCSPLocked applies rules 1 to 3 to a verified OCSP answer; c.mu
// held. It returns why the answer was refused, or "". An answer signed by
// a delegated responder that the authority is known to have revoked (its
// key may be in anyone's hands) is no answer at all.
func (c *Checker) storeOCSPLocked(st *issuerState, cs *certState, k serialKey, a *ocspAnswer, now time.Time) string {
	if r := a.responder; r != nil {
		if rk, ok := keyOfSerial(r.SerialNumber); ok &&
			c.decideLocked(st, st.certs[rk], r, rk, []string{SourceOCSP, SourceCRL}, now).status == StatusRevoked {
			return refusedResponderRevoked
		}
	}
	if a.status == StatusRevoked && finalReason(a.reason) {
		c.finalLocked(st, k, SourceOCSP)
	}
	if now.After(a.nextUpdate) {
		return refusedStale
	}
	if old := cs.ocsp; old != nil {
		newer, same := ocspNewer(a, old)
		if same && a.status == StatusRevoked && old.status != StatusRevoked {
			// The same times and another status: neither can be ordered
			// before the other, so neither is a replay; revoked wins (a
			// hold too, which only a newer answer lifts).
			cs.ocsp, cs.ocspAt = a, now
			c.epoch.Add(1)
			return ""
		}
		if same {
			cs.ocspAt = now
			return ""
		}
		if !newer {
			return refusedOlder
		}
	}
	if _, final := st.final[k]; final && a.status != StatusRevoked {
		return refusedFinal
	}
	cs.ocsp, cs.ocspAt = a, now
	c.epoch.Add(1)
	return ""
}

// finalsBesidesLocked records as final the revocations l lists that the
// cached CRL old does not (those old lists are read from it directly);
// c.mu held.
func (c *Checker) finalsBesidesLocked(st *issuerState, l, old *crl) {
	for k, reason := range l.revoked {
		if _, listed := old.revoked[k]; !listed && finalReason(reason) {
			c.finalLocked(st, k, SourceCRL)
		}
	}
}

// finalLocked records a final revocation (rule 1); c.mu held.
func (c *Checker) finalLocked(st *issuerState, k serialKey, source string) {
	if _, ok := st.final[k]; ok {
		return
	}
	st.final[k] = finalRevocation{source: source}
	c.epoch.Add(1)
	c.sweepSoon()
}

// storeCRLLocked applies rules 1 to 3 to a verified CRL fetched from src;
// c.mu held. It returns why the CRL was refused, or "", and whether it is
// the CRL already cached.
func (c *Checker) storeCRLLocked(st *issuerState, src *crlSource, l *crl, now time.Time) (refused string, same bool) {
	isDelta := l.baseNumber != nil
	stale := now.After(l.nextUpdate)
	target := st.crls
	if isDelta {
		target = st.deltas
	}
	// Rule 1: what a delta lists, and what a CRL that is not cached lists,
	// is remembered for good; a cached complete CRL is consulted directly
	// whatever its age, and what a newer one drops is kept below.
	if isDelta || stale {
		for k, reason := range l.revoked {
			if finalReason(reason) {
				c.finalLocked(st, k, SourceCRL)
			}
		}
	}
	if stale {
		return refusedStale, false
	}
	old := target[src.url]
	if old != nil {
		sameNumber := l.number.Cmp(old.number) == 0
		if sameNumber && l.thisUpdate.Equal(old.thisUpdate) {
			src.checkedAt = now
			if !bytes.Equal(l.raw, old.raw) {
				// The same CRL issued again with other contents: the
				// cached one stays, and what the other lists besides is
				// revoked all the same (rule 1).
				c.finalsBesidesLocked(st, l, old)
			}
			return "", true
		}
		// A lower number or an earlier thisUpdate is a replay; the same
		// number with a later thisUpdate is the CA issuing again (numbers
		// should grow, but that is no attack).
		newer := l.number.Cmp(old.number) > 0 || sameNumber && l.thisUpdate.After(old.thisUpdate)
		if !newer || l.thisUpdate.Before(old.thisUpdate) {
			// Refused, but signed by the authority: what it lists that
			// the cached CRL does not is revoked all the same (rule 1).
			c.finalsBesidesLocked(st, l, old)
			return refusedOlder, false
		}
		if !isDelta {
			for k, reason := range old.revoked {
				if _, still := l.revoked[k]; !still && finalReason(reason) {
					c.finalLocked(st, k, SourceCRL)
				}
			}
		}
	}
	target[src.url] = l
	src.checkedAt = now
	c.epoch.Add(1)
	c.sweepSoon()
	return "", false
}

// deltaNeedsBaseLocked reports whether no cached complete CRL of st is
// recent enough for delta d (its BaseCRLNumber is newer than every cached
// base): the base it needs must be fetched.
func deltaNeedsBaseLocked(st *issuerState, d *crl) bool {
	for _, base := range st.crls {
		if base.number.Cmp(d.baseNumber) >= 0 {
			return false
		}
	}
	return true
}
