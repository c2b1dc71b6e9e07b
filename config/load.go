package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/roc-proxy/roc-proxy/internal/boundedfile"
)

// Default values, in one place. docs/configuration.md quotes them.
const (
	DefaultSIHAddress   = "127.0.0.1:8080"
	DefaultAdminAddress = "127.0.0.1:9090"
	// DefaultTLSALPNPort is where ACME's TLS-ALPN challenge is answered
	// (certmagic's own default too).
	DefaultTLSALPNPort             = 443
	DefaultLogLevel                = LogInfo
	DefaultLogFormat               = LogJSON
	DefaultLogFlushInterval        = 250 * time.Millisecond
	DefaultMaxBodyBytes      int64 = 10 << 20
	DefaultMaxResponseBytes  int64 = 10 << 20
	DefaultReadHeaderTimeout       = 10 * time.Second
	DefaultReadTimeout             = 60 * time.Second
	DefaultIdleTimeout             = 120 * time.Second
	DefaultShutdownTimeout         = 25 * time.Second
	DefaultWriteTimeout            = 30 * time.Second
	DefaultMaxConnections          = 1024
	DefaultMaxBodyMemory     int64 = 128 << 20
	DefaultReloadInterval          = 30 * time.Second
	DefaultAdminReadTimeout        = 10 * time.Second
	DefaultAdminWriteTimeout       = 30 * time.Second
	DefaultAdminIdleTimeout        = 30 * time.Second
	DefaultConnectTimeout          = 5 * time.Second
	DefaultTLSHandshake            = 10 * time.Second
	DefaultResponseHeader          = 30 * time.Second
	DefaultTotalTimeout            = 60 * time.Second

	DefaultRevocationPolicy       = RevocationHard
	DefaultRefreshAt              = 0.5
	DefaultGrace                  = time.Hour
	DefaultClockSkew              = 5 * time.Minute
	DefaultFetchTimeout           = 5 * time.Second
	DefaultCheckInterval          = time.Minute
	DefaultMaxStatusAge           = time.Hour
	DefaultForgetAfter            = 7 * 24 * time.Hour
	DefaultStartupBudget          = 2 * time.Minute
	DefaultMaxCRLBytes      int64 = 32 << 20
	DefaultMaxOCSPBytes     int64 = 64 << 10

	DefaultResponseSignaturePolicy = SignaturesOff
	DefaultRefuseRevokedSigner     = true
	DefaultStripPrefix             = true
)

// Bounds of a partner's answer checked under response_signature, before
// its tree is built (docs/security-model.md, "Partners' signed answers"):
// a tree costs 100 to 200 bytes a node however few bytes the node takes in
// the answer.
const (
	DefaultResponseMaxNodes = 50000
	DefaultResponseMaxDepth = 128
	// MinResponseMaxDepth is what a WS-Security signature needs
	// (Envelope/Header/Security/Signature/SignedInfo/Reference/
	// Transforms/Transform) with room for the answer's own nesting;
	// MaxResponseMaxDepth keeps recursive walks of the tree shallow.
	MinResponseMaxDepth = 16
	MaxResponseMaxDepth = 1024
)

// Token defaults (DOMAIN.md, "The VIHF").
const (
	DefaultIssuerFormat   = IssuerRFC2253
	DefaultTokenPlacement = PlacementWSSE
	// DefaultTokenHTTPHeader is the header of placement http-header.
	DefaultTokenHTTPHeader = "X-Saml-Token"
	DefaultTokenValidity   = 5 * time.Minute
	DefaultReuseFraction   = 0.5
	DefaultExpiryMargin    = 30 * time.Second
	DefaultNotBeforeSkew   = time.Minute
	DefaultCacheEntries    = 10000
	DefaultAuthnContext    = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"
	DefaultVIHFVersion     = "3.0"
	DefaultActivitySector  = "SA05^1.2.250.1.71.4.2.4"
	DefaultINSOID          = "1.2.250.1.213.1.4.10"
	DefaultResourceURN     = "urn:dmp"
	DefaultPurposeOfUse    = "normal"
	DefaultRoleCodeSystem  = "1.2.250.1.71.1.2.7"
	DefaultConfCodeSystem  = "2.16.840.1.113883.5.25"
)

