package mtls

import (
	"crypto/x509"
	"fmt"
	"slices"
	"strings"

	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// Role is what a certificate is used for. IGC-Santé's rule is one
// certificate, one usage: a signing certificate is never a TLS client and
// the reverse.
type Role int

// Roles of the establishment's certificates.
const (
	// RoleAuthClient is ORG_AUTH_CLI: the TLS client of mutual TLS.
	RoleAuthClient Role = iota + 1
	// RoleSign is ORG_SIGN (cachet): signs SAML tokens.
	RoleSign
)

func (r Role) String() string {
	switch r {
	case RoleAuthClient:
		return "ORG_AUTH_CLI (TLS client)"
	case RoleSign:
		return "ORG_SIGN (signature)"
	}
	return "unknown role"
}

func (r Role) extKeyUsage() x509.ExtKeyUsage {
	if r == RoleSign {
		return x509.ExtKeyUsageEmailProtection
	}
	return x509.ExtKeyUsageClientAuth
}

// CheckRole says why c does not fit role r, or returns nil.
func CheckRole(c *x509.Certificate, r Role) error {
	hasEKU := func(u x509.ExtKeyUsage) bool { return slices.Contains(c.ExtKeyUsage, u) }
	switch r {
	case RoleAuthClient:
		if hasEKU(x509.ExtKeyUsageEmailProtection) && !hasEKU(x509.ExtKeyUsageClientAuth) {
			return fmt.Errorf("certificate %s is a signing certificate (ORG_SIGN: emailProtection usage), not a TLS client certificate (ORG_AUTH_CLI needs clientAuth): one certificate, one usage", trust.SubjectDN(c))
		}
		if len(c.ExtKeyUsage) > 0 && !hasEKU(x509.ExtKeyUsageClientAuth) && !hasEKU(x509.ExtKeyUsageAny) {
			return fmt.Errorf("certificate %s lacks the clientAuth extended key usage required of %s", trust.SubjectDN(c), r)
		}
		if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
			return fmt.Errorf("certificate %s lacks the digitalSignature key usage required of %s", trust.SubjectDN(c), r)
		}
	case RoleSign:
		if (hasEKU(x509.ExtKeyUsageClientAuth) || hasEKU(x509.ExtKeyUsageServerAuth)) && !hasEKU(x509.ExtKeyUsageEmailProtection) {
			return fmt.Errorf("certificate %s is a TLS certificate (clientAuth/serverAuth usage), not a signing certificate (ORG_SIGN): one certificate, one usage", trust.SubjectDN(c))
		}
		if err := CheckSigningUsage(c); err != nil {
			return fmt.Errorf("%w, required of %s", err, r)
		}
	default:
		return fmt.Errorf("unknown role %d", r)
	}
	return nil
}

// Extended key usages for other purposes than signing documents: a
// certificate whose every usage is one of these (a TLS server or client,
// an OCSP responder, a time-stamping authority...) signs no SAML token and
// no partner answer.
var notForDocuments = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageServerAuth:                     "serverAuth",
	x509.ExtKeyUsageClientAuth:                     "clientAuth",
	x509.ExtKeyUsageCodeSigning:                    "codeSigning",
	x509.ExtKeyUsageTimeStamping:                   "timeStamping",
	x509.ExtKeyUsageOCSPSigning:                    "OCSPSigning",
	x509.ExtKeyUsageIPSECEndSystem:                 "ipsecEndSystem",
	x509.ExtKeyUsageIPSECTunnel:                    "ipsecTunnel",
	x509.ExtKeyUsageIPSECUser:                      "ipsecUser",
	x509.ExtKeyUsageMicrosoftServerGatedCrypto:     "msSGC",
	x509.ExtKeyUsageNetscapeServerGatedCrypto:      "nsSGC",
	x509.ExtKeyUsageMicrosoftCommercialCodeSigning: "msCodeCom",
	x509.ExtKeyUsageMicrosoftKernelCodeSigning:     "msKernelCodeSigning",
}

// CheckSigningUsage says why c may not sign documents (a SAML token, a
// partner's SOAP answer), or returns nil. Its key usage, when present,
// must include digitalSignature or nonRepudiation; its extended key
// usage, when present, must name one usage for signing documents:
// emailProtection (what IGC-Santé's signing leaves, ORG_SIGN, carry),
// anyExtendedKeyUsage, or one Go has no name for (RFC 9336's
// documentSigning, an authority's private usage). A certificate whose
// every usage is for TLS or another known purpose (serverAuth, clientAuth,
// OCSPSigning, timeStamping, codeSigning, IPsec) is refused: the partner's
// TLS server key, issued by AC-SERVEUR beside the AC-SERVICES-APPLICATIFS
// of the same bundle, must not sign what the SIH reads.
func CheckSigningUsage(c *x509.Certificate) error {
	if c.KeyUsage != 0 && c.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return fmt.Errorf("certificate %s has neither digitalSignature nor nonRepudiation key usage", trust.SubjectDN(c))
	}
	if len(c.ExtKeyUsage) == 0 || len(c.UnknownExtKeyUsage) > 0 {
		return nil
	}
	var others []string
	for _, u := range c.ExtKeyUsage {
		name, ok := notForDocuments[u]
		if !ok {
			return nil // emailProtection, any
		}
		others = append(others, name)
	}
	return fmt.Errorf("certificate %s is for %s, not for signing documents (its extended key usage): one certificate, one usage",
		trust.SubjectDN(c), strings.Join(others, ", "))
}
