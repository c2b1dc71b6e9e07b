package saml

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"
)

// ErrNoSignature: a partner's response carries no ds:Signature.
var ErrNoSignature = errors.New("no signature in the response")

// VerifyResponse verifies every ds:Signature of a partner's response (the
// AMC signs with AC-SERVICES-APPLICATIFS): each must be an enveloped
// signature of its parent element, by a certificate that chains to roots.
// Detached references (WS-Security signatures of the Body by wsu:Id) are
// reported as not verifiable rather than trusted.
func VerifyResponse(body []byte, roots, intermediates *x509.CertPool, now time.Time) (int, error) {
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(body); err != nil {
		return 0, fmt.Errorf("response is not XML: %w", err)
	}
	var sigs []*etree.Element
	for _, s := range doc.FindElements("//Signature") {
		if s.NamespaceURI() == NSDSig {
			sigs = append(sigs, s)
		}
	}
	if len(sigs) == 0 {
		return 0, ErrNoSignature
	}
	for i, s := range sigs {
		parent := s.Parent()
		ref := s.FindElement("SignedInfo/Reference")
		if parent == nil || ref == nil {
			return i, errors.New("signature without a reference")
		}
		if uri := ref.SelectAttrValue("URI", ""); uri != "" && uri != "#"+parent.SelectAttrValue("ID", "") {
			return i, fmt.Errorf("signature %d references %s, not its parent: detached references are not verified", i+1, uri)
		}
		if err := verifyEnveloped(parent, roots, intermediates, now); err != nil {
			return i, fmt.Errorf("signature %d: %w", i+1, err)
		}
	}
	return len(sigs), nil
}

// verifyEnveloped checks el's enveloped signature and its certificate's
// chain. goxmldsig wants the signing certificate itself as trusted: the
// chain is verified here first.
func verifyEnveloped(el *etree.Element, roots, intermediates *x509.CertPool, now time.Time) error {
	certEl := el.FindElement("Signature/KeyInfo/X509Data/X509Certificate")
	if certEl == nil {
		return errors.New("no signing certificate in KeyInfo")
	}
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(certEl.Text()), ""))
	if err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("signing certificate: %w", err)
	}
	vc := dsig.NewDefaultValidationContext(&dsig.MemoryX509CertificateStore{Roots: []*x509.Certificate{cert}})
	vc.Clock = dsig.NewFakeClockAt(now)
	if _, err := vc.Validate(el); err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	return nil
}