// DefaultCheckpointInterval bounds how long audit records stay covered by
// no signature: the chain's tail is signed this long after new records at
// the latest.
const DefaultCheckpointInterval = 10 * time.Second

// Audit defaults.
const (
	DefaultAuditMaxFileBytes int64 = 64 << 20
	DefaultAuditMaxFileAge         = 24 * time.Hour
	DefaultCheckpointEvery         = 1000
	DefaultPatientID               = PatientIDHash
	DefaultSyslogTransport         = SyslogTLS
	DefaultSyslogFacility          = SyslogFacility("authpriv")
	DefaultSyslogAppName           = "roc-proxy"
	DefaultSyslogTimeout           = 10 * time.Second
	// DefaultAuditFSync: each signed record is durable before its token
	// leaves.
	DefaultAuditFSync = true
)

// DefaultRevocationSources is the order sources are consulted in.
var DefaultRevocationSources = RevocationSources{SourceOCSP, SourceCRL}

// DefaultMethods are the methods a route serves (SOAP), DefaultDynamicPorts
// the ports a dynamic route reaches.
var (
	DefaultMethods      = []string{"POST"}
	DefaultDynamicPorts = []int{443}
)

// Load reads, strictly decodes, completes with defaults and validates the
// configuration file at path. Relative paths inside the file are taken
// relative to the file's folder.
func Load(path string) (*Config, error) {
	// Within a limit: --config /dev/zero, or a log file named by
	// mistake, must not fill the memory (nor a reload do so later).
	data, err := boundedfile.Read(path, boundedfile.Config)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	cfg, err := Parse(data, filepath.Dir(path))
	if err != nil {
		return nil, &FileError{File: path, Err: err}
	}
	return cfg, nil
}

// FileError is a problem (or several, joined) found in a file.
type FileError struct {
	File string
	Err  error
}

// Error puts each problem on its own line under the file name.
func (e *FileError) Error() string {
	msg := e.Err.Error()
	if !strings.Contains(msg, "\n") {
		return e.File + ": " + msg
	}
	return e.File + ":\n  " + strings.ReplaceAll(msg, "\n", "\n  ")
}

func (e *FileError) Unwrap() error { return e.Err }

// Parse is Load on bytes; baseDir anchors relative paths.
func Parse(data []byte, baseDir string) (*Config, error) {
	cfg := &Config{}
	// yaml drops a null list item ("- " with nothing, "~", an empty
	// template value) from the list it decodes: allow_cidrs: [~] or
	// allowed_clients: [~] would be an empty list, every address or
	// client served; spki_pins: [~] no pin at all. Each is refused with
	// its path before decoding.
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err == nil {
		var p problems
		nullItems(&p, "", &doc)
		if len(p) > 0 {
			return nil, errors.Join(p...)
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("decoding: more than one YAML document")
	}
	cfg.applyDefaults()
	cfg.resolvePaths(baseDir)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// nullItems reports the null items of the sequences under n, with their
// paths. Aliases are not followed: what they name is walked where it is
// anchored.
func nullItems(p *problems, path string, n *yaml.Node) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			nullItems(p, path, c)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if path != "" {
				key = path + "." + key
			}
			nullItems(p, key, n.Content[i+1])
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			item := fmt.Sprintf("%s[%d]", path, i)
			if c.Kind == yaml.ScalarNode && c.ShortTag() == "!!null" {
				p.add(item, "empty list item (line %d): give it a value or remove it", c.Line)
				continue
			}
			nullItems(p, item, c)
		}
	}
}

