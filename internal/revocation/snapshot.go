package revocation

import (
	"fmt"
	"sort"
	"time"
)

// Snapshot is the cache state served on the admin endpoint /revocation.
type Snapshot struct {
	Issuers []IssuerSnapshot `json:"issuers"`
	Own     []OwnSnapshot    `json:"own_certificates"`
}

// IssuerSnapshot is what is cached for one certificate authority.
type IssuerSnapshot struct {
	Subject string         `json:"subject"`
	CRLs    []CRLSnapshot  `json:"crls"`
	OCSP    []OCSPSnapshot `json:"ocsp"`
	// FinalRevocations counts the revocations kept whatever later answers
	// say (every reason but certificateHold).
	FinalRevocations int `json:"final_revocations"`
}

// CRLSnapshot describes a cached CRL.
type CRLSnapshot struct {
	URL   string `json:"url"`
	Delta bool   `json:"delta"`
	// Fetched is false for a known URL nothing usable came from yet.
	Fetched    bool      `json:"fetched"`
	LastError  string    `json:"last_error,omitempty"`
	CheckedAt  time.Time `json:"checked_at,omitzero"`
	Number     string    `json:"number,omitempty"`
	BaseNumber string    `json:"base_number,omitempty"`
	ThisUpdate time.Time `json:"this_update,omitzero"`
	NextUpdate time.Time `json:"next_update,omitzero"`
	Entries    int       `json:"entries"`
	Stale      bool      `json:"stale"`
}

// OCSPSnapshot describes a cached OCSP answer.
// A certificate whose responder failed is listed too, with status unknown
// and the error.
type OCSPSnapshot struct {
	Serial     string    `json:"serial"`
	Subject    string    `json:"subject"`
	Status     string    `json:"status"`
	URL        string    `json:"url,omitempty"`
	ThisUpdate time.Time `json:"this_update,omitzero"`
	NextUpdate time.Time `json:"next_update,omitzero"`
	Stale      bool      `json:"stale"`
	LastError  string    `json:"last_error,omitempty"`
}

// OwnSnapshot is the status of one of the establishment's certificates.
type OwnSnapshot struct {
	Role    string `json:"role"`
	Subject string `json:"subject"`
	Status  string `json:"status"`
	Source  string `json:"source"`
}

// Snapshot returns the cache state.
func (c *Checker) Snapshot() Snapshot {
	now := c.o.Now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	var s Snapshot
	for _, list := range c.issuers {
		for _, st := range list {
			is := IssuerSnapshot{Subject: c.o.Subject(st.cert), CRLs: []CRLSnapshot{}, OCSP: []OCSPSnapshot{}}
			is.FinalRevocations = len(st.final)
			for u, src := range st.sources {
				l := st.crls[u]
				if src.delta {
					l = st.deltas[u]
				}
				cs := CRLSnapshot{URL: u, Delta: src.delta, CheckedAt: src.checkedAt}
				if f, ok := c.failures["crl|"+u]; ok {
					cs.LastError = f.err.Error()
				}
				if l != nil {
					cs.Fetched, cs.Number, cs.ThisUpdate, cs.NextUpdate = true, l.number.String(), l.thisUpdate, l.nextUpdate
					cs.Entries, cs.Stale = len(l.revoked), now.After(l.nextUpdate)
					if l.baseNumber != nil {
						cs.BaseNumber = l.baseNumber.String()
					}
				}
				is.CRLs = append(is.CRLs, cs)
			}
			for k, e := range st.certs {
				os := OCSPSnapshot{Serial: fmt.Sprintf("%x", e.cert.SerialNumber), Subject: c.o.Subject(e.cert), Status: StatusUnknown.String(),
					URL: e.ocspURL, LastError: e.lastErr}
				if _, final := st.final[k]; final {
					os.Status = StatusRevoked.String()
				}
				if a := e.ocsp; a != nil {
					if os.Status != StatusRevoked.String() {
						os.Status = a.status.String()
					}
					os.ThisUpdate, os.NextUpdate, os.Stale = a.thisUpdate, a.nextUpdate, now.After(a.nextUpdate)
				}
				if e.ocsp == nil && e.lastErr == "" {
					continue // decided by a CRL, never asked to a responder
				}
				is.OCSP = append(is.OCSP, os)
			}
			sort.Slice(is.CRLs, func(i, j int) bool { return is.CRLs[i].URL < is.CRLs[j].URL })
			sort.Slice(is.OCSP, func(i, j int) bool { return is.OCSP[i].Serial < is.OCSP[j].Serial })
			s.Issuers = append(s.Issuers, is)
		}
	}
	sort.Slice(s.Issuers, func(i, j int) bool { return s.Issuers[i].Subject < s.Issuers[j].Subject })
	for role, o := range c.own {
		s.Own = append(s.Own, OwnSnapshot{Role: role, Subject: c.o.Subject(o.chain[0]), Status: o.status.String(), Source: o.source})
	}
	sort.Slice(s.Own, func(i, j int) bool { return s.Own[i].Role < s.Own[j].Role })
	return s
}
