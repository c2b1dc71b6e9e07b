package revocation

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var (
	oidCRLNumber         = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidDeltaCRLIndicator = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidIssuingDP         = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidAuthorityKeyID    = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidFreshestCRL       = asn1.ObjectIdentifier{2, 5, 29, 46}
	oidReasonCode        = asn1.ObjectIdentifier{2, 5, 29, 21}
	oidInvalidityDate    = asn1.ObjectIdentifier{2, 5, 29, 24}
	oidCertIssuer        = asn1.ObjectIdentifier{2, 5, 29, 29}
	oidCRLDistPoints     = asn1.ObjectIdentifier{2, 5, 29, 31}
)

// reasonRemoveFromCRL in a delta CRL lifts a hold listed in the base.
const reasonRemoveFromCRL = 8

// crl is a verified CRL, indexed by serial.
type crl struct {
	url        string
	raw        []byte
	number     *big.Int
	thisUpdate time.Time
	nextUpdate time.Time
	// delta: baseNumber is the BaseCRLNumber of a delta CRL, nil for a
	// complete CRL.
	baseNumber *big.Int
	// scope of an Issuing Distribution Point: the CRL covers only these.
	onlyUser, onlyCA bool
	// partition: the Issuing Distribution Point names a distribution
	// point (a partitioned CRL); it then covers only the certificates
	// whose CRL distribution points name one of dpNames (DER
	// GeneralNames; none when it is named relative to the issuer).
	partition bool
	dpNames   [][]byte
	revoked   map[serialKey]int // reason code (0 when absent)
}

// issuingDistributionPoint (RFC 5280 5.2.5), the fields that change what a
// CRL covers.
type issuingDistributionPoint struct {
	DistributionPoint          asn1.RawValue  `asn1:"optional,tag:0"`
	OnlyContainsUserCerts      bool           `asn1:"optional,tag:1"`
	OnlyContainsCACerts        bool           `asn1:"optional,tag:2"`
	OnlySomeReasons            asn1.BitString `asn1:"optional,tag:3"`
	IndirectCRL                bool           `asn1:"optional,tag:4"`
	OnlyContainsAttributeCerts bool           `asn1:"optional,tag:5"`
}

