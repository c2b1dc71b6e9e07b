package saml

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"
	"github.com/russellhaering/goxmldsig/etreeutils"
)

// PrefixList is the InclusiveNamespaces PrefixList of the reference's
// exclusive canonicalization (DOMAIN.md, "The VIHF").
const PrefixList = "ds saml #default xsi"

const (
	algExcC14N   = "http://www.w3.org/2001/10/xml-exc-c14n#"
	algEnveloped = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
	algRSASHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
	algSHA256    = "http://www.w3.org/2001/04/xmlenc#sha256"
)

// Signer signs assertions with ORG_SIGN. goxmldsig canonicalizes; the
// Signature element is composed here because goxmldsig's signer neither
// writes the InclusiveNamespaces of a prefix list (verifiers would then
// canonicalize differently) nor places the Signature after Issuer.
type Signer struct {
	key  crypto.Signer
	cert *x509.Certificate
	// Fingerprint is the SHA-256 of the signing certificate: tokens signed
	// by a replaced certificate are never served from the cache.
	Fingerprint    [32]byte
	fingerprintHex string // for the audit records
	refC14N        dsig.Canonicalizer
	infoC14N       dsig.Canonicalizer
}

// NewSigner wraps the ORG_SIGN key and certificate.
func NewSigner(key crypto.Signer, cert *x509.Certificate) *Signer {
	fp := sha256.Sum256(cert.Raw)
	return &Signer{key: key, cert: cert, Fingerprint: fp, fingerprintHex: hex.EncodeToString(fp[:]),
		refC14N:  dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList(PrefixList),
		infoC14N: dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")}
}

// Certificate is the signing certificate.
func (s *Signer) Certificate() *x509.Certificate { return s.cert }

// Sign adds an enveloped signature to assertion a (which has no parent),
// right after its Issuer.
func (s *Signer) Sign(a *etree.Element) error {
	id := a.SelectAttrValue("ID", "")
	if id == "" {
		return fmt.Errorf("assertion has no ID")
	}
	canon, err := s.refC14N.Canonicalize(a.Copy())
	if err != nil {
		return fmt.Errorf("canonicalizing the assertion: %w", err)
	}
	digest := sha256.Sum256(canon)

	sig := etree.NewElement("ds:Signature")
	sig.CreateAttr("xmlns:ds", NSDSig)
	si := sig.CreateElement("ds:SignedInfo")
	si.CreateElement("ds:CanonicalizationMethod").CreateAttr("Algorithm", algExcC14N)
	si.CreateElement("ds:SignatureMethod").CreateAttr("Algorithm", algRSASHA256)
	ref := si.CreateElement("ds:Reference")
	ref.CreateAttr("URI", "#"+id)
	tr := ref.CreateElement("ds:Transforms")
	tr.CreateElement("ds:Transform").CreateAttr("Algorithm", algEnveloped)
	exc := tr.CreateElement("ds:Transform")
	exc.CreateAttr("Algorithm", algExcC14N)
	inc := exc.CreateElement("ec:InclusiveNamespaces")
	inc.CreateAttr("xmlns:ec", algExcC14N)
	inc.CreateAttr("PrefixList", PrefixList)
	ref.CreateElement("ds:DigestMethod").CreateAttr("Algorithm", algSHA256)
	ref.CreateElement("ds:DigestValue").SetText(base64.StdEncoding.EncodeToString(digest[:]))

	// SignedInfo is canonicalized with the declarations in scope where it
	// sits (the ds prefix, declared on Signature).
	nsctx, err := etreeutils.NSBuildParentContext(si)
	if err != nil {
		return err
	}
	detached, err := etreeutils.NSDetatch(nsctx, si)
	if err != nil {
		return err
	}
	siCanon, err := s.infoC14N.Canonicalize(detached)
	if err != nil {
		return fmt.Errorf("canonicalizing SignedInfo: %w", err)
	}
	h := sha256.Sum256(siCanon)
	value, err := s.key.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		return fmt.Errorf("signing with ORG_SIGN: %w", err)
	}
	sig.CreateElement("ds:SignatureValue").SetText(base64.StdEncoding.EncodeToString(value))
	sig.CreateElement("ds:KeyInfo").CreateElement("ds:X509Data").CreateElement("ds:X509Certificate").
		SetText(base64.StdEncoding.EncodeToString(s.cert.Raw))

	// Right after Issuer (the SAML schema's order).
	issuer := a.SelectElement("saml:Issuer")
	if issuer == nil {
		return fmt.Errorf("assertion has no Issuer")
	}
	a.InsertChildAt(issuer.Index()+1, sig)
	return nil
}
