package doctorcmd

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/cli/cmdline"
	"github.com/roc-proxy/roc-proxy/internal/egress"
	"github.com/roc-proxy/roc-proxy/internal/expiry"
	"github.com/roc-proxy/roc-proxy/internal/material"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/revocation"
	"github.com/roc-proxy/roc-proxy/internal/trust"
	"github.com/roc-proxy/roc-proxy/internal/version"
)

const doctorUsage = `Usage: roc-proxy doctor --config FILE [--json] [--timeout D] [--partner ROUTE=HOST[:PORT]]...

Tries, from the configuration, what roc-proxy will do: for every route's
partner, DNS, the TCP connection (through the outbound proxy where one is
set), the TLS handshake with the ORG_AUTH_CLI certificate, the partner's
chain against the route's trust bundles, its revocation status (fetched
live), and whether the partner accepts the establishment's certificate (a
harmless GET of the route's path); for every revocation URL (configured, and
from the certificates of the trust bundles and of the identity), DNS, the
connection and a fetch; and the expiry and revocation of the
establishment's own certificates. One progress line per partner goes to
standard error, one table (or --json) to standard output.

A dynamic route's partners are the exact names of its dynamic.hosts (on
each allowed port); name others, below a *.suffix pattern, with --partner.

Exit status: 0 every check passed (warnings allowed), 1 a check failed,
2 wrong command line.

Flags:
`

// doctorTimeout bounds the checks of one partner or one URL.
const doctorTimeout = 30 * time.Second

func cmdDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	timeout := fs.Duration("timeout", doctorTimeout, "bound of the checks of each partner and each revocation URL")
	var partners cmdline.Strings
	fs.Var(&partners, "partner", "ROUTE=HOST[:PORT]: a partner of a dynamic route to check (repeatable)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), doctorUsage)
		fs.PrintDefaults()
	}
	if err := cmdline.ParseFlags(fs, args, stdout, stderr); err != nil {
		return cmdline.IgnoreHelp(err)
	}
	if *cfgPath == "" || *timeout <= 0 {
		fmt.Fprintln(stderr, "doctor needs --config FILE (and a positive --timeout)")
		fs.Usage()
		return cmdline.ErrUsage
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	extra, err := parsePartners(cfg, partners)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return cmdline.ErrUsage
	}
	d := &doctor{cfg: cfg, timeout: *timeout, progress: stderr, lookup: net.DefaultResolver.LookupHost, now: time.Now, getenv: os.Getenv}
	if err := d.load(); err != nil {
		return &config.FileError{File: *cfgPath, Err: err}
	}
	defer d.checker.Close()
	report := d.run(ctx, extra)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return err
		}
	} else {
		report.print(stdout)
	}
	if n := report.failures(); n > 0 {
		return fmt.Errorf("doctor: %d of %d checks failed", n, len(report.Checks))
	}
	return nil
}

// parsePartners reads --partner values: partners of dynamic routes, which
// the route may reach.
func parsePartners(cfg *config.Config, values []string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, v := range values {
		name, hostport, ok := strings.Cut(v, "=")
		i := slices.IndexFunc(cfg.Routes, func(r *config.Route) bool { return r.Name == name })
		switch {
		case !ok || hostport == "":
			return nil, fmt.Errorf("--partner %q: want ROUTE=HOST[:PORT]", v)
		case i < 0:
			return nil, fmt.Errorf("--partner %q: no route %q", v, name)
		case cfg.Routes[i].Dynamic == nil:
			return nil, fmt.Errorf("--partner %q: route %s is not dynamic (its partner is its upstream)", v, name)
		}
		host, port := strings.ToLower(hostport), 443
		if h, p, err := net.SplitHostPort(hostport); err == nil {
			n, err := strconv.Atoi(p)
			if err != nil {
				return nil, fmt.Errorf("--partner %q: bad port", v)
			}
			host, port = strings.ToLower(h), n
		}
		if !dynamicAllows(cfg.Routes[i].Dynamic, host, port) {
			return nil, fmt.Errorf("--partner %q: route %s may not reach %s:%d (dynamic.hosts, dynamic.ports)", v, name, host, port)
		}
		out[name] = append(out[name], net.JoinHostPort(host, strconv.Itoa(port)))
	}
	return out, nil
}

