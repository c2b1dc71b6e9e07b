package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Default values, in one place. docs/configuration.md quotes them.
const (
	DefaultSIHAddress        = "127.0.0.1:8080"
	DefaultAdminAddress      = "127.0.0.1:9090"
	DefaultLogLevel          = "info"
	DefaultLogFormat         = "json"
	DefaultLogFlushInterval  = 250 * time.Millisecond
	DefaultMaxBodyBytes      = 10 << 20
	DefaultMaxResponseBytes  = 10 << 20
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 60 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultShutdownTimeout   = 25 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultMaxConnections    = 1024
	DefaultMaxBodyMemory     = 128 << 20
	DefaultAdminReadTimeout  = 10 * time.Second
	DefaultAdminWriteTimeout = 30 * time.Second
	DefaultAdminIdleTimeout  = 30 * time.Second
	DefaultConnectTimeout    = 5 * time.Second
	DefaultTLSHandshake      = 10 * time.Second
	DefaultResponseHeader    = 30 * time.Second
	DefaultTotalTimeout      = 60 * time.Second

	DefaultRevocationPolicy = "hard"
	DefaultRefreshAt        = 0.5
	DefaultGrace            = time.Hour
	DefaultClockSkew        = 5 * time.Minute
	DefaultFetchTimeout     = 5 * time.Second
	DefaultCheckInterval    = time.Minute
	DefaultMaxStatusAge     = time.Hour
	DefaultStartupBudget    = 2 * time.Minute
	DefaultMaxCRLBytes      = 32 << 20
	DefaultMaxOCSPBytes     = 64 << 10
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
	DefaultIssuerFormat   = "rfc2253"
	DefaultTokenValidity  = 5 * time.Minute
	DefaultReuseFraction  = 0.5
	DefaultExpiryMargin   = 30 * time.Second
	DefaultNotBeforeSkew  = time.Minute
	DefaultCacheEntries   = 10000
	DefaultAuthnContext   = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"
	DefaultVIHFVersion    = "3.0"
	DefaultActivitySector = "SA05^1.2.250.1.71.4.2.4"
	DefaultINSOID         = "1.2.250.1.213.1.4.10"
	DefaultResourceURN    = "urn:dmp"
	DefaultPurposeOfUse   = "normal"
	DefaultRoleCodeSystem = "1.2.250.1.71.1.2.7"
	DefaultConfCodeSystem = "2.16.840.1.113883.5.25"
)

// DefaultCheckpointInterval bounds how long audit records stay covered by
// no signature: the chain's tail is signed this long after new records at
// the latest.
const DefaultCheckpointInterval = 10 * time.Second

// DefaultRevocationSources is the order sources are consulted in.
var DefaultRevocationSources = []string{"ocsp", "crl"}

// Load reads, strictly decodes, completes with defaults and validates the
// configuration file at path. Relative paths inside the file are taken
// relative to the file's folder.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
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

