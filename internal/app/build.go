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
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/boundedfile"
	"github.com/roc-proxy/roc-proxy/internal/egress"
	"github.com/roc-proxy/roc-proxy/internal/expiry"
	"github.com/roc-proxy/roc-proxy/internal/material"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/proxy"
	"github.com/roc-proxy/roc-proxy/internal/reload"
	"github.com/roc-proxy/roc-proxy/internal/revocation"
	"github.com/roc-proxy/roc-proxy/internal/saml"
	"github.com/roc-proxy/roc-proxy/internal/tokenroute"
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
	// ACMERetry is the first wait before asking the ACME authority again
	// when start-up found no certificate (default 5 s, doubling up to 5 min).
	ACMERetry time.Duration
	// Stdout receives the audit records shipped as JSON lines
	// (audit.ship.stdout); default os.Stdout.
	Stdout io.Writer
}

// Proxy is a fully wired roc-proxy, ready to serve.
type Proxy struct {
	// cfg is the configuration Build was given. Only its restart-only
	// sections are read after Build (a reload refuses any change to
	// them): the routes and trust bundles in service are in routes.
	cfg      *config.Config
	deps     Deps
	log      *zap.Logger
	registry *prometheus.Registry
	metrics  *metrics.Metrics

	routes  atomic.Pointer[routeSet] // swapped by a reload
	current current                  // swapped piece by piece by a renewal
	// sihTLS serves listen.tls from files (ACME's is made when serving);
	// clientCAs are listen.tls.client_ca.
	sihTLS    *tls.Config
	clientCAs *x509.CertPool

	revocation *revocation.Checker
	// revocationWarm latches once readiness saw every required status.
	revocationWarm atomic.Bool
	audit          *audit.Log // nil when no route signs
	expiry         *expiry.Watch
	// egress is the global outbound_proxy (nil: directly), loaded at
	// start; routes that name none use it.
	egress *egress.Proxy
	// budget bounds the bodies in flight, across reloads.
	budget *proxy.BodyBudget
	// reloader applies renewed files and configuration reloads; its
	// goroutine owns the running configuration (Serve starts and stops it).
	reloader *reload.Reloader
}

// current is the establishment's material in service. A renewal swaps
// each piece; a handshake or a signature takes the one current when it
// starts.
type current struct {
	auth   atomic.Pointer[mtls.Identity] // ORG_AUTH_CLI
	sign   atomic.Pointer[mtls.Identity] // ORG_SIGN; nil when no route signs
	signer atomic.Pointer[saml.Signer]   // ORG_SIGN as the tokens' signer
	// checkpoint signs the audit chain's open record and checkpoints:
	// ORG_SIGN (following its renewals), or audit.checkpoint_key
	// (following its own files).
	checkpoint atomic.Pointer[mtls.Identity]
	listener   atomic.Pointer[tls.Certificate] // listen.tls from files
}

