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
}

// CRLSnapshot describes a cached CRL.
type CRLSnapshot struct {
	URL        string    `json:"url"`
	Delta      bool      `json:"delta"`
	Number     string    `json:"number"`
	BaseNumber string    `json:"base_number,omitempty"`
	ThisUpdate time.Time `json:"this_update"`
	NextUpdate time.Time `json:"next_update"`
	Entries    int       `json:"entries"`
	Stale      bool      `json:"stale"`
}

// OCSPSnapshot describes a cached OCSP answer.
type OCSPSnapshot struct {
	Serial     string    `json:"serial"`
	Subject    string    `json:"subject"`
	Status     string    `json:"status"`
	URL        string    `json:"url"`
	ThisUpdate time.Time `json:"this_update"`
	NextUpdate time.Time `json:"next_update"`
	Stale      bool      `json:"stale"`
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
			for _, m := range []map[string]*crl{st.crls, st.deltas} {
				for _, l := range m {
					cs := CRLSnapshot{URL: l.url, Delta: l.baseNumber != nil, Number: l.number.String(),
						ThisUpdate: l.thisUpdate, NextUpdate: l.nextUpdate, Entries: len(l.revoked), Stale: now.After(l.nextUpdate)}
					if l.baseNumber != nil {
						cs.BaseNumber = l.baseNumber.String()
					}
					is.CRLs = append(is.CRLs, cs)
				}
			}
			for _, e := range st.ocsp {
				is.OCSP = append(is.OCSP, OCSPSnapshot{Serial: fmt.Sprintf("%x", e.cert.SerialNumber), Subject: c.o.Subject(e.cert),
					Status: e.answer.status.String(), URL: e.url, ThisUpdate: e.answer.thisUpdate, NextUpdate: e.answer.nextUpdate,
					Stale: now.After(e.answer.nextUpdate)})
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
