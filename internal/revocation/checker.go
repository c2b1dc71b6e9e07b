package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
)

// maxOCSPEntries bounds the memory of the OCSP cache; past it, new answers
// are used for the request at hand and not kept.
const maxOCSPEntries = 50000

// Options are what a Checker depends on.
type Options struct {
	Config  config.Revocation
	Client  *http.Client // nil: a client with Config.FetchTimeout
	Now     func() time.Time
	Logger  *zap.Logger
	Metrics *metrics.Metrics
	// Subject formats a certificate's subject for logs and errors.
	Subject func(*x509.Certificate) string
}

// Checker caches and serves revocation status.
type Checker struct {
	o      Options
	client *http.Client
	sf     singleflight.Group

	mu        sync.RWMutex
	issuers   map[string][]*issuerState // by string(RawSubject)
	overrides map[string]*config.RevocationIssuer
	own       map[string]*ownCert // by role
	ocspCount int
	store     *diskStore
	// failures remembers, per fetch, the last failure of a fetch a request
	// waited for, so that requests do not each wait for a dead source
	// again; background refreshes ignore it.
	failures map[string]failure
}

type failure struct {
	at  time.Time
	err error
}

// issuerState is everything known about the certificates one CA issued.
type issuerState struct {
	cert      *x509.Certificate
	ocsp      map[serialKey]*ocspEntry
	crls      map[string]*crl // complete CRLs by URL
	deltas    map[string]*crl // delta CRLs by URL
	crlURLs   map[string]bool // every base URL learned or configured
	deltaURLs map[string]bool
	override  *config.RevocationIssuer
}

type ocspEntry struct {
	answer   *ocspAnswer
	cert     *x509.Certificate
	url      string
	lastUsed atomic.Int64 // Unix seconds
}

type ownCert struct {
	chain  []*x509.Certificate
	status Status
	source string
}

// New builds a Checker. Persisted answers are loaded by Prefetch, once the
// authorities they belong to are known.
func New(o Options) (*Checker, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Subject == nil {
		o.Subject = func(c *x509.Certificate) string { return c.Subject.String() }
	}
	c := &Checker{o: o, client: o.Client, issuers: map[string][]*issuerState{}, overrides: map[string]*config.RevocationIssuer{},
		own: map[string]*ownCert{}, failures: map[string]failure{}}
	if c.client == nil {
		c.client = &http.Client{Timeout: o.Config.FetchTimeout}
	}
	for _, is := range o.Config.Issuers {
		c.overrides[is.Subject] = is
	}
	if o.Config.CacheDir != "" {
		s, err := openDiskStore(o.Config.CacheDir)
		if err != nil {
			return nil, err
		}
		c.store = s
	}
	return c, nil
}

// Policy is a route's use of the checker.
type Policy struct {
	// Hard refuses a certificate whose status is unknown.
	Hard    bool
	Sources []string // ocsp, crl, in order
	Route   string   // for logs
}

// RouteChecker binds a policy to the checker; it satisfies the trust
// package's chain-check hook.
type RouteChecker struct {
	c *Checker
	p Policy
}

// ForRoute returns the checker as a route sees it.
func (c *Checker) ForRoute(p Policy) *RouteChecker { return &RouteChecker{c: c, p: p} }

// CheckChain checks every certificate of a verified chain (leaf first, root
// last) but the root. Fetches a first contact needs are bounded together by
// twice the fetch timeout, whatever the number of sources and certificates.
func (r *RouteChecker) CheckChain(ctx context.Context, chain []*x509.Certificate) error {
	ctx, cancel := context.WithTimeout(ctx, 2*r.c.o.Config.FetchTimeout)
	defer cancel()
	return r.c.Check(ctx, chain, r.p)
}

// Check checks chain under policy p: a revoked certificate is always
// refused; an unknown status is refused under a hard policy.
func (c *Checker) Check(ctx context.Context, chain []*x509.Certificate, p Policy) error {
	for i := 0; i+1 < len(chain); i++ {
		cert, issuer := chain[i], chain[i+1]
		st, src, detail := c.status(ctx, cert, issuer, p.Sources)
		c.o.Metrics.RevocationChecks.WithLabelValues(st.String(), src).Inc()
		switch {
		case st == StatusRevoked:
			return &Error{Status: st, Source: src, Subject: c.o.Subject(cert), Detail: detail}
		case st == StatusUnknown && p.Hard:
			return &Error{Status: st, Source: SourceNone, Subject: c.o.Subject(cert), Detail: detail}
		case st == StatusUnknown:
			if ce := c.o.Logger.Check(zap.WarnLevel, "revocation status unknown, allowed by soft policy"); ce != nil {
				ce.Write(zap.String("route", p.Route), zap.String("subject", c.o.Subject(cert)), zap.String("detail", detail))
			}
		}
	}
	return nil
}

