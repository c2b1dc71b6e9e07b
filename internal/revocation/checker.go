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

// maxCertEntries bounds the memory of the per-certificate cache (OCSP
// answers and the certificates whose status is kept fresh); past it, new
// certificates are checked for the request at hand and not kept.
const maxCertEntries = 50000

// maxLearnedURLs bounds, per authority, the CRL URLs learnt from the
// certificates it issued (each is fetched at every refresh, and is a
// metric label) and the OCSP responder URLs named in metric labels: an
// authority careless enough to let each partner certificate carry URLs of
// its own must not grow the proxy's work or its metrics without end.
const maxLearnedURLs = 8

// otherURL is the metric label of an OCSP responder URL past the bound.
const otherURL = "other"

// Options are what a Checker depends on.
type Options struct {
	Config config.Revocation
	Client *http.Client // nil: a client with Config.FetchTimeout and Transport
	// Transport carries the fetches (through the outbound proxy); nil:
	// directly, whatever the proxy environment variables say.
	Transport http.RoundTripper
	Now       func() time.Time
	Logger    *zap.Logger
	Metrics   *metrics.Metrics
	// Subject formats a certificate's subject for logs and errors.
	Subject func(*x509.Certificate) string
}

// Checker caches and serves revocation status.
type Checker struct {
	o      Options
	client *http.Client
	sf     singleflight.Group
	// life ends every fetch when the checker is closed (shutdown).
	life context.Context
	stop context.CancelFunc
	// epoch changes whenever a cached status may have changed: connections
	// holding a verdict (Binding) evaluate it again then.
	epoch atomic.Uint64
	// sweepPending and sweeping run at most one sweep of the bindings at
	// a time (binding.go).
	sweepPending, sweeping atomic.Bool

	mu        sync.RWMutex
	issuers   map[string][]*issuerState // by string(RawSubject)
	overrides []*config.RevocationIssuer
	own       map[string]*ownCert // by role
	certCount int
	store     *diskStore
	started   time.Time
	required  []*x509.Certificate   // authorities whose CRLs readiness needs
	reqChains [][]*x509.Certificate // chains whose status readiness needs
	failures  map[string]failure
	// closed (under mu) refuses new fetches once Close began; inflight
	// counts the fetches running, which Close waits for.
	closed     bool
	inflight   sync.WaitGroup
	bindingsMu sync.Mutex
	bindings   map[*Binding]struct{}
}

type failure struct {
	at  time.Time
	err error
}

// issuerState is everything known about the certificates one CA issued.
type issuerState struct {
	cert  *x509.Certificate
	label string // subject, as metric label and in logs
	certs map[serialKey]*certState
	crls  map[string]*crl // complete CRLs by URL, kept past their validity for their revocations
	// deltas by URL.
	deltas map[string]*crl
	// sources is every CRL URL known for this authority: configured,
	// read from a certificate it issued, or persisted.
	sources map[string]*crlSource
	// final holds revocations no later answer can undo (every reason but
	// certificateHold), from any source, fresh or not.
	final    map[serialKey]finalRevocation
	override *config.RevocationIssuer
	// ocspLabels are the responder URLs read from certificates that may
	// name metric series (at most maxLearnedURLs); learnt counts the CRL
	// URLs learnt from certificates; capWarned is set once the bound was
	// logged.
	ocspLabels map[string]bool
	learnt     int
	capWarned  bool
}

// certState is one certificate whose status was asked for.
type certState struct {
	cert     *x509.Certificate
	ocsp     *ocspAnswer
	ocspURL  string
	ocspAt   time.Time // last time the responder answered (new or same answer)
	lastErr  string
	lastUsed atomic.Int64 // Unix seconds
	graceLog time.Time    // last grace warning logged
	// crlURLs are the CRL and delta CRL URLs the certificate names, read
	// once (urlsRead) by the refresh that keeps them from being forgotten.
	crlURLs  []string
	urlsRead bool
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
	if o.Config.ForgetAfter <= 0 {
		o.Config.ForgetAfter = config.DefaultForgetAfter
	}
	if o.Subject == nil {
		o.Subject = func(c *x509.Certificate) string { return c.Subject.String() }
	}
	c := &Checker{o: o, client: o.Client, issuers: map[string][]*issuerState{}, overrides: o.Config.Issuers,
		own: map[string]*ownCert{}, failures: map[string]failure{}, bindings: map[*Binding]struct{}{}, started: o.Now()}
	c.life, c.stop = context.WithCancel(context.Background())
	if c.client == nil {
		tr := o.Transport
		if tr == nil {
			direct := http.DefaultTransport.(*http.Transport).Clone()
			direct.Proxy = nil
			tr = direct
		}
		c.client = &http.Client{Timeout: o.Config.FetchTimeout, CheckRedirect: noRedirect, Transport: tr}
	}
	if o.Config.CacheDir != "" {
		s, err := openDiskStore(o.Config.CacheDir, o.Config.FetchTimeout)
		if err != nil {
			return nil, err
		}
		c.store = s
	}
	return c, nil
}

