package config

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The configuration's enumerations: each a string type with its values
// named here, so that consumers compare with these constants, never with
// string literals, and Validate names every wrong value with its path.

// LogLevel is log.level.
type LogLevel string

// LogLevel values.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

// LogFormat is log.format.
type LogFormat string

// LogFormat values.
const (
	LogJSON    LogFormat = "json"
	LogConsole LogFormat = "console"
)

// RevocationPolicy is routes[].revocation.policy: what an unknown status
// does (a revoked certificate is refused under hard and soft alike).
type RevocationPolicy string

// RevocationPolicy values.
const (
	// RevocationHard refuses a partner whose status is unknown.
	RevocationHard RevocationPolicy = "hard"
	// RevocationSoft allows it, with a warning and a metric.
	RevocationSoft RevocationPolicy = "soft"
	// RevocationOff checks nothing.
	RevocationOff RevocationPolicy = "off"
)

// RevocationSource is one of routes[].revocation.sources.
type RevocationSource string

// RevocationSource values.
const (
	SourceOCSP RevocationSource = "ocsp"
	SourceCRL  RevocationSource = "crl"
)

// RevocationSources are sources in the order they are consulted.
type RevocationSources []RevocationSource

// Names are the sources as the revocation engine names them.
func (s RevocationSources) Names() []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = string(v)
	}
	return out
}

// ResponseSignaturePolicy is routes[].response_signature.policy.
type ResponseSignaturePolicy string

// ResponseSignaturePolicy values.
const (
	// SignaturesOff verifies nothing.
	SignaturesOff ResponseSignaturePolicy = "off"
	// SignaturesLog verifies signatures present, logs and counts failures.
	SignaturesLog ResponseSignaturePolicy = "log"
	// SignaturesEnforce requires valid signatures, else 502.
	SignaturesEnforce ResponseSignaturePolicy = "enforce"
)

// TokenProfile is routes[].token.profile.
type TokenProfile string

// TokenProfile values.
const (
	// ProfileROC is the legal-person token of the AMC web services.
	ProfileROC TokenProfile = "roc"
	// ProfileVIHF is the DMP's token, indirect authentication.
	ProfileVIHF TokenProfile = "vihf"
)

// TokenPlacement is routes[].token.placement.
type TokenPlacement string

// TokenPlacement values.
const (
	// PlacementWSSE puts the assertion in the SOAP WS-Security header.
	PlacementWSSE TokenPlacement = "wsse"
	// PlacementHTTPHeader sends the base64 of the assertion in a header.
	PlacementHTTPHeader TokenPlacement = "http-header"
)

// IssuerFormat is routes[].token.issuer_format: how the signer's DN is
// written in Issuer.
type IssuerFormat string

// IssuerFormat values.
const (
	IssuerRFC2253 IssuerFormat = "rfc2253" // CN=...,C=FR
	IssuerX500    IssuerFormat = "x500"    // C=FR, ST=..., CN=...
)

// PatientIDMode is audit.patient_id: what a record keeps of the patient's
// INS.
type PatientIDMode string

// PatientIDMode values.
const (
	PatientIDHash PatientIDMode = "hash"
	PatientIDDrop PatientIDMode = "drop"
	PatientIDKeep PatientIDMode = "keep"
)

// SyslogTransport is audit.ship.syslog.transport.
type SyslogTransport string

// SyslogTransport values.
const (
	SyslogTLS SyslogTransport = "tls"
	SyslogTCP SyslogTransport = "tcp"
)

// SyslogFacility is audit.ship.syslog.facility, by its RFC 5424 name.
type SyslogFacility string

// Code is the facility's number (RFC 5424), -1 for an unknown name.
func (f SyslogFacility) Code() int {
	for i, name := range SyslogFacilities {
		if name == string(f) {
			return i
		}
	}
	return -1
}

// SyslogFacilities are the facility names of RFC 5424, by code.
var SyslogFacilities = []string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
	"authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}

