package app

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/material"
	"github.com/roc-proxy/roc-proxy/internal/tokenroute"

	"github.com/roc-proxy/roc-proxy/internal/expiry"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/egress"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/proxy"
	"github.com/roc-proxy/roc-proxy/internal/revocation"
	"github.com/roc-proxy/roc-proxy/internal/saml"
	"github.com/roc-proxy/roc-proxy/internal/trust"
	"github.com/roc-proxy/roc-proxy/internal/version"
)

// Deps are what Build takes from outside the configuration.
type Deps struct {
	Logger   *zap.Logger
	Registry *prometheus.Registry
	Now      func() time.Time
	Getenv   func(string) string
	// AuditOpenFile, when set, opens the audit files (tests inject a full
	// disk with it).
	AuditOpenFile func(path string) (audit.File, error)
	// ConfigPath is the configuration file (SIGHUP reads it again). A
	// trust bundle's change does not read it: the running configuration's
	// bundles are reloaded.
	ConfigPath string
	// ACMERetry is the first wait before asking the ACME authority again
	// when start-up found no certificate (default 5 s, doubling up to 5 min).
	ACMERetry time.Duration
	// Stdout receives the audit records shipped as JSON lines
	// (audit.ship.stdout); default os.Stdout.
	Stdout io.Writer
}

// Proxy is a fully wired roc-proxy, ready to serve.
type Proxy struct {
	cfg        *config.Config
	log        *zap.Logger
	registry   *prometheus.Registry
	metrics    *metrics.Metrics
	handler    atomic.Pointer[proxy.Handler] // swapped by a configuration reload
	transports []*proxy.RenewableUpstream    // owned by the reload goroutine
	auth       *mtls.Identity
	sign       *mtls.Identity

	expiry     *expiry.Watch
	revocation *revocation.Checker
	// revocationWarm latches once readiness saw every required status.
	revocationWarm atomic.Bool
	store          *trust.Store
	audit          *audit.Log // nil when no route signs
	deps           Deps
	// egress is the global outbound_proxy (nil: directly), loaded at
	// start; routes that name none use it.
	egress *egress.Proxy

	// The current material, swapped on renewal; handshakes and signatures
	// take it when they start.
	authCert  atomic.Pointer[tls.Certificate]
	signer    atomic.Pointer[saml.Signer]
	sihCert   atomic.Pointer[tls.Certificate] // listen.tls
	sihTLS    *tls.Config                     // listen.tls with files (ACME's is made when serving)
	clientCAs *x509.CertPool
	digests   map[string][32]byte // source -> digest of its files
	// configReload takes configuration reloads (SIGHUP) to the reload
	// goroutine, which owns transports, store and cfg.
	configReload chan configReloadRequest
	// budget bounds the bodies in flight, across reloads.
	budget *proxy.BodyBudget
	// refusedFile and refusedBundles say what on disk a reload refused
	// (roc_proxy_config_refused is 1 while either is true); owned by the
	// reload goroutine.
	refusedFile, refusedBundles bool

	// checkpointKey signs the audit chain's open record and checkpoints:
	// ORG_SIGN (following its renewals), or audit.checkpoint_key
	// (following its own files).
	checkpointKey atomic.Pointer[mtls.Identity]
}