// noRedirect keeps fetches on the URL configured or read from a verified
// certificate: a redirect could point anywhere, file:// aside.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// closeWait bounds how long Close waits for the fetches it cancelled:
// they run under the checker's life and end at once; the bound only keeps
// a fetch that would not from eating the shutdown's audit reserve.
const closeWait = time.Second

// Close ends every fetch in progress and waits (within closeWait) until
// they have: none logs or counts after it returns. Checks then answer
// from the cache.
func (c *Checker) Close() {
	c.Cancel()
	ended := make(chan struct{})
	go func() { c.inflight.Wait(); close(ended) }()
	t := time.NewTimer(closeWait)
	select {
	case <-ended:
	case <-t.C:
		c.o.Logger.Warn("revocation fetches still running after shutdown", zap.Duration("waited", closeWait))
	}
	t.Stop()
}

// Cancel ends every fetch in progress without waiting for them: for a
// shutdown whose time is already up. Checks then answer from the cache.
func (c *Checker) Cancel() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.stop()
	c.client.CloseIdleConnections()
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
		v, detail := c.status(ctx, cert, issuer, p.Sources)
		c.o.Metrics.RevocationChecks.WithLabelValues(v.status.String(), v.source).Inc()
		switch {
		case v.status == StatusRevoked:
			return &Error{Status: v.status, Source: v.source, Subject: c.o.Subject(cert), Detail: detail}
		case v.status == StatusUnknown && p.Hard:
			return &Error{Status: v.status, Source: SourceNone, Subject: c.o.Subject(cert), Detail: detail}
		case v.status == StatusUnknown:
			if ce := c.o.Logger.Check(zap.WarnLevel, "revocation status unknown, allowed by soft policy"); ce != nil {
				ce.Write(zap.String("route", p.Route), zap.String("subject", c.o.Subject(cert)), zap.String("detail", detail))
			}
		}
	}
	return nil
}

// status answers from the cache, or fetches when nothing usable is cached.
func (c *Checker) status(ctx context.Context, cert, issuer *x509.Certificate, sources []string) (verdict, string) {
	k, ok := keyOfSerial(cert.SerialNumber)
	if !ok {
		return verdict{status: StatusUnknown, source: SourceNone}, "serial number too long"
	}
	st := c.issuer(issuer)
	c.track(st, cert, k)
	if v := c.cached(st, cert, k, sources, c.o.Now()); v.status != StatusUnknown {
		return v, "cached answer"
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
		if v := c.cached(st, cert, k, sources, c.o.Now()); v.status != StatusUnknown {
			return v, "fetched"
		}
	}
	if len(details) == 0 {
		details = append(details, "no source answered for this certificate")
	}
	return verdict{status: StatusUnknown, source: SourceNone}, strings.Join(details, "; ")
}

// cached is the request path: map lookups under a read lock, no
// allocation, no network. Grace uses are counted (and logged at most once
// per check interval per certificate).
func (c *Checker) cached(st *issuerState, cert *x509.Certificate, k serialKey, sources []string, now time.Time) verdict {
	c.mu.RLock()
	cs := st.certs[k]
	v := c.decideLocked(st, cs, cert, k, sources, now)
	c.mu.RUnlock()
	if cs != nil {
		cs.lastUsed.Store(now.Unix())
	}
	if v.grace {
		c.o.Metrics.RevocationGraceUses.WithLabelValues(v.source, st.label).Inc()
		c.logGrace(st, cs, cert, v, now)
	}
	return v
}

func (c *Checker) logGrace(st *issuerState, cs *certState, cert *x509.Certificate, v verdict, now time.Time) {
	if cs != nil {
		c.mu.Lock()
		recent := now.Sub(cs.graceLog) < c.o.Config.CheckInterval
		if !recent {
			cs.graceLog = now
		}
		c.mu.Unlock()
		if recent {
			return
		}
	}
	c.o.Logger.Warn("revocation status served from an answer past its nextUpdate, within the grace, while its refresh fails",
		zap.String("issuer", st.label), zap.String("subject", c.o.Subject(cert)), zap.String("source", v.source),
		zap.Time("usable_until", v.until))
}