// dynamicAllows is the rule of dynamic routes (proxy.dynamicTarget):
// an exact name or one below a *.suffix pattern, on an allowed port.
func dynamicAllows(d *config.Dynamic, host string, port int) bool {
	if !slices.Contains(d.Ports, port) || !config.HostPatternRE.MatchString(host) || strings.HasPrefix(host, "*.") {
		return false
	}
	for _, pat := range d.Hosts {
		if suffix, ok := strings.CutPrefix(pat, "*."); ok && strings.HasSuffix(host, "."+suffix) || host == pat {
			return true
		}
	}
	return false
}

// doctor holds what the checks use: the configuration's material, a
// revocation engine of its own that fetches live (no cache folder), the
// outbound proxies.
type doctor struct {
	cfg      *config.Config
	timeout  time.Duration
	progress io.Writer
	lookup   func(ctx context.Context, host string) ([]string, error)
	now      func() time.Time
	getenv   func(string) string

	mat           *material.Material
	checker       *revocation.Checker
	global, fetch *egress.Proxy
	// routeProxies is each route's outbound proxy (nil: direct).
	routeProxies []*egress.Proxy
	// ocsp remembers, per responder URL, what asking it taught.
	ocsp map[string]error
	// urls are the revocation URLs met, in order, with their kind.
	urls     []revocationURL
	urlsSeen map[string]bool
}

func (d *doctor) load() error {
	var err error
	if d.mat, err = material.Load(d.cfg, material.Options{Getenv: d.getenv, Now: d.now}); err != nil {
		return err
	}
	if d.global, d.fetch, err = egress.LoadGlobal(d.cfg, d.getenv); err != nil {
		return err
	}
	for i, r := range d.cfg.Routes {
		px, err := egress.LoadForRoute(r, fmt.Sprintf("routes[%d]", i), d.global, d.getenv)
		if err != nil {
			return err
		}
		d.routeProxies = append(d.routeProxies, px)
	}
	rc := d.cfg.Revocation
	rc.CacheDir = "" // live answers, and the running proxy's cache untouched
	rc.FetchTimeout = min(rc.FetchTimeout, d.timeout)
	m, err := metrics.New(prometheus.NewRegistry(), metrics.BuildInfo{Version: version.Release()})
	if err != nil {
		return err
	}
	d.checker, err = revocation.New(revocation.Options{Config: rc, Now: d.now, Logger: zap.NewNop(), Metrics: m, Subject: trust.SubjectDN,
		Transport: egress.FetchTransport(d.fetch, rc.FetchTimeout, nil)})
	d.ocsp, d.urlsSeen = map[string]error{}, map[string]bool{}
	return err
}

// Report is what doctor found, in the order checked.
type Report struct {
	OK     bool    `json:"ok"`
	Checks []Check `json:"checks"`
}

// Check is one thing tried: a partner, a revocation URL, an own
// certificate.
type Check struct {
	Kind   string `json:"kind"` // partner, revocation_url, identity
	Name   string `json:"name"` // route name, crl/delta_crl/ocsp, identity.auth
	Target string `json:"target"`
	// ServerName is the name checked in a partner's certificate.
	ServerName string `json:"server_name,omitempty"`
	Via        string `json:"via,omitempty"` // direct, or the outbound proxy (never its password)
	Result     string `json:"result"`        // ok, warn, fail, skip
	Steps      []Step `json:"steps"`
}

// Step is one step of a check, in order.
type Step struct {
	Name    string `json:"name"`   // dns, connect, tls, chain, revocation, client_certificate, fetch, expiry
	Status  string `json:"status"` // ok, warn, fail, skip
	Summary string `json:"summary"`
	Detail  string `json:"detail,omitempty"`
}

const (
	stOK   = "ok"
	stWarn = "warn"
	stFail = "fail"
	stSkip = "skip"
)

func (c *Check) add(name, status, summary string, detail error) {
	s := Step{Name: name, Status: status, Summary: summary}
	if detail != nil {
		s.Detail = detail.Error()
	}
	c.Steps = append(c.Steps, s)
}

// skipRest marks the steps that cannot run after a failure.
func (c *Check) skipRest(names ...string) {
	for _, n := range names {
		c.add(n, stSkip, "", nil)
	}
}

// finish sets the check's result from its steps.
func (c *Check) finish() {
	c.Result = stOK
	for _, s := range c.Steps {
		switch {
		case s.Status == stFail:
			c.Result = stFail
			return
		case s.Status == stWarn:
			c.Result = stWarn
		}
	}
}

func (r *Report) failures() int {
	n := 0
	for _, c := range r.Checks {
		if c.Result == stFail {
			n++
		}
	}
	return n
}

