// Package certinfo describes certificates the way the establishment's
// administrators need: what a file holds, whether its chain is complete,
// which IGC-Santé role it fits, what its structure identifier means and
// where its revocation status is published.
//
// It only reads certificates; it never handles private keys.
package certinfo

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"math"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/revocation"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// Report is what inspect says of one certificate.
type Report struct {
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	Serial      string    `json:"serial"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	DaysLeft    int       `json:"days_left"`
	Key         string    `json:"key"`
	KeyUsage    []string  `json:"key_usage"`
	ExtKeyUsage []string  `json:"ext_key_usage"`
	// The subject alternative names: for a server certificate, the names
	// clients check.
	DNSNames       []string `json:"dns_names"`
	IPAddresses    []string `json:"ip_addresses"`
	URIs           []string `json:"uris"`
	EmailAddresses []string `json:"email_addresses"`
	// StructureID is the OU read as idNat_Struct.
	StructureID   *StructureID `json:"structure_id,omitempty"`
	CRL           []string     `json:"crl_urls"`
	DeltaCRL      []string     `json:"delta_crl_urls"`
	OCSP          []string     `json:"ocsp_urls"`
	CAIssuers     []string     `json:"ca_issuers_urls"`
	Chain         []string     `json:"chain"` // subjects, leaf first
	ChainComplete bool         `json:"chain_complete"`
	ChainProblem  string       `json:"chain_problem,omitempty"`
	Roles         []string     `json:"fits_roles"`
	// CA is set for an authority's certificate (a bundle member).
	CA       bool     `json:"ca"`
	Warnings []string `json:"warnings"`
}

// StructureID is an idNat_Struct decoded (DOMAIN.md, "Identifiers").
type StructureID struct {
	Value string `json:"value"`
	Kind  string `json:"kind"` // FINESS, SIRET, ADELI, RPPS-rang
	ID    string `json:"id"`
}

// DecodeStructureID reads an idNat_Struct: a one-digit prefix and the
// identifier. It returns nil when the value is not one.
func DecodeStructureID(v string) *StructureID {
	if len(v) < 2 {
		return nil
	}
	digits := func(s string) bool {
		for _, r := range s {
			if r < '0' || r > '9' {
				return false
			}
		}
		return true
	}
	id := v[1:]
	switch {
	case v[0] == '1' && len(id) == 9:
		return &StructureID{Value: v, Kind: "FINESS", ID: id}
	case v[0] == '3' && len(id) == 14 && digits(id):
		return &StructureID{Value: v, Kind: "SIRET", ID: id}
	case v[0] == '0' && digits(id):
		return &StructureID{Value: v, Kind: "ADELI", ID: id}
	case v[0] == '4' && digits(id):
		return &StructureID{Value: v, Kind: "RPPS-rang", ID: id}
	}
	return nil
}

// Inspect describes leaf (with the certificates that came with it) at now,
// building its chain from the given authorities.
func Inspect(leaf *x509.Certificate, extra []*x509.Certificate, store *trust.Store, now time.Time) *Report {
	r := &Report{
		Subject: trust.SubjectDN(leaf), Issuer: trust.IssuerDN(leaf), Serial: fmt.Sprintf("%X", leaf.SerialNumber),
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
		DaysLeft: int(math.Floor(leaf.NotAfter.Sub(now).Hours() / 24)),
		Key:      keyDescription(leaf), KeyUsage: keyUsages(leaf.KeyUsage), ExtKeyUsage: extKeyUsages(leaf.ExtKeyUsage),
		CRL: leaf.CRLDistributionPoints, DeltaCRL: revocation.FreshestCRLURLs(leaf), OCSP: leaf.OCSPServer, CAIssuers: leaf.IssuingCertificateURL,
		Roles: []string{}, Warnings: []string{},
		DNSNames: nonNil(leaf.DNSNames), IPAddresses: []string{}, URIs: []string{}, EmailAddresses: nonNil(leaf.EmailAddresses),
	}
	for _, ip := range leaf.IPAddresses {
		r.IPAddresses = append(r.IPAddresses, ip.String())
	}
	for _, u := range leaf.URIs {
		r.URIs = append(r.URIs, u.String())
	}
	for _, ou := range leaf.Subject.OrganizationalUnit {
		if s := DecodeStructureID(ou); s != nil {
			r.StructureID = s
			break
		}
	}
	switch {
	case now.After(leaf.NotAfter):
		r.Warnings = append(r.Warnings, "expired on "+leaf.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(leaf.NotBefore):
		r.Warnings = append(r.Warnings, "not valid before "+leaf.NotBefore.UTC().Format(time.DateOnly))
	case r.DaysLeft < 30:
		r.Warnings = append(r.Warnings, fmt.Sprintf("expires in %d days: order the renewal (the authority warns one month before)", r.DaysLeft))
	}
	// Roles, by IGC-Santé's rule of one certificate, one usage.
	if mtls.CheckRole(leaf, mtls.RoleAuthClient) == nil && hasEKU(leaf, x509.ExtKeyUsageClientAuth) {
		r.Roles = append(r.Roles, "ORG_AUTH_CLI")
	}
	if mtls.CheckRole(leaf, mtls.RoleSign) == nil && !hasEKU(leaf, x509.ExtKeyUsageClientAuth) && !hasEKU(leaf, x509.ExtKeyUsageServerAuth) {
		r.Roles = append(r.Roles, "ORG_SIGN")
	}
	if hasEKU(leaf, x509.ExtKeyUsageServerAuth) {
		r.Roles = append(r.Roles, "SERV_SSL")
	}
	r.CA = leaf.IsCA
	if len(r.Roles) == 0 && !r.CA {
		r.Warnings = append(r.Warnings, "fits none of ORG_AUTH_CLI, ORG_SIGN, SERV_SSL")
	}
	for _, u := range r.DeltaCRL {
		if len(u) > 4 && u[:4] == "ldap" {
			r.Warnings = append(r.Warnings, "the delta CRL is published over LDAP only: roc-proxy needs an HTTP mirror (revocation.issuers[].delta_crl_urls) to use it")
			break
		}
	}
	// Chain: at the certificate's own validity, so an expired certificate
	// still shows where it comes from.
	anchors, inter := store.Pools()
	trust.NewBundle("", extra...).AddTo(anchors, inter)
	at := now
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		at = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: anchors, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		r.ChainProblem = err.Error()
		r.Warnings = append(r.Warnings, "chain incomplete: the issuer "+r.Issuer+" is neither in the file nor in the bundles")
		r.Chain = []string{r.Subject}
		return r
	}
	r.ChainComplete = true
	for _, c := range chains[0] {
		r.Chain = append(r.Chain, trust.SubjectDN(c))
	}
	return r
}

// nonNil keeps JSON lists as [] rather than null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func hasEKU(c *x509.Certificate, u x509.ExtKeyUsage) bool {
	for _, e := range c.ExtKeyUsage {
		if e == u {
			return true
		}
	}
	return false
}

func keyDescription(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d bits", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	}
	return c.PublicKeyAlgorithm.String()
}

func keyUsages(ku x509.KeyUsage) []string {
	names := []string{"digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment", "keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"}
	out := []string{}
	for i, n := range names {
		if ku&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

func extKeyUsages(eku []x509.ExtKeyUsage) []string {
	names := map[x509.ExtKeyUsage]string{
		x509.ExtKeyUsageAny: "any", x509.ExtKeyUsageServerAuth: "serverAuth", x509.ExtKeyUsageClientAuth: "clientAuth",
		x509.ExtKeyUsageCodeSigning: "codeSigning", x509.ExtKeyUsageEmailProtection: "emailProtection",
		x509.ExtKeyUsageTimeStamping: "timeStamping", x509.ExtKeyUsageOCSPSigning: "OCSPSigning",
	}
	out := []string{}
	for _, u := range eku {
		if n, ok := names[u]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("%d", u))
		}
	}
	return out
}
