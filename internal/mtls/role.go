package mtls

import (
	"crypto/x509"
	"fmt"
	"slices"

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
		if c.KeyUsage != 0 && c.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
			return fmt.Errorf("certificate %s has neither digitalSignature nor nonRepudiation key usage, required of %s", trust.SubjectDN(c), r)
		}
	default:
		return fmt.Errorf("unknown role %d", r)
	}
	return nil
}