// run checks the own certificates, then each partner, then every
// revocation URL met on the way.
func (d *doctor) run(ctx context.Context, extra map[string][]string) *Report {
	r := &Report{}
	fmt.Fprintln(d.progress, "doctor: the establishment's certificates and the trust bundles' authorities")
	for _, id := range []struct {
		path string
		id   *mtls.Identity
	}{{"identity.auth", d.mat.Auth}, {"identity.sign", d.mat.Sign}} {
		if id.id != nil {
			r.Checks = append(r.Checks, d.checkIdentity(ctx, id.path, id.id))
		}
	}
	d.askAuthorities(ctx)
	for i, route := range d.cfg.Routes {
		for _, t := range d.targets(i, route, extra[route.Name]) {
			c := d.checkPartner(ctx, t)
			r.Checks = append(r.Checks, c)
			line := fmt.Sprintf("doctor: route %s -> %s", route.Name, c.Target)
			if c.Via != "" && c.Via != "direct" {
				line += " via " + c.Via
			}
			fmt.Fprintf(d.progress, "%s ... %s\n", terminalSafe(line), terminalSafe(progressResult(c)))
		}
	}
	urls := d.revocationURLs()
	fmt.Fprintf(d.progress, "doctor: %d revocation URLs\n", len(urls))
	for _, u := range urls {
		r.Checks = append(r.Checks, d.checkURL(ctx, u))
	}
	r.OK = r.failures() == 0
	return r
}

func progressResult(c Check) string {
	if c.Result == stOK || c.Result == stSkip {
		return c.Result
	}
	for _, s := range c.Steps {
		if s.Status == stFail || s.Status == stWarn {
			return strings.ToUpper(c.Result) + " (" + s.Name + ": " + s.Summary + ")"
		}
	}
	return c.Result
}

