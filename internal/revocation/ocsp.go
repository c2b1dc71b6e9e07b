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

// ocspSingle is one SingleResponse. A response may carry several (RFC
// 6960 4.2.1); x/crypto/ocsp reads the first with the certificate's serial,
// whatever its issuer: the status is read here from the one that names the
// certificate's issuer too.
type ocspSingle struct {
	CertID     ocspCertID
	Good       asn1.Flag        `asn1:"tag:0,optional"`
	Revoked    asn1.RawValue    `asn1:"tag:1,optional"` // RevokedInfo, read when present
	Unknown    asn1.Flag        `asn1:"tag:2,optional"`
	ThisUpdate time.Time        `asn1:"generalized"`
	NextUpdate time.Time        `asn1:"generalized,explicit,tag:0,optional"`
	Extensions []pkix.Extension `asn1:"explicit,tag:1,optional"`
}

type ocspRevokedInfo struct {
	RevocationTime time.Time       `asn1:"generalized"`
	Reason         asn1.Enumerated `asn1:"explicit,tag:0,optional"`
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
	single, err := singleFor(der, cert, issuer)
	if err != nil {
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
	if single.ThisUpdate.After(now.Add(skew)) || resp.ProducedAt.After(now.Add(skew)) {
		return nil, fmt.Errorf("OCSP: %w", ErrNotYetValid)
	}
	for _, ext := range single.Extensions {
		if ext.Critical {
			return nil, fmt.Errorf("OCSP: %w %s", ErrUnknownCriticalExtension, ext.Id)
		}
	}
	a := &ocspAnswer{raw: der, thisUpdate: single.ThisUpdate, nextUpdate: single.NextUpdate, producedAt: resp.ProducedAt, responder: responder}
	if a.nextUpdate.IsZero() {
		a.nextUpdate = single.ThisUpdate.Add(defaultOCSPValidity)
	}
	switch {
	case bool(single.Good):
		a.status = StatusGood
	case len(single.Revoked.FullBytes) > 0:
		var ri ocspRevokedInfo
		if _, err := asn1.UnmarshalWithParams(single.Revoked.FullBytes, &ri, "tag:1"); err != nil {
			return nil, fmt.Errorf("OCSP: malformed revoked status: %w", err)
		}
		a.status, a.revokedAt, a.reason = StatusRevoked, ri.RevocationTime, int(ri.Reason)
	default:
		a.status = StatusUnknown
	}
	return a, nil
}

// singleFor finds the SingleResponse about cert: its serial, and its
// issuer's name and key hashes (with the hash algorithm it names). None is
// an answer about another certificate.
func singleFor(der []byte, cert, issuer *x509.Certificate) (*ocspSingle, error) {
	var outer struct {
		Status asn1.Enumerated
		Bytes  struct {
			Type     asn1.ObjectIdentifier
			Response []byte
		} `asn1:"explicit,tag:0,optional"`
	}
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		return nil, fmt.Errorf("OCSP: %w", err)
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
		return nil, fmt.Errorf("OCSP: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, fmt.Errorf("OCSP: issuer key: %w", err)
	}
	for i := range basic.Data.Responses {
		r := &basic.Data.Responses[i]
		if r.CertID.Serial == nil || r.CertID.Serial.Cmp(cert.SerialNumber) != 0 {
			continue
		}
		h, ok := certIDHash(r.CertID.HashAlgorithm.Algorithm)
		if !ok {
			continue
		}
		if bytes.Equal(r.CertID.NameHash, digest(h, issuer.RawSubject)) && bytes.Equal(r.CertID.KeyHash, digest(h, spki.PublicKey.RightAlign())) {
			return r, nil
		}
	}
	return nil, fmt.Errorf("OCSP: response %w (issuer name or key hash differs)", ErrWrongIssuer)
}

// certIDHash is the hash a CertID names (those x/crypto/ocsp accepts).
func certIDHash(oid asn1.ObjectIdentifier) (crypto.Hash, bool) {
	for h, o := range map[crypto.Hash]asn1.ObjectIdentifier{
		crypto.SHA1:   {1, 3, 14, 3, 2, 26},
		crypto.SHA256: {2, 16, 840, 1, 101, 3, 4, 2, 1},
		crypto.SHA384: {2, 16, 840, 1, 101, 3, 4, 2, 2},
		crypto.SHA512: {2, 16, 840, 1, 101, 3, 4, 2, 3},
	} {
		if oid.Equal(o) && h.Available() {
			return h, true
		}
	}
	return 0, false
}

func digest(h crypto.Hash, b []byte) []byte {
	d := h.New()
	d.Write(b)
	return d.Sum(nil)
}