func (c *Config) applyDefaults() {
	setStr := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setStr(&c.Listen.SIH, DefaultSIHAddress)
	setStr(&c.Listen.Admin, DefaultAdminAddress)
	setStr(&c.Log.Level, DefaultLogLevel)
	setStr(&c.Log.Format, DefaultLogFormat)
	if c.Log.FlushInterval == nil {
		d := time.Duration(DefaultLogFlushInterval)
		c.Log.FlushInterval = &d
	}
	if c.Server.MaxBodyBytes == 0 {
		c.Server.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.Server.MaxResponseBytes == 0 {
		c.Server.MaxResponseBytes = DefaultMaxResponseBytes
	}
	setDur(&c.Server.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDur(&c.Server.ReadTimeout, DefaultReadTimeout)
	setDur(&c.Server.IdleTimeout, DefaultIdleTimeout)
	setDur(&c.Server.ShutdownTimeout, DefaultShutdownTimeout)
	setDur(&c.Server.WriteTimeout, DefaultWriteTimeout)
	if c.Server.MaxConnections == 0 {
		c.Server.MaxConnections = DefaultMaxConnections
	}
	if c.Server.MaxBodyMemory == 0 {
		c.Server.MaxBodyMemory = DefaultMaxBodyMemory
	}
	setDur(&c.Server.Admin.ReadTimeout, DefaultAdminReadTimeout)
	setDur(&c.Server.Admin.WriteTimeout, DefaultAdminWriteTimeout)
	setDur(&c.Server.Admin.IdleTimeout, DefaultAdminIdleTimeout)
	setDur(&c.Identity.ReloadInterval, 30*time.Second)
	au := &c.Audit
	if au.MaxFileBytes == 0 {
		au.MaxFileBytes = 64 << 20
	}
	setDur(&au.MaxFileAge, 24*time.Hour)
	if au.CheckpointEvery == 0 {
		au.CheckpointEvery = 1000
	}
	setDur(&au.CheckpointInterval, DefaultCheckpointInterval)
	setStr(&au.PatientID, "hash")
	if sl := au.Ship.Syslog; sl != nil {
		setStr(&sl.Transport, "tls")
		setStr(&sl.Facility, "authpriv")
		setStr(&sl.AppName, "roc-proxy")
		setDur(&sl.Timeout, 10*time.Second)
	}
	rv := &c.Revocation
	if rv.RefreshAt == 0 {
		rv.RefreshAt = DefaultRefreshAt
	}
	setDur(&rv.Grace, DefaultGrace)
	setDur(&rv.ClockSkew, DefaultClockSkew)
	setDur(&rv.FetchTimeout, DefaultFetchTimeout)
	setDur(&rv.CheckInterval, DefaultCheckInterval)
	setDur(&rv.MaxStatusAge, DefaultMaxStatusAge)
	setDur(&rv.StartupBudget, DefaultStartupBudget)
	if rv.MaxCRLBytes == 0 {
		rv.MaxCRLBytes = DefaultMaxCRLBytes
	}
	if rv.MaxOCSPBytes == 0 {
		rv.MaxOCSPBytes = DefaultMaxOCSPBytes
	}
	for _, r := range c.Routes {
		if r == nil {
			continue
		}
		if t := r.Token; t != nil {
			setStr(&t.IssuerFormat, DefaultIssuerFormat)
			setStr(&t.Placement, "wsse")
			if t.Placement == "http-header" {
				setStr(&t.HTTPHeader, "X-Saml-Token")
			}
			setDur(&t.Validity, DefaultTokenValidity)
			if t.ReuseFraction == 0 {
				t.ReuseFraction = DefaultReuseFraction
			}
			setDur(&t.ExpiryMargin, DefaultExpiryMargin)
			setDur(&t.NotBeforeSkew, DefaultNotBeforeSkew)
			if t.CacheEntries == 0 {
				t.CacheEntries = DefaultCacheEntries
			}
			setStr(&t.AuthnContext, DefaultAuthnContext)
			v := &t.VIHF
			setStr(&v.Version, DefaultVIHFVersion)
			setStr(&v.ActivitySector, DefaultActivitySector)
			setStr(&v.INSOID, DefaultINSOID)
			setStr(&v.ResourceURN, DefaultResourceURN)
			setStr(&v.PurposeOfUse, DefaultPurposeOfUse)
			setStr(&v.RoleCodeSystem, DefaultRoleCodeSystem)
			setStr(&v.ConfidentialityCS, DefaultConfCodeSystem)
		}
		if len(r.Methods) == 0 {
			r.Methods = []string{"POST"}
		}
		setStr(&r.Revocation.Policy, DefaultRevocationPolicy)
		setStr(&r.ResponseSignature.Policy, "off")
		if r.ResponseSignature.MaxNodes == 0 {
			r.ResponseSignature.MaxNodes = DefaultResponseMaxNodes
		}
		if r.ResponseSignature.MaxDepth == 0 {
			r.ResponseSignature.MaxDepth = DefaultResponseMaxDepth
		}
		if r.Dynamic != nil && len(r.Dynamic.Ports) == 0 {
			r.Dynamic.Ports = []int{443}
		}
		if len(r.Revocation.Sources) == 0 {
			r.Revocation.Sources = append([]string(nil), DefaultRevocationSources...)
		}
		if r.MaxBodyBytes == 0 {
			r.MaxBodyBytes = c.Server.MaxBodyBytes
		}
		if r.MaxResponseBytes == 0 {
			r.MaxResponseBytes = c.Server.MaxResponseBytes
		}
		setDur(&r.Timeouts.Connect, DefaultConnectTimeout)
		setDur(&r.Timeouts.TLSHandshake, DefaultTLSHandshake)
		setDur(&r.Timeouts.ResponseHeader, DefaultResponseHeader)
		setDur(&r.Timeouts.Total, DefaultTotalTimeout)
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
