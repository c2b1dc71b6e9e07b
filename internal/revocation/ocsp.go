package revocation

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"slices"
	"time"

	"golang.org/x/crypto/ocsp"
)

// ocspAnswer is a verified OCSP response for one certificate.
type ocspAnswer struct {
	status     Status
	raw        []byte
	thisUpdate time.Time
	nextUpdate time.Time
	producedAt time.Time
	revokedAt  time.Time
	reason     int
	// responder is the delegated responder certificate that signed the
	// answer; nil when the authority signed it with its own key.
	responder *x509.Certificate
}

// defaultOCSPValidity is used when a response carries no nextUpdate (the
// responder then says "newer information is always available").
const defaultOCSPValidity = time.Hour

// Minimal shapes of RFC 6960's BasicOCSPResponse, to read the CertID that
// x/crypto/ocsp does not expose: it matches a response on the serial only.
// encoding/asn1 ignores the trailing elements of a SEQUENCE that a struct
// does not name.
type ocspCertID struct {
	HashAlgorithm pkix.AlgorithmIdentifier
	NameHash      []byte
	KeyHash       []byte
	Serial        *big.Int
}

type ocspSingle struct {
	CertID ocspCertID
}

// parseOCSP verifies der as the OCSP answer for cert issued by issuer.
// x/crypto/ocsp, given the issuer, insists that an embedded certificate be
// issued by the issuer, which refuses a CA that signs its own answers and
// carries its own certificate (RFC 6960 4.2.2.2 allows it; openssl does
// it); it also matches on the serial alone and accepts any embedded
// certificate the issuer signed, expired or without the OCSPSigning usage.
// So the response is parsed without an issuer (which still checks the
// signature against an embedded certificate) and the signer is checked
// here: the issuer's own key, or a delegated responder the issuer
// certified for OCSP signing, valid now.
func parseOCSP(der []byte, cert, issuer *x509.Certificate, now time.Time, skew time.Duration) (*ocspAnswer, error) {
	resp, err := ocsp.ParseResponseForCert(der, cert, nil)
	if err != nil {
		return nil, fmt.Errorf("OCSP: %w", err)
	}
	if err := checkCertID(der, cert, issuer, resp.IssuerHash); err != nil {
		return nil, err
	}
	var responder *x509.Certificate
	if err := resp.CheckSignatureFrom(issuer); err != nil {
		// Not signed with the CA's key: only a delegated responder
		// certificate, carried in the response, can have signed it.
		rc := resp.Certificate
		if rc == nil {
			return nil, fmt.Errorf("OCSP: bad OCSP signature: %v", err)
		}
		if !bytes.Equal(rc.RawIssuer, issuer.RawSubject) || rc.CheckSignatureFrom(issuer) != nil {
			return nil, fmt.Errorf("OCSP: bad OCSP signature: the responder certificate %q is not issued by the certificate's authority", rc.Subject.String())
		}
		if !slices.Contains(rc.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
			return nil, fmt.Errorf("OCSP: %w: no OCSPSigning usage", ErrResponder)
		}
		if now.Before(rc.NotBefore) || now.After(rc.NotAfter) {
			return nil, fmt.Errorf("OCSP: %w: expired or not yet valid (valid %s to %s)", ErrResponder,
				rc.NotBefore.UTC().Format(time.RFC3339), rc.NotAfter.UTC().Format(time.RFC3339))
		}
		responder = rc
	}
	if resp.ThisUpdate.After(now.Add(skew)) || resp.ProducedAt.After(now.Add(skew)) {
		return nil, fmt.Errorf("OCSP: %w", ErrNotYetValid)
	}
	a := &ocspAnswer{raw: der, thisUpdate: resp.ThisUpdate, nextUpdate: resp.NextUpdate, producedAt: resp.ProducedAt, responder: responder}
	if a.nextUpdate.IsZero() {
		a.nextUpdate = resp.ThisUpdate.Add(defaultOCSPValidity)
	}
	switch resp.Status {
	case ocsp.Good:
		a.status = StatusGood
	case ocsp.Revoked:
		a.status, a.revokedAt, a.reason = StatusRevoked, resp.RevokedAt, resp.RevocationReason
	default:
		a.status = StatusUnknown
	}
	return a, nil
}

// checkCertID finds the single response for cert and checks that it names
// issuer (name and key hashes), not merely the same serial.
func checkCertID(der []byte, cert, issuer *x509.Certificate, h crypto.Hash) error {
	var outer struct {
		Status asn1.Enumerated
		Bytes  struct {
			Type     asn1.ObjectIdentifier
			Response []byte
		} `asn1:"explicit,tag:0,optional"`
	}
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		return fmt.Errorf("OCSP: %w", err)
	}
	var basic struct {
		Data struct {
			Raw       asn1.RawContent
			Version   int `asn1:"optional,default:0,explicit,tag:0"`
			Responder asn1.RawValue
			Produced  time.Time `asn1:"generalized"`
			Responses []ocspSingle
		}
	}
	if _, err := asn1.Unmarshal(outer.Bytes.Response, &basic); err != nil {
		return fmt.Errorf("OCSP: %w", err)
	}
	if !h.Available() {
		return fmt.Errorf("OCSP: hash %v unavailable", h)
	}
	nameHash := digest(h, issuer.RawSubject)
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
		return fmt.Errorf("OCSP: issuer key: %w", err)
	}
	keyHash := digest(h, spki.PublicKey.RightAlign())
	// The first response with the serial is the one ParseResponseForCert
	// read the status from.
	for _, r := range basic.Data.Responses {
		if r.CertID.Serial.Cmp(cert.SerialNumber) != 0 {
			continue
		}
		if bytes.Equal(r.CertID.NameHash, nameHash) && bytes.Equal(r.CertID.KeyHash, keyHash) {
			return nil
		}
		break
	}
	return fmt.Errorf("OCSP: response %w (issuer name or key hash differs)", ErrWrongIssuer)
}

func digest(h crypto.Hash, b []byte) []byte {
	d := h.New()
	d.Write(b)
	return d.Sum(nil)
}