// checkIdentity checks one of the establishment's certificates: expiry,
// and revocation status (OCSP first, then the CRLs, fetched now).
func (d *doctor) checkIdentity(ctx context.Context, path string, id *mtls.Identity) Check {
	c := Check{Kind: "identity", Name: path, Target: trust.SubjectDN(id.Leaf)}
	left := id.Leaf.NotAfter.Sub(d.now())
	until := fmt.Sprintf("until %s (%d days)", id.Leaf.NotAfter.UTC().Format(time.DateOnly), int(left.Hours()/24))
	switch {
	case d.now().Before(id.Leaf.NotBefore):
		c.add("expiry", stFail, "not yet valid", nil)
	case left <= 0:
		c.add("expiry", stFail, "expired on "+id.Leaf.NotAfter.UTC().Format(time.DateOnly), nil)
	case left < expiry.WarnBefore:
		c.add("expiry", stWarn, until+": renew it", nil)
	default:
		c.add("expiry", stOK, until, nil)
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	err := d.checker.Check(ctx, id.Chain, revocation.Policy{Hard: true, Sources: []string{revocation.SourceOCSP, revocation.SourceCRL}})
	st, sum, det := revocationStep(err, config.RevocationHard)
	c.add("revocation", st, sum, det)
	d.noteURLs(id.Chain)
	c.finish()
	return c
}

// revocationStep turns a checker's answer into a step under a route's
// policy: revoked fails always; unknown fails under hard, warns otherwise.
func revocationStep(err error, policy config.RevocationPolicy) (status, summary string, detail error) {
	var re *revocation.Error
	switch {
	case err == nil:
		return stOK, "good", nil
	case errors.As(err, &re) && re.Status == revocation.StatusRevoked:
		return stFail, "revoked (" + re.Source + ")", err
	case policy == config.RevocationHard:
		return stFail, "unknown", err
	}
	return stWarn, "unknown (policy " + string(policy) + ")", err
}

// askAuthorities fetches the status of the trust bundles' intermediates
// from each of their sources, and the configured CRLs, so that every
// revocation URL of the bundles is tried.
func (d *doctor) askAuthorities(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	cas := d.mat.Store.Authorities()
	for _, is := range d.cfg.Revocation.Issuers {
		for _, u := range is.CRLURLs {
			d.noteURL(u, "crl")
		}
		for _, u := range is.DeltaCRLURLs {
			d.noteURL(u, "delta_crl")
		}
		if is.OCSPURL != "" {
			d.noteURL(is.OCSPURL, "ocsp")
		}
	}
	d.noteURLs(cas)
	d.checker.Prefetch(ctx, cas, nil) // configured CRLs
	for _, chain := range d.authorityChains() {
		d.askEachSource(ctx, chain)
	}
}

// authorityChains are the chains of the bundles' intermediates and of the
// establishment's certificates.
func (d *doctor) authorityChains() [][]*x509.Certificate {
	chains := d.mat.Store.IntermediateChains()
	for _, id := range []*mtls.Identity{d.mat.Auth, d.mat.Sign} {
		if id != nil {
			chains = append(chains, id.Chain)
		}
	}
	return chains
}

// askEachSource asks OCSP and the CRLs separately about each certificate
// of chain, so that each of its URLs is tried (a check stops at the first
// source that answers); it remembers what each OCSP responder said.
func (d *doctor) askEachSource(ctx context.Context, chain []*x509.Certificate) {
	for i := 0; i+1 < len(chain); i++ {
		pair := chain[i : i+2]
		if u := d.checker.OCSPResponder(pair[0], pair[1]); u != "" {
			err := d.checker.Check(ctx, pair, revocation.Policy{Hard: true, Sources: []string{revocation.SourceOCSP}})
			var re *revocation.Error
			if errors.As(err, &re) && re.Status == revocation.StatusRevoked {
				err = nil // the responder answered
			}
			if prev, seen := d.ocsp[u]; !seen || prev != nil {
				d.ocsp[u] = err
			}
		}
		_ = d.checker.Check(ctx, pair, revocation.Policy{Hard: true, Sources: []string{revocation.SourceCRL}})
	}
}

// print writes the report as one table, then the details of what is not
// ok.
func (r *Report) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tTARGET\tVIA\tDNS\tCONNECT\tTLS\tCHAIN\tREVOCATION\tCLIENT CERT\tRESULT")
	column := map[string]int{"dns": 0, "connect": 1, "tls": 2, "chain": 3, "expiry": 3, "revocation": 4, "fetch": 4, "client_certificate": 5}
	for _, c := range r.Checks {
		cells := []string{"-", "-", "-", "-", "-", "-"}
		for _, s := range c.Steps {
			cell := s.Summary
			if cell == "" {
				cell = s.Status
			}
			if s.Status == stSkip && s.Summary == "" {
				cell = "skipped"
			}
			cells[column[s.Name]] = terminalSafe(cell)
		}
		via := c.Via
		if via == "" {
			via = "-"
		}
		target := c.Target
		if c.Kind == "identity" {
			target, _, _ = strings.Cut(target, ",") // its CN; the whole subject is in --json
		}
		if c.ServerName != "" && !strings.HasPrefix(target, c.ServerName+":") {
			target += " (" + c.ServerName + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", terminalSafe(checkLabel(c)), terminalSafe(target), terminalSafe(via), strings.Join(cells, "\t"), strings.ToUpper(c.Result))
	}
	tw.Flush()
	var problems []string
	warn, fail, skip := 0, 0, 0
	for _, c := range r.Checks {
		switch c.Result {
		case stWarn:
			warn++
		case stFail:
			fail++
		case stSkip:
			skip++
		}
		for _, s := range c.Steps {
			if (s.Status == stFail || s.Status == stWarn) && s.Detail != "" {
				problems = append(problems, terminalSafe(fmt.Sprintf("  %s %s, %s: %s", checkLabel(c), c.Target, s.Name, s.Detail)))
			}
		}
	}
	if len(problems) > 0 {
		fmt.Fprintln(w, "\nproblems:")
		fmt.Fprintln(w, strings.Join(problems, "\n"))
	}
	fmt.Fprintf(w, "\n%d checks: %d ok, %d with warnings, %d failed, %d not tried\n", len(r.Checks), len(r.Checks)-warn-fail-skip, warn, fail, skip)
}

func checkLabel(c Check) string {
	switch c.Kind {
	case "partner":
		return "route " + c.Name
	case "revocation_url":
		return "revocation " + c.Name
	}
	return c.Name
}

// urlHostPort is the host:port a URL connects to.
func urlHostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// terminalSafe escapes what a terminal would act on in text that comes
// from the network (a partner's or an impostor's certificate subject, an
// HTTP status line, a CRL server's error): control characters (escape
// sequences, carriage returns and line feeds that would forge a row, C1
// controls), bidi overrides and other invisible formatting, written as Go
// escapes (\x1b, \u202e). Printable text, accents included, is kept.
func terminalSafe(s string) string {
	if !strings.ContainsFunc(s, unsafeRune) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unsafeRune(r) {
			q := strconv.QuoteRune(r) // '\x1b', '\u202e'
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	return r != ' ' && (!unicode.IsPrint(r) || unicode.Is(unicode.Cf, r))
}