// track remembers cert as in use, so that its status is kept fresh.
func (c *Checker) track(st *issuerState, cert *x509.Certificate, k serialKey) {
	c.mu.RLock()
	_, ok := st.certs[k]
	c.mu.RUnlock()
	if ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := st.certs[k]; ok || c.certCount >= maxCertEntries {
		return
	}
	cs := &certState{cert: cert}
	cs.lastUsed.Store(c.o.Now().Unix())
	st.certs[k] = cs
	c.certCount++
}

// inUseLocked marks cert as in use at now, tracking it again if the
// cache dropped it; c.mu held.
func (c *Checker) inUseLocked(st *issuerState, cert *x509.Certificate, k serialKey, now time.Time) {
	cs := st.certs[k]
	if cs == nil {
		if c.certCount >= maxCertEntries {
			return
		}
		cs = &certState{cert: cert}
		st.certs[k] = cs
		c.certCount++
	}
	cs.lastUsed.Store(now.Unix())
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
// overrides. An issuer is only ever created for a certificate of a chain
// that verified against the trust bundles, or for a configured authority:
// metric labels derived from it stay bounded.
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
	st = &issuerState{cert: ca, label: c.o.Subject(ca), certs: map[serialKey]*certState{}, crls: map[string]*crl{}, deltas: map[string]*crl{},
		sources: map[string]*crlSource{}, final: map[serialKey]finalRevocation{}, override: c.overrideFor(ca), ocspLabels: map[string]bool{}}
	if st.override != nil {
		for _, u := range st.override.CRLURLs {
			c.addSourceLocked(st, u, false, true)
		}
		for _, u := range st.override.DeltaCRLURLs {
			c.addSourceLocked(st, u, true, true)
		}
	}
	c.o.Metrics.RevocationOCSPNextUpdate.WithLabelValues(st.label).Set(0)
	c.o.Metrics.RevocationStatusAge.WithLabelValues(st.label).Set(0)
	c.issuers[string(ca.RawSubject)] = append(c.issuers[string(ca.RawSubject)], st)
	return st
}

// overrideFor finds the configured issuer naming ca, in either DN order.
func (c *Checker) overrideFor(ca *x509.Certificate) *config.RevocationIssuer {
	for _, is := range c.overrides {
		if config.DNMatches(is.Subject, ca.RawSubject) {
			return is
		}
	}
	return nil
}

// addSourceLocked records a CRL URL of st; its metric series exist from
// then on (nextUpdate 0 until a CRL is cached), so that "never fetched" is
// visible. A URL that is not configured is kept only within
// maxLearnedURLs (nil past it).
func (c *Checker) addSourceLocked(st *issuerState, u string, delta, configured bool) *crlSource {
	if s := st.sources[u]; s != nil {
		s.configured = s.configured || configured
		return s
	}
	if !configured {
		if st.learnt >= maxLearnedURLs {
			c.warnCapLocked(st, u)
			return nil
		}
		st.learnt++
	}
	s := &crlSource{url: u, delta: delta, configured: configured, seenAt: c.o.Now()}
	st.sources[u] = s
	c.o.Metrics.RevocationNextUpdate.WithLabelValues(SourceCRL, u).Add(0)
	c.o.Metrics.RevocationThisUpdate.WithLabelValues(SourceCRL, u).Add(0)
	return s
}

// warnCapLocked logs, once per authority, that its certificates name more
// URLs than are followed; c.mu held.
func (c *Checker) warnCapLocked(st *issuerState, u string) {
	if st.capWarned {
		return
	}
	st.capWarned = true
	c.o.Logger.Warn("the certificates of this authority name more revocation URLs than are followed: configure its URLs in revocation.issuers",
		zap.String("issuer", st.label), zap.Int("max_urls", maxLearnedURLs), zap.String("url_not_followed", u))
}

// urlLabel is the metric label of URL u of st: a configured or CRL source
// URL as is (those are bounded), an OCSP responder URL read from a
// certificate only within maxLearnedURLs per authority.
func (c *Checker) urlLabel(st *issuerState, source, u string) string {
	if source != SourceOCSP || st.override != nil && st.override.OCSPURL == u {
		return u
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.ocspLabels[u] {
		return u
	}
	if len(st.ocspLabels) >= maxLearnedURLs {
		c.warnCapLocked(st, u)
		return otherURL
	}
	st.ocspLabels[u] = true
	return u
}