// routeSet is a configuration's routes in service: the handler the SIH is
// served by, the partner pools behind it, and the configuration and trust
// bundles they were built from.
type routeSet struct {
	cfg     *config.Config
	store   *trust.Store
	handler *proxy.Handler
	pools   []*proxy.RenewableUpstream
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
	p := &Proxy{cfg: cfg, log: d.Logger, registry: d.Registry, metrics: m, revocation: checker,
		deps: d, egress: global, expiry: expiry.New(m.CertificateNotAfter, d.Logger)}
	// The files a reload follows are hashed now, just after they were read.
	p.reloader = reload.New(reload.Options{Config: cfg, Store: mat.Store, Auth: mat.Auth, Sign: mat.Sign, Checkpoint: mat.Checkpoint, Runtime: reloadTarget{p},
		Expiry: p.expiry, Metrics: m, Logger: d.Logger, Now: d.Now, Getenv: d.Getenv})
	p.budget = proxy.NewBodyBudget(cfg.Server.MaxBodyMemory, m)
	p.current.auth.Store(mat.Auth)
	p.clientCAs = mat.ClientCAs
	if mat.ListenCert != nil {
		p.current.listener.Store(mat.ListenCert)
		p.sihTLS = mtls.ListenerConfig(mtls.ListenerOptions{Certificate: p.current.listener.Load, ClientCAs: mat.ClientCAs})
		if mat.ListenCert.Leaf != nil {
			p.expiry.Certificate("listen.tls", mat.ListenCert.Leaf, d.Now())
		}
	}
	p.expiry.Certificate("identity.auth", mat.Auth.Leaf, d.Now())
	if mat.Sign != nil {
		p.expiry.Certificate("identity.sign", mat.Sign.Leaf, d.Now())
		p.current.sign.Store(mat.Sign)
		p.current.signer.Store(saml.NewSigner(mat.Sign.Signer(), mat.Sign.Leaf))
	}
	if cfg.Audit.Dir != "" && mat.Sign != nil {
		p.current.checkpoint.Store(mat.Checkpoint)
		chain := chainID(cfg.Audit.ChainID, d.Getenv)
		var sinks []audit.Sink
		if sinks, err = auditSinks(&cfg.Audit.Ship, chain, d); err != nil {
			return nil, err
		}
		p.audit, err = audit.Open(audit.Options{
			Dir: cfg.Audit.Dir, Chain: chain,
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
		if warn := material.PlainPatientHash(cfg); warn != "" {
			d.Logger.Named("audit").Warn(warn)
		}
	}
	p.expiry.Bundles(mat.Store, d.Now())
	if cfg.Audit.CheckpointKey != nil && mat.Checkpoint != nil && mat.Checkpoint.Leaf != nil {
		// Exported from the start like ORG_SIGN's, not only after a renewal.
		p.expiry.Certificate("audit.checkpoint_key", mat.Checkpoint.Leaf, d.Now())
	}

	routes, err := p.buildRoutes(cfg, mat.Store)
	if err != nil {
		return nil, err
	}
	p.routes.Store(routes)
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
			Facility: sl.Facility.Code()}
		if o.Hostname == "" {
			getenv := d.Getenv
			if getenv == nil {
				getenv = os.Getenv
			}
			if o.Hostname = getenv("POD_NAME"); o.Hostname == "" {
				o.Hostname, _ = os.Hostname()
			}
		}
		if sl.Transport == config.SyslogTLS {
			pool, err := trust.ReadPool(sl.CA)
			if err != nil {
				return nil, fmt.Errorf("audit.ship.syslog.ca: %w", err)
			}
			serverName := sl.ServerName
			if serverName == "" {
				serverName, _, _ = net.SplitHostPort(sl.Address)
			}
			co := mtls.CollectorOptions{ServerName: serverName, RootCAs: pool, Now: d.Now}
			if sl.Cert != "" {
				cert, err := boundedfile.LoadX509KeyPair(sl.Cert, sl.Key)
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
	id := p.current.checkpoint.Load()
	return id.Signer(), id.Leaf
}

// buildRoutes builds the routes of cfg, with the trust bundles of store,
// around the proxy's current identity, signer, revocation checker and audit
// log. Build uses it, and a configuration reload.
func (p *Proxy) buildRoutes(cfg *config.Config, store *trust.Store) (*routeSet, error) {
	d, m, checker := p.deps, p.metrics, p.revocation
	clientCert := func() *tls.Certificate { return &p.current.auth.Load().Certificate }
	var transports []*proxy.RenewableUpstream
	var specs []proxy.RouteSpec
	patientKey, err := material.PatientKey(cfg) // read at each build: a reload follows the configuration
	if err != nil {
		return nil, err
	}
	for i, r := range cfg.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		var upstream *url.URL
		serverName := r.ServerName // dynamic routes: each partner's own name
		if r.Dynamic == nil {
			if upstream, err = url.Parse(r.Upstream); err != nil {
				return nil, fmt.Errorf("%s.upstream: %w", path, err)
			}
			if serverName == "" {
				serverName = upstream.Hostname()
			}
		}
		vo := trust.VerifierOptions{Bundles: r.Trust, ServerName: serverName, Pins: r.SPKIPins.SHA256s(), Now: d.Now}
		var rc *revocation.RouteChecker
		if r.Revocation.Policy != config.RevocationOff {
			rc = checker.ForRoute(revocation.Policy{Hard: r.Revocation.Policy == config.RevocationHard, Sources: r.Revocation.Sources.Names(), Route: r.Name})
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
			return nil, fmt.Errorf("%s.trust: %w", path, err)
		}
		timeouts := r.Timeouts
		dial, err := p.routeDial(r, path, upstream)
		if err != nil {
			return nil, err
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
		if rs := r.ResponseSignature; rs.Policy != config.SignaturesOff {
			roots, inter := store.Pools(rs.Trust...)
			spec.Enforce = rs.Policy == config.SignaturesEnforce
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
					return nil, fmt.Errorf("%s.response_signature.signed_element: %w", path, err)
				}
				policy.SignedElement = append(policy.SignedElement, name)
			}
			spec.ResponseSignatures = policy.Verify
		}
		if r.Token != nil {
			// Loaded at start only (a reload that adds them is refused):
			// never build a signing route without them.
			if p.current.signer.Load() == nil || p.audit == nil {
				return nil, fmt.Errorf("%s.token: the signing certificate (identity.sign) and the audit log (audit.dir) are loaded at start only: restart roc-proxy to add a signing route", path)
			}
			spec.TokenHeaders = []string{proxy.DefaultTokenHeader}
			if r.Token.HTTPHeader != "" {
				spec.TokenHeaders = append(spec.TokenHeaders, r.Token.HTTPHeader)
			}
			spec.Token = tokenroute.New(tokenroute.Options{
				Route:    r.Name,
				Injector: saml.NewInjector(saml.InjectorOptions{Route: r.Name, Token: r.Token, Signer: p.current.signer.Load, Now: d.Now, Metrics: m}),
				Status:   checker, RefuseRevokedSigner: cfg.Revocation.RefuseRevokedSigner == nil || *cfg.Revocation.RefuseRevokedSigner,
				Audit: p.audit, StoreAssertion: cfg.Audit.StoreAssertion, PatientID: cfg.Audit.PatientID, PatientKey: patientKey,
			})
		}
		specs = append(specs, spec)
	}
	h, err := proxy.New(proxy.Options{Routes: specs, Logger: d.Logger.Named("proxy"), Metrics: m, AllowCIDRs: cfg.Listen.AllowCIDRs.Netip(), ClientCAs: p.clientCAs, Now: d.Now,
		Budget: p.budget, WriteTimeout: p.cfg.Server.WriteTimeout})
	if err != nil {
		return nil, err
	}
	return &routeSet{cfg: cfg, store: store, handler: h, pools: transports}, nil
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
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.routes.Load().handler.ServeHTTP(w, r)
}