// Build wires a Proxy from a validated configuration.
func Build(cfg *config.Config, d Deps) (_ *Proxy, err error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	mat, err := material.Load(cfg, material.Options{Now: d.Now, Getenv: d.Getenv})
	if err != nil {
		return nil, err
	}
	m, err := metrics.New(d.Registry, metrics.BuildInfo{Version: version.Release(), Revision: version.Revision()})
	if err != nil {
		return nil, err
	}
	global, fetchProxy, err := egress.LoadGlobal(cfg, d.Getenv)
	if err != nil {
		return nil, err
	}
	checker, err := revocation.New(revocation.Options{
		Config: cfg.Revocation, Now: d.Now, Logger: d.Logger.Named("revocation"), Metrics: m, Subject: trust.SubjectDN,
		Transport: egress.FetchTransport(fetchProxy, cfg.Revocation.FetchTimeout, fetchObserver(m, fetchProxy)),
	})
	if err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, log: d.Logger, registry: d.Registry, metrics: m, auth: mat.Auth, sign: mat.Sign, revocation: checker, store: mat.Store,
		deps: d, digests: map[string][32]byte{}, configReload: make(chan configReloadRequest), egress: global,
		expiry: expiry.New(m.CertificateNotAfter, d.Logger)}
	p.budget = proxy.NewBodyBudget(cfg.Server.MaxBodyMemory, m)
	p.authCert.Store(&mat.Auth.Certificate)
	p.digests["identity.auth"] = sourceDigest(cfg.Identity.Auth)
	p.digests["trust_bundles"] = bundlesDigest(cfg.TrustBundles)
	p.clientCAs = mat.ClientCAs
	if mat.ListenCert != nil {
		p.sihCert.Store(mat.ListenCert)
		p.digests["listen.tls"] = sourceDigest(listenSource(cfg.Listen.TLS))
		p.sihTLS = mtls.ListenerConfig(mtls.ListenerOptions{Certificate: p.sihCert.Load, ClientCAs: mat.ClientCAs})
		if mat.ListenCert.Leaf != nil {
			p.expiry.Certificate("listen.tls", mat.ListenCert.Leaf, d.Now())
		}
	}
	p.expiry.Certificate("identity.auth", mat.Auth.Leaf, d.Now())
	if mat.Sign != nil {
		p.expiry.Certificate("identity.sign", mat.Sign.Leaf, d.Now())
		p.signer.Store(saml.NewSigner(mat.Sign.Signer(), mat.Sign.Leaf))
		p.digests["identity.sign"] = sourceDigest(cfg.Identity.Sign)
	}
	if cfg.Audit.CheckpointKey != nil {
		p.digests["audit.checkpoint_key"] = sourceDigest(cfg.Audit.CheckpointKey)
	}
	if cfg.Audit.Dir != "" && mat.Sign != nil {
		p.checkpointKey.Store(mat.Checkpoint)
		var sinks []audit.Sink
		if sinks, err = auditSinks(&cfg.Audit.Ship, chainID(cfg.Audit.ChainID, d.Getenv), d); err != nil {
			return nil, err
		}
		p.audit, err = audit.Open(audit.Options{
			Dir: cfg.Audit.Dir, Chain: chainID(cfg.Audit.ChainID, d.Getenv),
			MaxFileBytes: cfg.Audit.MaxFileBytes, MaxFileAge: cfg.Audit.MaxFileAge,
			CheckpointEvery: cfg.Audit.CheckpointEvery, CheckpointInterval: cfg.Audit.CheckpointInterval,
			Signer: p.checkpointSigner, Now: d.Now, Logger: d.Logger.Named("audit"), Metrics: m,
			OpenFile: d.AuditOpenFile, NoSync: cfg.Audit.FSync != nil && !*cfg.Audit.FSync, Sinks: sinks,
		})
		if err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				p.audit.Close()
			}
		}()
	}
	p.expiry.Bundles(mat.Store, d.Now())
	if cfg.Audit.CheckpointKey != nil && mat.Checkpoint != nil && mat.Checkpoint.Leaf != nil {
		// Exported from the start like ORG_SIGN's, not only after a renewal.
		p.expiry.Certificate("audit.checkpoint_key", mat.Checkpoint.Leaf, d.Now())
	}

	h, transports, err := p.buildHandler(cfg, mat.Store)
	if err != nil {
		return nil, err
	}
	p.handler.Store(h)
	p.transports = transports
	if err := p.zeroSeries(cfg); err != nil {
		return nil, err
	}
	return p, nil
}

