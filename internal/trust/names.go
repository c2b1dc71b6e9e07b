package trust

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
)

// DN formats a DER-encoded distinguished name in RFC 2253 order, one RDN per
// component as encoded. pkix.Name.String on a parsed certificate regroups
// repeated attributes (two OUs become "OU=a+OU=b"), which misprints
// IGC-Santé names.
func DN(raw []byte) string {
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(raw, &seq); err != nil || len(rest) > 0 {
		return "<malformed name>"
	}
	return seq.String()
}

// SubjectDN is the RFC 2253 subject of c.
func SubjectDN(c *x509.Certificate) string { return DN(c.RawSubject) }

// IssuerDN is the RFC 2253 issuer of c.
func IssuerDN(c *x509.Certificate) string { return DN(c.RawIssuer) }