// parseCRL parses and verifies der as a CRL of issuer. x509.ParseRevocationList
// accepts delta CRLs and scoped CRLs as if they were complete: every
// critical extension is checked here, and those that change the meaning of
// the list are honoured or make it unusable.
func parseCRL(der []byte, issuer *x509.Certificate, now time.Time, skew time.Duration) (*crl, error) {
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("parsing CRL: %w", err)
	}
	if !bytes.Equal(rl.RawIssuer, issuer.RawSubject) {
		return nil, fmt.Errorf("CRL %w", ErrWrongIssuer)
	}
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("CRL %w: %v", ErrBadSignature, err)
	}
	c := &crl{raw: der, number: rl.Number, thisUpdate: rl.ThisUpdate, nextUpdate: rl.NextUpdate, revoked: make(map[serialKey]int, len(rl.RevokedCertificateEntries))}
	if c.number == nil {
		c.number = new(big.Int)
	}
	if rl.ThisUpdate.After(now.Add(skew)) {
		return nil, fmt.Errorf("CRL %w (%s)", ErrNotYetValid, rl.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if rl.NextUpdate.IsZero() {
		return nil, fmt.Errorf("CRL has no nextUpdate: cannot tell when it goes stale")
	}
	for _, ext := range rl.Extensions {
		switch {
		case ext.Id.Equal(oidDeltaCRLIndicator):
			c.baseNumber = new(big.Int)
			if rest, err := asn1.Unmarshal(ext.Value, &c.baseNumber); err != nil || len(rest) > 0 {
				return nil, fmt.Errorf("CRL: malformed delta CRL indicator")
			}
		case ext.Id.Equal(oidIssuingDP):
			var idp issuingDistributionPoint
			if rest, err := asn1.Unmarshal(ext.Value, &idp); err != nil || len(rest) > 0 {
				return nil, fmt.Errorf("CRL: malformed issuing distribution point")
			}
			if idp.IndirectCRL || idp.OnlySomeReasons.BitLength > 0 || idp.OnlyContainsAttributeCerts {
				return nil, fmt.Errorf("CRL: issuing distribution point with indirect, partial-reason or attribute scope is not supported")
			}
			c.onlyUser, c.onlyCA = idp.OnlyContainsUserCerts, idp.OnlyContainsCACerts
			if len(idp.DistributionPoint.FullBytes) > 0 {
				c.partition = true
				if c.dpNames, err = fullNames(idp.DistributionPoint.Bytes); err != nil {
					return nil, fmt.Errorf("CRL: malformed issuing distribution point name")
				}
			}
		case ext.Id.Equal(oidCRLNumber), ext.Id.Equal(oidAuthorityKeyID), ext.Id.Equal(oidFreshestCRL):
		default:
			if ext.Critical {
				return nil, fmt.Errorf("CRL: %w %s", ErrUnknownCriticalExtension, ext.Id)
			}
		}
	}
	for _, e := range rl.RevokedCertificateEntries {
		for _, ext := range e.Extensions {
			if ext.Critical && !ext.Id.Equal(oidReasonCode) && !ext.Id.Equal(oidInvalidityDate) {
				// certificateIssuer (indirect CRL) and anything unknown.
				return nil, fmt.Errorf("CRL entry: %w %s", ErrUnknownCriticalExtension, ext.Id)
			}
		}
		k, ok := keyOfSerial(e.SerialNumber)
		if !ok {
			continue // longer than any serial we can be asked about
		}
		c.revoked[k] = e.ReasonCode
	}
	return c, nil
}

// covers reports whether the CRL's scope includes cert: what it does not
// list, it then says is not revoked. A partitioned CRL covers only the
// certificates that name one of its distribution points (RFC 5280
// 6.3.3 b.2.i): a partition that does not list a certificate says nothing
// about it.
func (c *crl) covers(cert *x509.Certificate) bool {
	if c.onlyUser && cert.IsCA || c.onlyCA && !cert.IsCA {
		return false
	}
	return !c.partition || namesDistributionPoint(cert, c.dpNames)
}

// fullNames reads a DistributionPointName (the content of the IDP's
// distributionPoint [0]) and returns the DER GeneralNames of its fullName;
// none for a name relative to the issuer, which no certificate's fullName
// can match.
func fullNames(dpName []byte) ([][]byte, error) {
	in := cryptobyte.String(dpName)
	var full cryptobyte.String
	var tag cbasn1.Tag
	if !in.ReadAnyASN1(&full, &tag) || !in.Empty() {
		return nil, fmt.Errorf("malformed distribution point name")
	}
	if tag != cbasn1.Tag(0).Constructed().ContextSpecific() {
		return nil, nil // nameRelativeToCRLIssuer
	}
	var out [][]byte
	for !full.Empty() {
		var gn cryptobyte.String
		if !full.ReadAnyASN1Element(&gn, &tag) {
			return nil, fmt.Errorf("malformed general name")
		}
		out = append(out, append([]byte(nil), gn...))
	}
	return out, nil
}

// namesDistributionPoint reports whether one of cert's CRL distribution
// points has a full name among names. It reads the extension in place: it
// runs on the request path, which must not allocate.
func namesDistributionPoint(cert *x509.Certificate, names [][]byte) bool {
	for i := range cert.Extensions {
		if !cert.Extensions[i].Id.Equal(oidCRLDistPoints) {
			continue
		}
		in := cryptobyte.String(cert.Extensions[i].Value)
		var dps cryptobyte.String
		if !in.ReadASN1(&dps, cbasn1.SEQUENCE) {
			return false
		}
		for !dps.Empty() {
			var dp, dpName, full cryptobyte.String
			var hasName, hasFull bool
			if !dps.ReadASN1(&dp, cbasn1.SEQUENCE) ||
				!dp.ReadOptionalASN1(&dpName, &hasName, cbasn1.Tag(0).Constructed().ContextSpecific()) {
				return false
			}
			if !hasName || !dpName.ReadOptionalASN1(&full, &hasFull, cbasn1.Tag(0).Constructed().ContextSpecific()) || !hasFull {
				continue
			}
			for !full.Empty() {
				var gn cryptobyte.String
				var tag cbasn1.Tag
				if !full.ReadAnyASN1Element(&gn, &tag) {
					return false
				}
				for _, n := range names {
					if bytes.Equal(gn, n) {
						return true
					}
				}
			}
		}
	}
	return false
}

// appliesTo reports whether delta can be applied on top of base (RFC 5280
// 5.2.4: the base's number is at least the delta's BaseCRLNumber, and the
// delta is newer).
func (delta *crl) appliesTo(base *crl) bool {
	return delta.baseNumber != nil && base.baseNumber == nil &&
		base.number.Cmp(delta.baseNumber) >= 0 && delta.number.Cmp(base.number) > 0
}

// lookup answers from base and, when it applies, delta.
func lookupCRL(base, delta *crl, k serialKey) Status {
	if delta != nil {
		if reason, listed := delta.revoked[k]; listed {
			if reason == reasonRemoveFromCRL {
				return StatusGood
			}
			return StatusRevoked
		}
	}
	if _, listed := base.revoked[k]; listed {
		return StatusRevoked
	}
	return StatusGood
}

// FreshestCRLURLs reads the Freshest CRL extension (delta CRL pointer) of a
// certificate: Go does not parse it.
func FreshestCRLURLs(cert *x509.Certificate) []string {
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidFreshestCRL) {
			continue
		}
		var dps []struct {
			DistributionPoint struct {
				FullName []asn1.RawValue `asn1:"optional,tag:0"`
			} `asn1:"optional,tag:0"`
		}
		if _, err := asn1.Unmarshal(ext.Value, &dps); err != nil {
			return nil
		}
		var out []string
		for _, dp := range dps {
			for _, n := range dp.DistributionPoint.FullName {
				if n.Tag == 6 { // uniformResourceIdentifier
					out = append(out, string(n.Bytes))
				}
			}
		}
		return out
	}
	return nil
}