// auditSinks builds the shipping sinks of audit.ship.
func auditSinks(ship *config.AuditShip, chain string, d Deps) ([]audit.Sink, error) {
	var sinks []audit.Sink
	if ship.Stdout {
		w := d.Stdout
		if w == nil {
			w = os.Stdout
		}
		sinks = append(sinks, &audit.StdoutSink{W: w})
	}
	if sl := ship.Syslog; sl != nil {
		o := audit.SyslogOptions{Address: sl.Address, Hostname: sl.Hostname, AppName: sl.AppName, ProcID: chain, Timeout: sl.Timeout,
			Facility: slices.Index(config.SyslogFacilities, sl.Facility)}
		if o.Hostname == "" {
			getenv := d.Getenv
			if getenv == nil {
				getenv = os.Getenv
			}
			if o.Hostname = getenv("POD_NAME"); o.Hostname == "" {
				o.Hostname, _ = os.Hostname()
			}
		}
		if sl.Transport == "tls" {
			roots, err := trust.ReadCertificates(sl.CA)
			if err != nil {
				return nil, fmt.Errorf("audit.ship.syslog.ca: %w", err)
			}
			pool := x509.NewCertPool()
			for _, c := range roots {
				pool.AddCert(c)
			}
			serverName := sl.ServerName
			if serverName == "" {
				serverName, _, _ = net.SplitHostPort(sl.Address)
			}
			co := mtls.CollectorOptions{ServerName: serverName, RootCAs: pool, Now: d.Now}
			if sl.Cert != "" {
				cert, err := tls.LoadX509KeyPair(sl.Cert, sl.Key)
				if err != nil {
					return nil, fmt.Errorf("audit.ship.syslog.cert: %s with %s: %w", sl.Cert, sl.Key, err)
				}
				co.ClientCertificate = &cert
			}
			o.TLS = mtls.CollectorConfig(co)
		}
		sinks = append(sinks, audit.NewSyslogSink(o))
	}
	return sinks, nil
}

// checkpointSigner is the audit log's signer: the current checkpoint key.
func (p *Proxy) checkpointSigner() (crypto.Signer, *x509.Certificate) {
	id := p.checkpointKey.Load()
	return id.Signer(), id.Leaf
}

