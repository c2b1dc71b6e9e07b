package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	pathpkg "path"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// FieldError is one problem at one place of the configuration.
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

type problems []error

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	prefixRE = regexp.MustCompile(`^/[A-Za-z0-9._~/-]*$`)
	headerRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
	// clarkRE: "{namespace}local" or "local"; local is an NCName (ASCII).
	clarkRE = regexp.MustCompile(`^(\{[^{}\s]+\})?[A-Za-z_][A-Za-z0-9._-]*$`)
	// HostPatternRE is a lower-case DNS name of at least two labels, or
	// "*." and one.
	HostPatternRE = regexp.MustCompile(`^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
	chainRE       = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
)

// CleanPath reports whether p has no empty, "." or ".." segment; a trailing
// slash is allowed. Route prefixes must be clean, and the SIH handler
// serves only clean request paths (internal/proxy): one rule for both.
func CleanPath(p string) bool {
	c := pathpkg.Clean(p)
	return c == p || c+"/" == p
}

// Validate reports every problem of the configuration (joined with
// errors.Join, in file order), or nil. It never modifies the configuration and
// never touches the file system.
func (c *Config) Validate() error {
	var p problems
	validAddr(&p, "listen.sih", c.Listen.SIH)
	validAddr(&p, "listen.admin", c.Listen.Admin)
	if t := c.Listen.TLS; t != nil {
		switch {
		case t.ACME != nil && (t.Cert != "" || t.Key != ""):
			p.add("listen.tls", "set either cert and key, or acme, not both")
		case t.ACME != nil:
			a := t.ACME
			if u, err := url.Parse(a.Directory); err != nil || u.Scheme != "https" || u.Host == "" {
				p.add("listen.tls.acme.directory", "%q must be the https URL of the ACME directory", a.Directory)
			}
			if len(a.Domains) == 0 {
				p.add("listen.tls.acme.domains", "required: the names the SIH reaches roc-proxy by")
			}
			for i, d := range a.Domains {
				if !HostPatternRE.MatchString(d) || strings.HasPrefix(d, "*.") {
					p.add(fmt.Sprintf("listen.tls.acme.domains[%d]", i), "%q is not a DNS name", d)
				}
			}
			if a.Storage == "" {
				p.add("listen.tls.acme.storage", "required: a persistent folder for the certificate and the ACME account")
			}
		case t.Cert == "" || t.Key == "":
			p.add("listen.tls", "cert and key are both required (or acme)")
		}
	}
	for i, cidr := range c.Listen.AllowCIDRs {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			p.add(fmt.Sprintf("listen.allow_cidrs[%d]", i), "%q is not a CIDR (e.g. 10.0.0.0/8)", cidr)
		}
	}
	if c.Listen.SIH != "" && c.Listen.SIH == c.Listen.Admin && !strings.HasSuffix(c.Listen.SIH, ":0") {
		p.add("listen.admin", "same address as listen.sih")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		p.add("log.format", "%q is not one of json, console", c.Log.Format)
	}
	if f := c.Log.FlushInterval; f != nil && *f < 0 {
		p.add("log.flush_interval", "must not be negative (0s writes each line at once), got %s", *f)
	}
	positive(&p, "server.max_body_bytes", c.Server.MaxBodyBytes)
	positive(&p, "server.max_response_bytes", c.Server.MaxResponseBytes)
	positiveDur(&p, "server.read_header_timeout", c.Server.ReadHeaderTimeout)
	positiveDur(&p, "server.read_timeout", c.Server.ReadTimeout)
	positiveDur(&p, "server.idle_timeout", c.Server.IdleTimeout)
	positiveDur(&p, "server.shutdown_timeout", c.Server.ShutdownTimeout)
	positiveDur(&p, "server.write_timeout", c.Server.WriteTimeout)
	positive(&p, "server.max_connections", int64(c.Server.MaxConnections))
	positive(&p, "server.max_body_memory", c.Server.MaxBodyMemory)
	positiveDur(&p, "server.admin.read_timeout", c.Server.Admin.ReadTimeout)
	positiveDur(&p, "server.admin.write_timeout", c.Server.Admin.WriteTimeout)
	positiveDur(&p, "server.admin.idle_timeout", c.Server.Admin.IdleTimeout)

	if c.Identity.Auth == nil {
		p.add("identity.auth", "required: the ORG_AUTH_CLI certificate (pkcs12, or cert and key)")
	} else {
		c.Identity.Auth.validate(&p, "identity.auth")
	}
	c.Identity.Sign.validate(&p, "identity.sign")
	positiveDur(&p, "identity.reload_interval", c.Identity.ReloadInterval)
	c.Audit.CheckpointKey.validate(&p, "audit.checkpoint_key")

	names := make([]string, 0, len(c.TrustBundles))
	for name := range c.TrustBundles {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		path := "trust_bundles." + name
		if !nameRE.MatchString(name) {
			p.add(path, "bundle name must match %s", nameRE)
		}
		if b := c.TrustBundles[name]; b == nil || len(b.Paths) == 0 {
			p.add(path+".paths", "required: at least one PEM file or folder")
		}
	}

	c.Revocation.validate(&p)
	if c.OutboundProxy != nil {
		c.OutboundProxy.validate(&p, "outbound_proxy")
	}
	c.Revocation.OutboundProxy.validate(&p, "revocation.outbound_proxy")
	signs := false
	for _, r := range c.Routes {
		signs = signs || r != nil && r.Token != nil
	}
	if signs && c.Audit.Dir == "" {
		p.add("audit.dir", "required: routes sign tokens, and every token is recorded before it leaves")
	}
	switch c.Audit.PatientID {
	case "hash", "drop", "keep":
	default:
		p.add("audit.patient_id", "%q is not one of hash, drop, keep", c.Audit.PatientID)
	}
	if c.Audit.PatientIDKey != "" && c.Audit.PatientID != "hash" {
		p.add("audit.patient_id_key", "keys the patient's INS hash: it needs patient_id: hash (patient_id is %q)", c.Audit.PatientID)
	}
	if c.Audit.StoreAssertion && c.Audit.PatientID != "keep" {
		p.add("audit.store_assertion", "a stored assertion holds the patient's INS in clear (DMP tokens), which audit.patient_id %q keeps out of the records (and of what is shipped): set patient_id: keep to store assertions", c.Audit.PatientID)
	}
	if c.Audit.ChainID != "" && !chainRE.MatchString(c.Audit.ChainID) {
		p.add("audit.chain_id", "%q must be letters, digits, . _ -", c.Audit.ChainID)
	}
	positive(&p, "audit.max_file_bytes", c.Audit.MaxFileBytes)
	positiveDur(&p, "audit.max_file_age", c.Audit.MaxFileAge)
	positive(&p, "audit.checkpoint_every", int64(c.Audit.CheckpointEvery))
	positiveDur(&p, "audit.checkpoint_interval", c.Audit.CheckpointInterval)
	c.Audit.Ship.Syslog.validate(&p, "audit.ship.syslog")
	if (c.Audit.Ship.Stdout || c.Audit.Ship.Syslog != nil) && c.Audit.Dir == "" {
		p.add("audit.ship", "needs audit.dir: records are shipped from the durable files")
	}

	if len(c.Routes) == 0 {
		p.add("routes", "required: at least one route")
	}
	seenName := map[string]int{}
	seenPrefix := map[string]int{}
	for i, r := range c.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		if r == nil {
			p.add(path, "empty route")
			continue
		}
		if !nameRE.MatchString(r.Name) {
			p.add(path+".name", "%q must match %s", r.Name, nameRE)
		} else if j, dup := seenName[r.Name]; dup {
			p.add(path+".name", "%q already used by routes[%d]", r.Name, j)
		} else {
			seenName[r.Name] = i
		}
		if !strings.HasPrefix(r.PathPrefix, "/") {
			p.add(path+".path_prefix", "%q must start with /", r.PathPrefix)
		} else if !prefixRE.MatchString(r.PathPrefix) || !CleanPath(r.PathPrefix) {
			p.add(path+".path_prefix", "%q must be a canonical path of letters, digits and . _ ~ - /", r.PathPrefix)
		} else if j, dup := seenPrefix[r.PathPrefix]; dup {
			p.add(path+".path_prefix", "%q already used by routes[%d]", r.PathPrefix, j)
		} else {
			seenPrefix[r.PathPrefix] = i
		}
		if r.Dynamic != nil {
			r.Dynamic.validate(&p, path+".dynamic")
			if r.Upstream != "" {
				p.add(path+".upstream", "set either upstream or dynamic, not both")
			}
			if r.ServerName != "" {
				p.add(path+".server_name", "a dynamic route checks each partner's own name")
			}
		} else {
			r.validateUpstream(&p, path)
		}
		if len(r.Trust) == 0 {
			p.add(path+".trust", "required: the trust bundles allowed to issue the upstream's certificate")
		}
		for k, b := range r.Trust {
			if _, ok := c.TrustBundles[b]; !ok {
				p.add(fmt.Sprintf("%s.trust[%d]", path, k), "unknown bundle %q", b)
			}
		}
		for k, pin := range r.SPKIPins {
			if _, err := ParsePin(pin); err != nil {
				p.add(fmt.Sprintf("%s.spki_pins[%d]", path, k), "%v", err)
			}
		}
		positive(&p, path+".max_body_bytes", r.MaxBodyBytes)
		positive(&p, path+".max_response_bytes", r.MaxResponseBytes)
		for _, b := range []struct {
			key string
			n   int64
		}{{"max_body_bytes", r.MaxBodyBytes}, {"max_response_bytes", r.MaxResponseBytes}} {
			if c.Server.MaxBodyMemory > 0 && b.n > c.Server.MaxBodyMemory {
				p.add(path+"."+b.key, "%d exceeds server.max_body_memory (%d): such a body could never be held", b.n, c.Server.MaxBodyMemory)
			}
		}
		validMethods(&p, path+".methods", r.Methods)
		positiveDur(&p, path+".timeouts.connect", r.Timeouts.Connect)
		positiveDur(&p, path+".timeouts.tls_handshake", r.Timeouts.TLSHandshake)
		positiveDur(&p, path+".timeouts.response_header", r.Timeouts.ResponseHeader)
		positiveDur(&p, path+".timeouts.total", r.Timeouts.Total)
		r.OutboundProxy.validate(&p, path+".outbound_proxy")
		if len(r.AllowedClients) > 0 && (c.Listen.TLS == nil || c.Listen.TLS.ClientCA == "") {
			p.add(path+".allowed_clients", "needs listen.tls.client_ca: SIH client certificates are not requested")
		}
		if r.Token != nil {
			if c.Identity.Sign == nil {
				p.add(path+".token", "needs identity.sign: the ORG_SIGN certificate that signs the token")
			}
			r.Token.validate(&p, path+".token")
		}
		switch r.ResponseSignature.Policy {
		case "off":
		case "log", "enforce":
			if len(r.ResponseSignature.Trust) == 0 {
				p.add(path+".response_signature.trust", "required with policy %s: the bundles of the partner's signing authority", r.ResponseSignature.Policy)
			}
		default:
			p.add(path+".response_signature.policy", "%q is not one of off, log, enforce", r.ResponseSignature.Policy)
		}
		for k, q := range r.ResponseSignature.SignedElement {
			if !clarkRE.MatchString(q) {
				p.add(fmt.Sprintf("%s.response_signature.signed_element[%d]", path, k), "%q is not an element name in Clark notation ({namespace}local)", q)
			}
		}
		for k, b := range r.ResponseSignature.Trust {
			if _, ok := c.TrustBundles[b]; !ok {
				p.add(fmt.Sprintf("%s.response_signature.trust[%d]", path, k), "unknown bundle %q", b)
			}
		}
		if n := r.ResponseSignature.MaxNodes; n < 0 {
			p.add(path+".response_signature.max_nodes", "must be positive, got %d", n)
		}
		if d := r.ResponseSignature.MaxDepth; d != 0 && (d < MinResponseMaxDepth || d > MaxResponseMaxDepth) {
			p.add(path+".response_signature.max_depth", "must be between %d and %d (a WS-Security signature alone nests 8 deep), got %d", MinResponseMaxDepth, MaxResponseMaxDepth, d)
		}
		for k, dn := range r.ResponseSignature.Signers {
			if _, err := ParseDN(dn); err != nil {
				p.add(fmt.Sprintf("%s.response_signature.signers[%d]", path, k), "%q is not a distinguished name: %v", dn, err)
			}
		}
		switch r.Revocation.Policy {
		case "hard", "soft", "off":
		default:
			p.add(path+".revocation.policy", "%q is not one of hard, soft, off", r.Revocation.Policy)
		}
		seenSource := map[string]bool{}
		for k, s := range r.Revocation.Sources {
			switch {
			case s != "ocsp" && s != "crl":
				p.add(fmt.Sprintf("%s.revocation.sources[%d]", path, k), "%q is not one of ocsp, crl", s)
			case seenSource[s]:
				p.add(fmt.Sprintf("%s.revocation.sources[%d]", path, k), "%q listed twice", s)
			}
			seenSource[s] = true
		}
	}
	return errors.Join(p...)
}

// servedMethods are the methods a route may serve. TRACE (it echoes the
// request, headers included, back) and CONNECT (a tunnel) never pass.
var servedMethods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "OPTIONS": true}

func validMethods(p *problems, path string, methods []string) {
	seen := map[string]bool{}
	for i, m := range methods {
		switch {
		case m == "TRACE" || m == "CONNECT":
			p.add(fmt.Sprintf("%s[%d]", path, i), "%s is never forwarded", m)
		case !servedMethods[m]:
			p.add(fmt.Sprintf("%s[%d]", path, i), "%q is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS (upper case)", m)
		case seen[m]:
			p.add(fmt.Sprintf("%s[%d]", path, i), "%s listed twice", m)
		}
		seen[m] = true
	}
}

func (d *Dynamic) validate(p *problems, path string) {
	if len(d.Hosts) == 0 {
		p.add(path+".hosts", "required: the partners' names (a.example, *.amc.example)")
	}
	for i, h := range d.Hosts {
		if !HostPatternRE.MatchString(h) {
			p.add(fmt.Sprintf("%s.hosts[%d]", path, i), "%q is not a DNS name or *.suffix", h)
		}
	}
	for i, port := range d.Ports {
		if port < 1 || port > 65535 {
			p.add(fmt.Sprintf("%s.ports[%d]", path, i), "%d is not a port", port)
		}
	}
}

func (t *Token) validate(p *problems, path string) {
	switch t.Profile {
	case "roc", "vihf":
	default:
		p.add(path+".profile", "%q is not one of roc, vihf", t.Profile)
	}
	switch t.Placement {
	case "wsse":
	case "http-header":
		if !headerRE.MatchString(t.HTTPHeader) || strings.HasPrefix(strings.ToLower(t.HTTPHeader), "x-roc-") {
			p.add(path+".http_header", "%q is not a header name of letters, digits and - (X-Roc-* is reserved)", t.HTTPHeader)
		}
	default:
		p.add(path+".placement", "%q is not one of wsse, http-header", t.Placement)
	}
	switch t.IssuerFormat {
	case "rfc2253", "x500":
	default:
		p.add(path+".issuer_format", "%q is not one of rfc2253, x500", t.IssuerFormat)
	}
	positiveDur(p, path+".validity", t.Validity)
	positiveDur(p, path+".expiry_margin", t.ExpiryMargin)
	if t.NotBeforeSkew < 0 {
		p.add(path+".not_before_skew", "must not be negative, got %s", t.NotBeforeSkew)
	}
	switch {
	case t.ReuseFraction <= 0 || t.ReuseFraction >= 1:
		p.add(path+".reuse_fraction", "must be between 0 and 1 (share of the validity a cached token is reused for), got %g", t.ReuseFraction)
	case t.Validity > 0 && t.ExpiryMargin > 0 && time.Duration(float64(t.Validity)*(1-t.ReuseFraction)) < t.ExpiryMargin:
		// A token reused that long would be sent with less than the
		// margin left: it would be cut short anyway, the setting lies.
		p.add(path+".reuse_fraction", "%g of a %s validity leaves less than expiry_margin (%s) when a cached token is last sent: at most %.2f",
			t.ReuseFraction, t.Validity, t.ExpiryMargin, math.Floor(100*(1-float64(t.ExpiryMargin)/float64(t.Validity)))/100)
	}
	positive(p, path+".cache_entries", int64(t.CacheEntries))
	if t.Profile == "vihf" {
		if t.VIHF.SoftwareName == "" {
			p.add(path+".vihf.software_name", "required for the vihf profile (LPS_Nom)")
		}
		if t.VIHF.SoftwareVersion == "" {
			p.add(path+".vihf.software_version", "required for the vihf profile (LPS_Version)")
		}
	}
	if len(t.Attributes) > 0 && t.Profile != "roc" {
		p.add(path+".attributes", "only the roc profile takes configured attributes")
	}
	for _, k := range sortedKeys(t.Attributes) {
		xmlText(p, fmt.Sprintf("%s.attributes[%s]", path, k), k)
		xmlText(p, fmt.Sprintf("%s.attributes.%s", path, k), t.Attributes[k])
	}
	if keys, ok := TokenAttributeKeys[t.Profile]; ok {
		for _, k := range sortedKeys(t.AttributeNames) {
			if _, known := keys[k]; !known {
				p.add(fmt.Sprintf("%s.attribute_names.%s", path, k), "not an attribute of the %s profile (one of %s)", t.Profile, strings.Join(sortedKeys(keys), ", "))
				continue
			}
			if t.AttributeNames[k] == "" {
				p.add(fmt.Sprintf("%s.attribute_names.%s", path, k), "must not be empty")
			}
			xmlText(p, fmt.Sprintf("%s.attribute_names.%s", path, k), t.AttributeNames[k])
		}
		// One name, one attribute: a partner given two attributes of
		// the same name reads one of them, not necessarily ours.
		const twice = "the token would carry two attributes of that name"
		byName := map[string]string{}
		for _, k := range sortedKeys(keys) {
			name := keys[k]
			if n, ok := t.AttributeNames[k]; ok && n != "" {
				name = n
			}
			if other, dup := byName[name]; dup {
				p.add(fmt.Sprintf("%s.attribute_names.%s", path, k), "%q is also the name of %s: %s", name, other, twice)
				continue
			}
			byName[name] = k
		}
		if t.Profile == "roc" {
			for _, name := range sortedKeys(t.Attributes) {
				if k, dup := byName[name]; dup {
					p.add(fmt.Sprintf("%s.attributes.%s", path, name), "is also the name of %s: %s", k, twice)
				}
			}
		}
	}
	v := &t.VIHF
	for _, f := range [...]struct{ field, val string }{{"name_id", t.NameID}, {"structure_id", t.StructureID}, {"authn_context", t.AuthnContext},
		{"vihf.version", v.Version}, {"vihf.activity_sector", v.ActivitySector}, {"vihf.software_name", v.SoftwareName},
		{"vihf.software_version", v.SoftwareVersion}, {"vihf.software_id", v.SoftwareID}, {"vihf.homologation_id", v.HomologationID},
		{"vihf.ins_oid", v.INSOID}, {"vihf.resource_urn", v.ResourceURN}, {"vihf.purpose_of_use", v.PurposeOfUse},
		{"vihf.role_code_system", v.RoleCodeSystem}, {"vihf.confidentiality_code_system", v.ConfidentialityCS}} {
		xmlText(p, path+"."+f.field, f.val)
	}
	for _, k := range sortedKeys(v.CodeSystemNames) {
		xmlText(p, fmt.Sprintf("%s.vihf.code_system_names.%s", path, k), v.CodeSystemNames[k])
	}
}

// xmlText refuses a value the token cannot carry as is: characters that
// are not XML characters would be rewritten (to U+FFFD) when the token is
// written, and the signed value would differ from the configured one.
func xmlText(p *problems, path, v string) {
	for _, r := range v {
		if r == utf8.RuneError || r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF {
			p.add(path, "holds a character that is not an XML character (%U)", r)
			return
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (r *Revocation) validate(p *problems) {
	if r.RefreshAt <= 0 || r.RefreshAt >= 1 {
		p.add("revocation.refresh_at", "must be between 0 and 1 (share of an answer's validity), got %g", r.RefreshAt)
	}
	if r.Grace < 0 {
		p.add("revocation.grace", "must not be negative, got %s", r.Grace)
	}
	if r.ClockSkew < 0 {
		p.add("revocation.clock_skew", "must not be negative, got %s", r.ClockSkew)
	}
	positiveDur(p, "revocation.fetch_timeout", r.FetchTimeout)
	positiveDur(p, "revocation.check_interval", r.CheckInterval)
	positiveDur(p, "revocation.max_status_age", r.MaxStatusAge)
	positiveDur(p, "revocation.startup_budget", r.StartupBudget)
	if r.MaxStatusAge > 0 && r.CheckInterval > 0 && r.MaxStatusAge < r.CheckInterval {
		p.add("revocation.max_status_age", "must not be shorter than check_interval (%s), got %s", r.CheckInterval, r.MaxStatusAge)
	}
	positive(p, "revocation.max_crl_bytes", r.MaxCRLBytes)
	positive(p, "revocation.max_ocsp_bytes", r.MaxOCSPBytes)
	for i, is := range r.Issuers {
		path := fmt.Sprintf("revocation.issuers[%d]", i)
		if is == nil || is.Subject == "" {
			p.add(path+".subject", "required: the RFC 2253 subject of the certificate authority")
			continue
		}
		if _, err := ParseDN(is.Subject); err != nil {
			p.add(path+".subject", "%q is not a distinguished name: %v", is.Subject, err)
		}
		if is.OCSPURL != "" {
			validFetchURL(p, path+".ocsp_url", is.OCSPURL, false)
		}
		for k, u := range is.CRLURLs {
			validFetchURL(p, fmt.Sprintf("%s.crl_urls[%d]", path, k), u, true)
		}
		for k, u := range is.DeltaCRLURLs {
			validFetchURL(p, fmt.Sprintf("%s.delta_crl_urls[%d]", path, k), u, true)
		}
	}
}

// validFetchURL accepts http(s) URLs, and file:// URLs where files are
// allowed. LDAP is not fetched: configure an HTTP mirror.
func validFetchURL(p *problems, path, raw string, fileOK bool) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		p.add(path, "%q is not a URL", raw)
	case u.Scheme == "http" || u.Scheme == "https":
		if u.Host == "" {
			p.add(path, "%q has no host", raw)
		}
	case u.Scheme == "file" && fileOK:
		// RFC 8089: file:///p, file:/p and file://localhost/p name /p; a
		// host or a relative path would be read relative to the working
		// directory.
		if u.Host != "" && !strings.EqualFold(u.Host, "localhost") || !strings.HasPrefix(u.Path, "/") {
			p.add(path, "%q: a file URL names an absolute path on this machine (file:///path)", raw)
		}
	case u.Scheme == "ldap" || u.Scheme == "ldaps":
		p.add(path, "%q: LDAP is not fetched; publish the list over HTTP (or as a file) and give that URL", raw)
	default:
		p.add(path, "%q must be an http, https or file URL", raw)
	}
}

func (s *CertSource) validate(p *problems, path string) {
	if s == nil {
		return
	}
	hasP12 := s.PKCS12 != ""
	hasPEM := s.Cert != "" || s.Key != "" || s.Chain != ""
	switch {
	case hasP12 && hasPEM:
		p.add(path, "set either pkcs12 or cert/key, not both")
	case hasP12:
		if s.PasswordFile != "" && s.PasswordEnv != "" {
			p.add(path, "set either password_file or password_env, not both")
		}
	case hasPEM:
		if s.Cert == "" {
			p.add(path+".cert", "required with key")
		}
		if s.Key == "" {
			p.add(path+".key", "required with cert")
		}
		if s.PasswordFile != "" || s.PasswordEnv != "" {
			p.add(path, "password_file and password_env apply to pkcs12 only")
		}
	default:
		p.add(path, "required: pkcs12, or cert and key")
	}
}

func (r *Route) validateUpstream(p *problems, path string) {
	u, err := url.Parse(r.Upstream)
	switch {
	case r.Upstream == "":
		p.add(path+".upstream", "required")
	case err != nil:
		p.add(path+".upstream", "%q is not a URL", r.Upstream)
	case u.Scheme != "https":
		p.add(path+".upstream", "%q must be https: partners are reached over mutual TLS only", r.Upstream)
	case u.Host == "":
		p.add(path+".upstream", "%q has no host", r.Upstream)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		p.add(path+".upstream", "%q must not carry user info, query or fragment", r.Upstream)
	}
	if strings.ContainsAny(r.ServerName, " /:") {
		p.add(path+".server_name", "%q is not a host name", r.ServerName)
	}
}

// ParsePin decodes an SPKI pin "sha256/<base64>" to its 32-byte digest.
func ParsePin(pin string) ([]byte, error) {
	b64, ok := strings.CutPrefix(pin, "sha256/")
	if !ok {
		return nil, fmt.Errorf("pin %q must start with sha256/", pin)
	}
	sum, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(sum) != 32 {
		return nil, fmt.Errorf("pin %q is not the base64 of a SHA-256 digest", pin)
	}
	return sum, nil
}

func validAddr(p *problems, path, addr string) {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		p.add(path, "%q is not host:port", addr)
	}
}

func positive(p *problems, path string, v int64) {
	if v <= 0 {
		p.add(path, "must be positive, got %d", v)
	}
}

func positiveDur(p *problems, path string, d time.Duration) {
	if d <= 0 {
		p.add(path, "must be a positive duration, got %s", d)
	}
}

// SyslogFacilities are the facility names of RFC 5424, by code.
var SyslogFacilities = []string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
	"authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}

// validate checks a syslog collector; nil is no collector.
func (s *AuditSyslog) validate(p *problems, path string) {
	if s == nil {
		return
	}
	if host, port, err := net.SplitHostPort(s.Address); err != nil || host == "" || port == "" {
		p.add(path+".address", "%q is not host:port", s.Address)
	}
	switch s.Transport {
	case "tls":
		if s.CA == "" {
			p.add(path+".ca", "required with transport tls: the authorities of the collector's certificate")
		}
	case "tcp":
		if s.CA != "" || s.Cert != "" || s.Key != "" || s.ServerName != "" {
			p.add(path+".transport", "tcp takes no ca, cert, key or server_name: use tls")
		}
	default:
		p.add(path+".transport", "%q is not one of tls, tcp", s.Transport)
	}
	if (s.Cert == "") != (s.Key == "") {
		p.add(path+".cert", "cert and key go together")
	}
	found := false
	for _, f := range SyslogFacilities {
		found = found || f == s.Facility
	}
	if !found {
		p.add(path+".facility", "%q is not a syslog facility (authpriv, local0 ... local7, ...)", s.Facility)
	}
	for _, f := range []struct{ name, v string }{{"hostname", s.Hostname}, {"app_name", s.AppName}} {
		for _, r := range f.v {
			if r < 33 || r > 126 {
				p.add(path+"."+f.name, "%q must be printable ASCII without spaces", f.v)
				break
			}
		}
	}
	if len(s.AppName) > 48 {
		p.add(path+".app_name", "%q is longer than 48 characters", s.AppName)
	}
	if len(s.Hostname) > 255 {
		p.add(path+".hostname", "longer than 255 characters")
	}
	positiveDur(p, path+".timeout", s.Timeout)
}
