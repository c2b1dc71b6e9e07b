package revocation

import (
	"crypto/x509"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Require names what readiness waits for: the authorities whose
// certificates hard routes accept (each needs a usable complete CRL from
// the CRL URLs configured for it in revocation.issuers, which are fetched
// at start for that purpose) and the chains of those authorities (each
// certificate needs a usable status from its issuer, from any source).
func (c *Checker) Require(cas []*x509.Certificate, chains [][]*x509.Certificate) {
	for _, ca := range cas {
		c.issuer(ca)
	}
	c.mu.Lock()
	c.required, c.reqChains = cas, chains
	c.mu.Unlock()
}

// Readiness reports whether every required authority has a usable status,
// and otherwise what is missing, one line per problem. pastBudget tells
// whether revocation.startup_budget has run out since the checker started.
func (c *Checker) Readiness() (ready bool, missing []string, pastBudget bool) {
	now := c.o.Now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	grace := c.o.Config.Grace
	for _, ca := range c.required {
		st := c.issuerLocked(ca)
		if st == nil {
			continue
		}
		var bases []string
		usable := false
		for u, s := range st.sources {
			if s.delta || !s.configured {
				continue // a CRL only read from a certificate: its status is in the chains below
			}
			bases = append(bases, u)
			if l := st.crls[u]; l != nil && !now.After(l.nextUpdate.Add(grace)) {
				usable = true
			}
		}
		if len(bases) > 0 && !usable {
			sort.Strings(bases)
			missing = append(missing, fmt.Sprintf("%s: no usable CRL from %s%s", st.label, strings.Join(bases, ", "), c.lastFailureLocked(bases)))
		}
	}
	for _, chain := range c.reqChains {
		for i := 0; i+1 < len(chain); i++ {
			k, ok := keyOfSerial(chain[i].SerialNumber)
			st := c.issuerLocked(chain[i+1])
			if !ok || st == nil {
				continue
			}
			if v := c.decideLocked(st, st.certs[k], chain[i], k, []string{SourceOCSP, SourceCRL}, now); v.status == StatusUnknown {
				detail := ""
				if cs := st.certs[k]; cs != nil && cs.lastErr != "" {
					detail = " (" + cs.lastErr + ")"
				}
				missing = append(missing, fmt.Sprintf("%s: no usable status from %s%s", c.o.Subject(chain[i]), st.label, detail))
			}
		}
	}
	sort.Strings(missing)
	missing = dedupe(missing)
	return len(missing) == 0, missing, now.Sub(c.started) > c.o.Config.StartupBudget
}

// lastFailureLocked says why the last fetch of one of urls failed.
func (c *Checker) lastFailureLocked(urls []string) string {
	for _, u := range urls {
		if f, ok := c.failures["crl|"+u]; ok {
			return fmt.Sprintf(" (last failure %s: %v)", f.at.UTC().Format(time.RFC3339), f.err)
		}
	}
	return ""
}

func dedupe(s []string) []string {
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// Warnings lists what ops should know about revocation now: own
// certificates revoked or without status, CRLs stale, answers served from
// the grace.
func (c *Checker) Warnings() []string {
	now := c.o.Now()
	var out []string
	c.mu.RLock()
	for role, o := range c.own {
		switch o.status {
		case StatusRevoked:
			out = append(out, fmt.Sprintf("revocation: own certificate %s (%s) is REVOKED (source %s): renew it; partners will refuse it", role, c.o.Subject(o.chain[0]), o.source))
		case StatusUnknown:
			out = append(out, fmt.Sprintf("revocation: own certificate %s (%s) has no usable revocation status", role, c.o.Subject(o.chain[0])))
		}
	}
	for _, list := range c.issuers {
		for _, st := range list {
			for u, s := range st.sources {
				l := st.crls[u]
				if s.delta {
					l = st.deltas[u]
				}
				switch {
				case l == nil && s.configured:
					out = append(out, fmt.Sprintf("revocation: CRL %s of %s never fetched%s", u, st.label, c.lastFailureLocked([]string{u})))
				case l != nil && now.After(l.nextUpdate.Add(c.o.Config.Grace)):
					out = append(out, fmt.Sprintf("revocation: CRL %s of %s is stale since %s", u, st.label, l.nextUpdate.UTC().Format(time.RFC3339)))
				case l != nil && now.After(l.nextUpdate):
					out = append(out, fmt.Sprintf("revocation: CRL %s of %s is past its nextUpdate (%s), served within the grace while its refresh fails", u, st.label, l.nextUpdate.UTC().Format(time.RFC3339)))
				}
			}
		}
	}
	c.mu.RUnlock()
	sort.Strings(out)
	return out
}