// buildHandler builds the routes of cfg, with the trust bundles of store,
// around the proxy's current identity, signer, revocation checker and audit
// log. Build uses it, and a configuration reload.
func (p *Proxy) buildHandler(cfg *config.Config, store *trust.Store) (*proxy.Handler, []*proxy.RenewableUpstream, error) {
	d, m, checker := p.deps, p.metrics, p.revocation
	clientCert := p.authCert.Load
	var transports []*proxy.RenewableUpstream
	var specs []proxy.RouteSpec
	var err error
	for i, r := range cfg.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		var upstream *url.URL
		serverName := r.ServerName // dynamic routes: each partner's own name
		if r.Dynamic == nil {
			if upstream, err = url.Parse(r.Upstream); err != nil {
				return nil, nil, fmt.Errorf("%s.upstream: %w", path, err)
			}
			if serverName == "" {
				serverName = upstream.Hostname()
			}
		}
		var pins [][]byte
		for _, pin := range r.SPKIPins {
			b, err := config.ParsePin(pin)
			if err != nil {
				return nil, nil, fmt.Errorf("%s.spki_pins: %w", path, err)
			}
			pins = append(pins, b)
		}
		vo := trust.VerifierOptions{Bundles: r.Trust, ServerName: serverName, Pins: pins, Now: d.Now}
		var rc *revocation.RouteChecker
		if r.Revocation.Policy != "off" {
			rc = checker.ForRoute(revocation.Policy{Hard: r.Revocation.Policy == "hard", Sources: r.Revocation.Sources, Route: r.Name})
			vo.Revocation = rc
			// Each pooled connection keeps its chain's standing check:
			// asked before every request, closing the connection once the
			// partner is known revoked.
			vo.Watch = func(chain []*x509.Certificate, onRevoked func()) trust.ChainGuard {
				return rc.WatchChain(chain, onRevoked)
			}
		}
		verifier, err := store.NewVerifier(vo)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.trust: %w", path, err)
		}
		timeouts := r.Timeouts
		dial, err := p.routeDial(r, path, upstream)
		if err != nil {
			return nil, nil, err
		}
		tr := proxy.NewRenewableUpstream(func() *proxy.Upstream {
			return proxy.NewUpstream(proxy.UpstreamOptions{
				TLS: mtls.ClientConfig(mtls.ClientOptions{
					ServerName: serverName, VerifyConnection: verifier.VerifyConnection,
					ClientCertificate: clientCert, Now: d.Now,
				}),
				ConnectTimeout:        timeouts.Connect,
				TLSHandshakeTimeout:   timeouts.TLSHandshake,
				ResponseHeaderTimeout: timeouts.ResponseHeader,
				VerifyPeer:            peerVerifier(verifier, vo.Watch != nil),
				DialContext:           dial,
			})
		}, func() bool { return checker.OwnStatus("ORG_AUTH_CLI") == revocation.StatusRevoked })
		transports = append(transports, tr)
		spec := proxy.RouteSpec{
			Name: r.Name, PathPrefix: r.PathPrefix, StripPrefix: r.Strip(), Upstream: upstream,
			MaxBodyBytes: r.MaxBodyBytes, MaxResponseBytes: r.MaxResponseBytes,
			TotalTimeout: r.Timeouts.Total, Transport: tr, AllowedClients: r.AllowedClients, Methods: r.Methods,
		}
		if r.Dynamic != nil {
			spec.Dynamic = &proxy.DynamicSpec{Hosts: r.Dynamic.Hosts, Ports: r.Dynamic.Ports}
		}
		if rs := r.ResponseSignature; rs.Policy != "off" {
			roots, inter := store.Pools(rs.Trust...)
			spec.Enforce = rs.Policy == "enforce"
			for _, result := range []string{"valid", "invalid", "absent"} {
				m.ResponseSignatures.WithLabelValues(r.Name, result) // at 0: see zeroSeries
			}
			policy := &saml.ResponsePolicy{Roots: roots, Intermediates: inter, AllowSHA1: rs.AllowSHA1, Signers: rs.Signers,
				MaxNodes: rs.MaxNodes, MaxDepth: rs.MaxDepth, Now: d.Now}
			if rc != nil {
				policy.Revocation = rc // the signer's chain, under the route's revocation policy
			}
			for _, q := range rs.SignedElement {
				name, err := saml.ParseClark(q)
				if err != nil {
					return nil, nil, fmt.Errorf("%s.response_signature.signed_element: %w", path, err)
				}
				policy.SignedElement = append(policy.SignedElement, name)
			}
			spec.ResponseSignatures = policy.Verify
		}
		if r.Token != nil {
			// Loaded at start only (a reload that adds them is refused):
			// never build a signing route without them.
			if p.signer.Load() == nil || p.audit == nil {
				return nil, nil, fmt.Errorf("%s.token: the signing certificate (identity.sign) and the audit log (audit.dir) are loaded at start only: restart roc-proxy to add a signing route", path)
			}
			spec.TokenHeaders = []string{proxy.DefaultTokenHeader}
			if r.Token.HTTPHeader != "" {
				spec.TokenHeaders = append(spec.TokenHeaders, r.Token.HTTPHeader)
			}
			spec.Token = tokenroute.New(tokenroute.Options{
				Route:    r.Name,
				Injector: saml.NewInjector(saml.InjectorOptions{Route: r.Name, Token: r.Token, Signer: p.signer.Load, Now: d.Now, Metrics: m}),
				Status:   checker, RefuseRevokedSigner: cfg.Revocation.RefuseRevokedSigner == nil || *cfg.Revocation.RefuseRevokedSigner,
				Audit: p.audit, StoreAssertion: cfg.Audit.StoreAssertion, PatientID: cfg.Audit.PatientID,
			})
		}
		specs = append(specs, spec)
	}
	var allow []netip.Prefix
	for _, c := range cfg.Listen.AllowCIDRs {
		allow = append(allow, netip.MustParsePrefix(c)) // validated by config
	}
	h, err := proxy.New(proxy.Options{Routes: specs, Logger: d.Logger.Named("proxy"), Metrics: m, AllowCIDRs: allow, ClientCAs: p.clientCAs, Now: d.Now,
		Budget: p.budget, WriteTimeout: p.cfg.Server.WriteTimeout})
	if err != nil {
		return nil, nil, err
	}
	return h, transports, nil
}

// peerVerifier is the verifier as the transport's per-connection hook, or
// nil when the route checks no revocation (the transport then verifies
// with TLS.VerifyConnection alone).
func peerVerifier(v *trust.Verifier, watched bool) func(context.Context, tls.ConnectionState, func()) (proxy.PeerGuard, error) {
	if !watched {
		return nil
	}
	return func(ctx context.Context, cs tls.ConnectionState, closeConn func()) (proxy.PeerGuard, error) {
		g, err := v.VerifyConnectionGuard(ctx, cs, closeConn)
		if g == nil {
			return nil, err
		}
		return g, err
	}
}