// The values each enumeration takes, in the order messages list them.
var (
	logLevels          = []LogLevel{LogDebug, LogInfo, LogWarn, LogError}
	logFormats         = []LogFormat{LogJSON, LogConsole}
	revocationPolicies = []RevocationPolicy{RevocationHard, RevocationSoft, RevocationOff}
	revocationSources  = []RevocationSource{SourceOCSP, SourceCRL}
	signaturePolicies  = []ResponseSignaturePolicy{SignaturesOff, SignaturesLog, SignaturesEnforce}
	tokenProfiles      = []TokenProfile{ProfileROC, ProfileVIHF}
	tokenPlacements    = []TokenPlacement{PlacementWSSE, PlacementHTTPHeader}
	issuerFormats      = []IssuerFormat{IssuerRFC2253, IssuerX500}
	patientIDModes     = []PatientIDMode{PatientIDHash, PatientIDDrop, PatientIDKeep}
	syslogTransports   = []SyslogTransport{SyslogTLS, SyslogTCP}
)

// oneOf reports v when it is not one of values.
func oneOf[T ~string](p *problems, path string, v T, values []T) bool {
	for _, ok := range values {
		if v == ok {
			return true
		}
	}
	names := make([]string, len(values))
	for i, ok := range values {
		names[i] = string(ok)
	}
	p.add(path, "%q is not one of %s", string(v), strings.Join(names, ", "))
	return false
}

// Prefix is a CIDR of listen.allow_cidrs, parsed when the file is loaded.
// A text that is not a CIDR leaves the Prefix invalid, and Validate reports
// it with its path (every problem of a file is listed, not the first one).
type Prefix struct {
	netip.Prefix
	text string
}

// ParsePrefix is a Prefix from its text, for configurations built in code.
func ParsePrefix(text string) (Prefix, error) {
	p, err := netip.ParsePrefix(text)
	return Prefix{Prefix: p, text: text}, err
}

// UnmarshalYAML keeps the text and its parsed prefix.
func (p *Prefix) UnmarshalYAML(n *yaml.Node) error {
	var text string
	if err := n.Decode(&text); err != nil {
		return err
	}
	*p, _ = ParsePrefix(text)
	return nil
}

// String is the text of the configuration.
func (p Prefix) String() string { return p.text }

// Pin is an SPKI pin of routes[].spki_pins, "sha256/" + base64 of the
// SHA-256 of a SubjectPublicKeyInfo, decoded when the file is loaded. A
// text that is not a pin keeps why, and Validate reports it with its path.
type Pin struct {
	text string
	sum  []byte
	err  error
}

// NewPin is a Pin from its text, for configurations built in code.
func NewPin(text string) (Pin, error) {
	sum, err := ParsePin(text)
	return Pin{text: text, sum: sum, err: err}, err
}

// UnmarshalYAML keeps the text and its decoded digest.
func (p *Pin) UnmarshalYAML(n *yaml.Node) error {
	var text string
	if err := n.Decode(&text); err != nil {
		return err
	}
	*p, _ = NewPin(text)
	return nil
}

// SHA256 is the pinned SubjectPublicKeyInfo's digest (32 bytes), nil for
// a text that is not a pin.
func (p Pin) SHA256() []byte { return p.sum }

// String is the text of the configuration.
func (p Pin) String() string { return p.text }

// MarshalYAML writes the text back (so does Prefix).
func (p Pin) MarshalYAML() (any, error) { return p.text, nil }

// MarshalYAML writes the text back.
func (p Prefix) MarshalYAML() (any, error) { return p.text, nil }

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

// Pins are a route's pins.
type Pins []Pin

// SHA256s are the digests of the pins, as the verifier takes them.
func (ps Pins) SHA256s() [][]byte {
	var out [][]byte
	for _, p := range ps {
		out = append(out, p.sum)
	}
	return out
}

// Prefixes are listen.allow_cidrs.
type Prefixes []Prefix

// Netip are the parsed prefixes, as the SIH listener's filter takes them.
func (ps Prefixes) Netip() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		out = append(out, p.Prefix)
	}
	return out
}

// problem is what Validate says of a pin that is not one.
func (p Pin) problem() error {
	if p.err == nil && len(p.sum) != 32 {
		return fmt.Errorf("pin %q is not the base64 of a SHA-256 digest", p.text)
	}
	return p.err
}