// status answers from the cache, or fetches when nothing usable is cached.
func (c *Checker) status(ctx context.Context, cert, issuer *x509.Certificate, sources []string) (Status, string, string) {
	k, ok := keyOfSerial(cert.SerialNumber)
	if !ok {
		return StatusUnknown, SourceNone, "serial number too long"
	}
	now := c.o.Now()
	if st, src := c.cached(cert, issuer, k, sources, now); st != StatusUnknown {
		return st, src, "cached answer"
	}
	// First contact, or everything cached went stale past the grace: the
	// request waits for a bounded fetch.
	var details []string
	for _, src := range sources {
		var err error
		if src == SourceOCSP {
			err = c.fetchOCSP(ctx, cert, issuer, true)
		} else {
			err = c.fetchCRLs(ctx, cert, issuer, true)
		}
		if err != nil {
			details = append(details, src+": "+err.Error())
		}
		if st, s := c.cached(cert, issuer, k, []string{src}, c.o.Now()); st != StatusUnknown {
			return st, s, "fetched"
		}
	}
	if len(details) == 0 {
		details = append(details, "no source answered for this certificate")
	}
	return StatusUnknown, SourceNone, strings.Join(details, "; ")
}

// cached is the request path: map lookups under a read lock, no
// allocation, no network.
func (c *Checker) cached(cert, issuer *x509.Certificate, k serialKey, sources []string, now time.Time) (Status, string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	st := c.issuerLocked(issuer)
	if st == nil {
		return StatusUnknown, SourceNone
	}
	grace := c.o.Config.Grace
	for _, src := range sources {
		switch src {
		case SourceOCSP:
			e := st.ocsp[k]
			if e == nil || now.After(e.answer.nextUpdate.Add(grace)) || e.answer.status == StatusUnknown {
				continue
			}
			e.lastUsed.Store(now.Unix())
			return e.answer.status, SourceOCSP
		case SourceCRL:
			result := StatusUnknown
			for _, base := range st.crls {
				if !base.covers(cert) || now.After(base.nextUpdate.Add(grace)) {
					continue
				}
				var delta *crl
				for _, d := range st.deltas {
					if d.appliesTo(base) && !now.After(d.nextUpdate.Add(grace)) && (delta == nil || d.number.Cmp(delta.number) > 0) {
						delta = d
					}
				}
				if s := lookupCRL(base, delta, k); s == StatusRevoked {
					return StatusRevoked, SourceCRL
				}
				result = StatusGood
			}
			if result != StatusUnknown {
				return result, SourceCRL
			}
		}
	}
	return StatusUnknown, SourceNone
}

// issuerLocked finds the state of issuer (same name and key); c.mu held.
func (c *Checker) issuerLocked(issuer *x509.Certificate) *issuerState {
	for _, st := range c.issuers[string(issuer.RawSubject)] {
		if bytes.Equal(st.cert.RawSubjectPublicKeyInfo, issuer.RawSubjectPublicKeyInfo) {
			return st
		}
	}
	return nil
}

// issuer returns (creating it) the state of a CA, with its configured
// overrides.
func (c *Checker) issuer(ca *x509.Certificate) *issuerState {
	c.mu.RLock()
	st := c.issuerLocked(ca)
	c.mu.RUnlock()
	if st != nil {
		return st
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.issuerLocked(ca); st != nil {
		return st
	}
	st = &issuerState{cert: ca, ocsp: map[serialKey]*ocspEntry{}, crls: map[string]*crl{}, deltas: map[string]*crl{},
		crlURLs: map[string]bool{}, deltaURLs: map[string]bool{}, override: c.overrides[c.o.Subject(ca)]}
	if st.override != nil {
		for _, u := range st.override.CRLURLs {
			st.crlURLs[u] = true
		}
		for _, u := range st.override.DeltaCRLURLs {
			st.deltaURLs[u] = true
		}
	}
	c.issuers[string(ca.RawSubject)] = append(c.issuers[string(ca.RawSubject)], st)
	return st
}