// prefetchRevocation warms the revocation cache: every authority of the
// trust bundles (and its own status, from its issuer), and the
// establishment's certificates, which are then watched.
func (p *Proxy) prefetchRevocation(ctx context.Context) {
	var cas []*x509.Certificate
	var chains [][]*x509.Certificate
	for _, name := range p.store.Names() {
		b := p.store.Bundle(name)
		cas = append(cas, b.Anchors...)
		cas = append(cas, b.Intermediates...)
		anchors, inter := p.store.Pools(name)
		for _, c := range b.Intermediates {
			if vc, err := c.Verify(x509.VerifyOptions{Roots: anchors, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
				chains = append(chains, vc[0])
			}
		}
	}
	cas = append(cas, p.auth.Chain[1:]...)
	p.revocation.Require(p.requiredAuthorities())
	p.revocation.Prefetch(ctx, cas, chains)
	p.revocation.Watch(ctx, "ORG_AUTH_CLI", p.auth.Chain)
	if p.sign != nil {
		p.revocation.Watch(ctx, "ORG_SIGN", p.sign.Chain)
	}
}

// requiredAuthorities are what readiness waits for: the authorities of the
// trust bundles that hard routes use, for TLS and for their partner's
// signed answers (their CRLs, when known), and the chains of their
// intermediates (each one's status from its issuer).
func (p *Proxy) requiredAuthorities() ([]*x509.Certificate, [][]*x509.Certificate) {
	hard := map[string]bool{}
	for _, r := range p.cfg.Routes {
		if r.Revocation.Policy == "hard" {
			for _, b := range r.Trust {
				hard[b] = true
			}
			if r.ResponseSignature.Policy != "off" {
				for _, b := range r.ResponseSignature.Trust {
					hard[b] = true
				}
			}
		}
	}
	var cas []*x509.Certificate
	var chains [][]*x509.Certificate
	for _, name := range p.store.Names() {
		if !hard[name] {
			continue
		}
		b := p.store.Bundle(name)
		cas = append(append(cas, b.Anchors...), b.Intermediates...)
		anchors, inter := p.store.Pools(name)
		for _, c := range b.Intermediates {
			if vc, err := c.Verify(x509.VerifyOptions{Roots: anchors, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
				chains = append(chains, vc[0])
			}
		}
	}
	return cas, chains
}

// chainID names this replica's audit chain: configured, or the pod name,
// or the host name.
func chainID(configured string, getenv func(string) string) string {
	if configured != "" {
		return configured
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	name := getenv("POD_NAME")
	if name == "" {
		name, _ = os.Hostname()
	}
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '-'
	}, name)
	if clean == "" {
		return "roc-proxy"
	}
	return clean
}

// ServeHTTP serves the SIH with the current handler (a configuration
// reload swaps it; requests in flight finish on the one they started on).
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.handler.Load().ServeHTTP(w, r) }

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

// zeroSeries makes the failure series ops alert on exist at 0 from the
// start. Prometheus sees a counter series that appears at 1 with no
// earlier sample: increase() over it is 0, and a first audit failure or
// refused reload, then recovery, would never alert. Series of what is not
// in use are not made (an audit health of 0 without an audit log would be
// a permanent false alarm).
func (p *Proxy) zeroSeries(cfg *config.Config) error {
	m := p.metrics
	sources := []string{"identity.auth"}
	if cfg.Identity.Sign != nil {
		sources = append(sources, "identity.sign")
	}
	if cfg.Audit.CheckpointKey != nil {
		sources = append(sources, "audit.checkpoint_key")
	}
	if t := cfg.Listen.TLS; t != nil && t.ACME == nil {
		sources = append(sources, "listen.tls")
	} else if t != nil {
		sources = append(sources, "listen.tls.acme")
	}
	for _, source := range sources {
		for _, result := range []string{"ok", "error"} {
			m.CertificateReloads.WithLabelValues(source, result)
		}
		m.CertificateRefused.WithLabelValues(source).Set(0)
	}
	if p.audit == nil {
		p.registry.Unregister(m.AuditHealthy)
		return nil
	}
	for _, stage := range audit.FailureStages {
		m.AuditFailures.WithLabelValues(stage)
	}
	// Only result records can be lost (a signed record that cannot be
	// written stops its token instead).
	m.AuditRecordsLost.WithLabelValues(audit.TypeResult)
	if cfg.Audit.Ship.Stdout {
		m.AuditShipErrors.WithLabelValues("stdout")
	}
	if cfg.Audit.Ship.Syslog != nil {
		m.AuditShipErrors.WithLabelValues("syslog")
	}
	if err := p.registry.Register(metrics.NewAuditVolume(cfg.Audit.Dir)); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	return nil
}
