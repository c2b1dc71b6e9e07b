package revocation

import (
	"errors"
	"fmt"

	"github.com/roc-proxy/roc-proxy/config"
)

// Status of a certificate.
type Status int

// Statuses.
const (
	StatusUnknown Status = iota
	StatusGood
	StatusRevoked
)

func (s Status) String() string {
	switch s {
	case StatusGood:
		return "good"
	case StatusRevoked:
		return "revoked"
	}
	return "unknown"
}

// Source of a status: the sources a route's configuration names
// (routes[].revocation.sources), or none.
const (
	SourceOCSP = string(config.SourceOCSP)
	SourceCRL  = string(config.SourceCRL)
	SourceNone = "none"
)

// Error refuses a certificate: revoked, or status unknown under a hard
// policy.
type Error struct {
	Status  Status
	Source  string // ocsp, crl or none
	Subject string // RFC 2253 subject of the refused certificate
	Detail  string
}

func (e *Error) Error() string {
	if e.Status == StatusRevoked {
		return fmt.Sprintf("certificate %s is revoked (source %s): %s", e.Subject, e.Source, e.Detail)
	}
	return fmt.Sprintf("revocation status of certificate %s is unknown: %s", e.Subject, e.Detail)
}

// TrustReason is the refusal reason the trust package reports.
func (e *Error) TrustReason() string {
	if e.Status == StatusRevoked {
		return "revoked"
	}
	return "revocation_unavailable"
}

// RevocationSource says which source decided.
func (e *Error) RevocationSource() string { return e.Source }

// Reasons a fetched CRL or OCSP answer is not used.
var (
	ErrUnknownCriticalExtension = errors.New("unknown critical extension")
	ErrBadSignature             = errors.New("signature does not verify with the issuer's key")
	ErrExpired                  = errors.New("past its nextUpdate")
	ErrNotYetValid              = errors.New("thisUpdate is in the future")
	ErrDeltaBaseMismatch        = errors.New("delta CRL does not apply to the cached base CRL")
	ErrWrongIssuer              = errors.New("issued for another certificate authority")
	ErrResponder                = errors.New("OCSP responder certificate not acceptable")
	ErrTooLarge                 = errors.New("answer exceeds the size limit")
	ErrNoUsableURL              = errors.New("no usable URL (LDAP is not fetched, nor file:// from a certificate: configure an HTTP mirror in revocation.issuers)")
	ErrOlderThanCached          = errors.New("older than the cached answer (replay)")
	ErrRevokedIsFinal           = errors.New("the certificate is known revoked: a revocation other than certificateHold is final")
	ErrNotRegularFile           = errors.New("not a regular file")
)