// setDefault sets *p to v when the file left it out (zero).
func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// setDefaultBool sets *p to v when the file left the flag out (nil).
func setDefaultBool(p **bool, v bool) {
	if *p == nil {
		*p = &v
	}
}

func (c *Config) applyDefaults() {
	setDefault(&c.Listen.SIH, DefaultSIHAddress)
	setDefault(&c.Listen.Admin, DefaultAdminAddress)
	if t := c.Listen.TLS; t != nil && t.ACME != nil {
		setDefault(&t.ACME.AltTLSALPNPort, DefaultTLSALPNPort)
	}
	setDefault(&c.Log.Level, DefaultLogLevel)
	setDefault(&c.Log.Format, DefaultLogFormat)
	if c.Log.FlushInterval == nil {
		d := time.Duration(DefaultLogFlushInterval)
		c.Log.FlushInterval = &d
	}
	sv := &c.Server
	setDefault(&sv.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(&sv.MaxResponseBytes, DefaultMaxResponseBytes)
	setDefault(&sv.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&sv.ReadTimeout, DefaultReadTimeout)
	setDefault(&sv.IdleTimeout, DefaultIdleTimeout)
	setDefault(&sv.ShutdownTimeout, DefaultShutdownTimeout)
	setDefault(&sv.WriteTimeout, DefaultWriteTimeout)
	setDefault(&sv.MaxConnections, DefaultMaxConnections)
	setDefault(&sv.MaxBodyMemory, DefaultMaxBodyMemory)
	setDefault(&sv.Admin.ReadTimeout, DefaultAdminReadTimeout)
	setDefault(&sv.Admin.WriteTimeout, DefaultAdminWriteTimeout)
	setDefault(&sv.Admin.IdleTimeout, DefaultAdminIdleTimeout)
	setDefault(&c.Identity.ReloadInterval, DefaultReloadInterval)
	au := &c.Audit
	setDefault(&au.MaxFileBytes, DefaultAuditMaxFileBytes)
	setDefault(&au.MaxFileAge, DefaultAuditMaxFileAge)
	setDefault(&au.CheckpointEvery, DefaultCheckpointEvery)
	setDefault(&au.CheckpointInterval, DefaultCheckpointInterval)
	setDefault(&au.PatientID, DefaultPatientID)
	setDefaultBool(&au.FSync, DefaultAuditFSync)
	if sl := au.Ship.Syslog; sl != nil {
		setDefault(&sl.Transport, DefaultSyslogTransport)
		setDefault(&sl.Facility, DefaultSyslogFacility)
		setDefault(&sl.AppName, DefaultSyslogAppName)
		setDefault(&sl.Timeout, DefaultSyslogTimeout)
	}
	rv := &c.Revocation
	setDefault(&rv.RefreshAt, DefaultRefreshAt)
	setDefault(&rv.Grace, DefaultGrace)
	setDefault(&rv.ClockSkew, DefaultClockSkew)
	setDefault(&rv.FetchTimeout, DefaultFetchTimeout)
	setDefault(&rv.CheckInterval, DefaultCheckInterval)
	setDefault(&rv.MaxStatusAge, DefaultMaxStatusAge)
	setDefault(&rv.ForgetAfter, DefaultForgetAfter)
	setDefault(&rv.StartupBudget, DefaultStartupBudget)
	setDefault(&rv.MaxCRLBytes, DefaultMaxCRLBytes)
	setDefault(&rv.MaxOCSPBytes, DefaultMaxOCSPBytes)
	setDefaultBool(&rv.RefuseRevokedSigner, DefaultRefuseRevokedSigner)
	for _, r := range c.Routes {
		if r == nil {
			continue
		}
		if t := r.Token; t != nil {
			setDefault(&t.IssuerFormat, DefaultIssuerFormat)
			setDefault(&t.Placement, DefaultTokenPlacement)
			if t.Placement == PlacementHTTPHeader {
				setDefault(&t.HTTPHeader, DefaultTokenHTTPHeader)
			}
			setDefault(&t.Validity, DefaultTokenValidity)
			setDefault(&t.ReuseFraction, DefaultReuseFraction)
			setDefault(&t.ExpiryMargin, DefaultExpiryMargin)
			setDefault(&t.NotBeforeSkew, DefaultNotBeforeSkew)
			setDefault(&t.CacheEntries, DefaultCacheEntries)
			setDefault(&t.AuthnContext, DefaultAuthnContext)
			v := &t.VIHF
			setDefault(&v.Version, DefaultVIHFVersion)
			setDefault(&v.ActivitySector, DefaultActivitySector)
			setDefault(&v.INSOID, DefaultINSOID)
			setDefault(&v.ResourceURN, DefaultResourceURN)
			setDefault(&v.PurposeOfUse, DefaultPurposeOfUse)
			setDefault(&v.RoleCodeSystem, DefaultRoleCodeSystem)
			setDefault(&v.ConfidentialityCS, DefaultConfCodeSystem)
		}
		setDefaultBool(&r.StripPrefix, DefaultStripPrefix)
		if len(r.Methods) == 0 {
			r.Methods = append([]string(nil), DefaultMethods...)
		}
		setDefault(&r.Revocation.Policy, DefaultRevocationPolicy)
		setDefault(&r.ResponseSignature.Policy, DefaultResponseSignaturePolicy)
		setDefault(&r.ResponseSignature.MaxNodes, DefaultResponseMaxNodes)
		setDefault(&r.ResponseSignature.MaxDepth, DefaultResponseMaxDepth)
		if r.Dynamic != nil && len(r.Dynamic.Ports) == 0 {
			r.Dynamic.Ports = append([]int(nil), DefaultDynamicPorts...)
		}
		if len(r.Revocation.Sources) == 0 {
			r.Revocation.Sources = append(RevocationSources(nil), DefaultRevocationSources...)
		}
		setDefault(&r.MaxBodyBytes, c.Server.MaxBodyBytes)
		setDefault(&r.MaxResponseBytes, c.Server.MaxResponseBytes)
		setDefault(&r.Timeouts.Connect, DefaultConnectTimeout)
		setDefault(&r.Timeouts.TLSHandshake, DefaultTLSHandshake)
		setDefault(&r.Timeouts.ResponseHeader, DefaultResponseHeader)
		setDefault(&r.Timeouts.Total, DefaultTotalTimeout)
	}
}

func (c *Config) resolvePaths(base string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	for _, s := range []*CertSource{c.Identity.Auth, c.Identity.Sign, c.Audit.CheckpointKey} {
		if s != nil {
			for _, p := range []*string{&s.PKCS12, &s.PasswordFile, &s.Cert, &s.Key, &s.Chain} {
				abs(p)
			}
		}
	}
	abs(&c.Revocation.CacheDir)
	abs(&c.Audit.PatientIDKey)
	if c.OutboundProxy != nil {
		abs(&c.OutboundProxy.PasswordFile)
	}
	if pc := c.Revocation.OutboundProxy; pc != nil {
		abs(&pc.PasswordFile)
	}
	for _, r := range c.Routes {
		if r != nil && r.OutboundProxy != nil {
			abs(&r.OutboundProxy.PasswordFile)
		}
	}
	if t := c.Listen.TLS; t != nil {
		abs(&t.Cert)
		abs(&t.Key)
		abs(&t.ClientCA)
		if a := t.ACME; a != nil {
			abs(&a.CABundle)
			abs(&a.Storage)
		}
	}
	abs(&c.Audit.Dir)
	if sl := c.Audit.Ship.Syslog; sl != nil {
		abs(&sl.CA)
		abs(&sl.Cert)
		abs(&sl.Key)
	}
	for _, b := range c.TrustBundles {
		if b == nil {
			continue
		}
		for i := range b.Paths {
			abs(&b.Paths[i])
		}
	}
}
