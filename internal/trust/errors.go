package trust

import (
	"crypto/x509"
	"errors"
)

// Reason classifies why a partner's certificate was refused. The values are
// stable: they appear in JSON error bodies and as metric label values.
type Reason string

// Reasons a chain is refused.
const (
	ReasonUnknownAuthority Reason = "unknown_authority"
	ReasonExpired          Reason = "expired"
	ReasonNameMismatch     Reason = "name_mismatch"
	ReasonBadUsage         Reason = "bad_usage"
	ReasonPinMismatch      Reason = "pin_mismatch"
	ReasonNoCertificate    Reason = "no_certificate"
	ReasonInvalid          Reason = "invalid"
	// ReasonRevoked and ReasonRevocationUnavailable come from the route's
	// revocation check (a ChainChecker).
	ReasonRevoked               Reason = "revoked"
	ReasonRevocationUnavailable Reason = "revocation_unavailable"
)

// VerifyError is returned when a partner's chain is refused.
type VerifyError struct {
	Reason Reason
	// Subject is the RFC 2253 subject of the partner's leaf, when known.
	Subject string
	// Source says which revocation source decided (ocsp, crl, none).
	Source string
	Err    error
}

func (e *VerifyError) Error() string {
	if e.Subject == "" {
		return "partner certificate refused (" + string(e.Reason) + "): " + e.Err.Error()
	}
	return "partner certificate " + e.Subject + " refused (" + string(e.Reason) + "): " + e.Err.Error()
}

func (e *VerifyError) Unwrap() error { return e.Err }

// ErrPinMismatch means the leaf's public key matches none of the route's pins.
var ErrPinMismatch = errors.New("public key matches none of the configured SPKI pins")

// revocationError is what a ChainChecker's refusals implement.
type revocationError interface {
	error
	TrustReason() string
	RevocationSource() string
}

func classify(err error) Reason {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var re revocationError
	switch {
	case errors.As(err, &re):
		return Reason(re.TrustReason())
	case errors.Is(err, ErrPinMismatch):
		return ReasonPinMismatch
	case errors.As(err, &ua):
		return ReasonUnknownAuthority
	case errors.As(err, &he):
		return ReasonNameMismatch
	case errors.As(err, &ci):
		switch ci.Reason {
		case x509.Expired:
			return ReasonExpired
		case x509.IncompatibleUsage:
			return ReasonBadUsage
		}
	}
	return ReasonInvalid
}
