package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	pathpkg "path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
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
// errors.Join, section by section), or nil. It never modifies the
// configuration and never touches the file system: each section's check
// below is as pure.
func (c *Config) Validate() error {
	var p problems
	c.Listen.validate(&p)
	c.Log.validate(&p)
	c.Server.validate(&p)
	c.Identity.validate(&p)
	c.validateTrustBundles(&p)
	if c.OutboundProxy != nil {
		c.OutboundProxy.validate(&p, "outbound_proxy")
	}
	c.Revocation.validate(&p)
	c.validateAudit(&p)
	c.validateRoutes(&p)
	return errors.Join(p...)
}

// validate checks listen: the addresses, the SIH listener's TLS and the
// client addresses it serves.
func (l *Listen) validate(p *problems) {
	validAddr(p, "listen.sih", l.SIH)
	validAddr(p, "listen.admin", l.Admin)
	if t := l.TLS; t != nil {
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
	if l.AllowCIDRs != nil && len(l.AllowCIDRs) == 0 {
		// "allow_cidrs: []" reads as nobody, but serves everybody.
		p.add("listen.allow_cidrs", "empty: remove the key to serve every address, or list the SIH's networks")
	}
	for i, cidr := range l.AllowCIDRs {
		path := fmt.Sprintf("listen.allow_cidrs[%d]", i)
		a, bits := cidr.Addr(), cidr.Bits()
		switch {
		case !cidr.IsValid():
			p.add(path, "%q is not a CIDR (e.g. 10.0.0.0/8)", cidr.String())
		case a.Is4In6() && bits >= 96:
			// Clients are compared as IPv4 (unmapped): none would match.
			p.add(path, "%q is IPv4-mapped IPv6, which no client matches (IPv4 clients are compared as IPv4): write %s",
				cidr.String(), netip.PrefixFrom(a.Unmap(), bits-96).Masked())
		case cidr.Masked().Addr() != a:
			// 10.0.0.5/8 serves the whole /8: a host was likely meant.
			p.add(path, "%q has bits set past /%d: write %s (the network) or %s/%d (one host)",
				cidr.String(), bits, cidr.Masked(), a, a.BitLen())
		}
	}
	if l.SIH != "" && l.SIH == l.Admin && !strings.HasSuffix(l.SIH, ":0") {
		p.add("listen.admin", "same address as listen.sih")
	}
}

// validate checks log.
func (l *Log) validate(p *problems) {
	oneOf(p, "log.level", l.Level, logLevels)
	oneOf(p, "log.format", l.Format, logFormats)
	if f := l.FlushInterval; f != nil && *f < 0 {
		p.add("log.flush_interval", "must not be negative (0s writes each line at once), got %s", *f)
	}
}

// validate checks server: the SIH listener's limits and the admin
// listener's timeouts.
func (s *Server) validate(p *problems) {
	positive(p, "server.max_body_bytes", s.MaxBodyBytes)
	positive(p, "server.max_response_bytes", s.MaxResponseBytes)
	positiveDur(p, "server.read_header_timeout", s.ReadHeaderTimeout)
	positiveDur(p, "server.read_timeout", s.ReadTimeout)
	positiveDur(p, "server.idle_timeout", s.IdleTimeout)
	positiveDur(p, "server.shutdown_timeout", s.ShutdownTimeout)
	positiveDur(p, "server.write_timeout", s.WriteTimeout)
	positive(p, "server.max_connections", int64(s.MaxConnections))
	positive(p, "server.max_body_memory", s.MaxBodyMemory)
	positiveDur(p, "server.admin.read_timeout", s.Admin.ReadTimeout)
	positiveDur(p, "server.admin.write_timeout", s.Admin.WriteTimeout)
	positiveDur(p, "server.admin.idle_timeout", s.Admin.IdleTimeout)
}

// validate checks identity: the establishment's certificates.
func (id *Identity) validate(p *problems) {
	if id.Auth == nil {
		p.add("identity.auth", "required: the ORG_AUTH_CLI certificate (pkcs12, or cert and key)")
	} else {
		id.Auth.validate(p, "identity.auth")
	}
	id.Sign.validate(p, "identity.sign")
	positiveDur(p, "identity.reload_interval", id.ReloadInterval)
}

// validateTrustBundles checks trust_bundles, in name order.
func (c *Config) validateTrustBundles(p *problems) {
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
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
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

func validAddr(p *problems, path, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		p.add(path, "%q is not host:port", addr)
		return
	}
	// A port no restart makes valid (99999, "http") is the file's fault:
	// found here, it exits 78, not 1 (a restart loop).
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(n, 10) != port {
		p.add(path, "%q: the port must be a number from 0 to 65535", addr)
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
