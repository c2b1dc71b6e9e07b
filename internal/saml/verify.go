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

// VerifyEnvelope finds the one SAML assertion of a SOAP envelope and
// verifies its signature (goxmldsig) and its signing certificate's chain up
// to roots at time now (the signer's intermediates are not in the token:
// partners hold them). It is the partner's side, used by the simulators and
// the tests.
func VerifyEnvelope(envelope []byte, roots, intermediates *x509.CertPool, now time.Time) (*etree.Element, error) {
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(envelope); err != nil {
		return nil, err
	}
	var found []*etree.Element
	for _, el := range doc.FindElements("//Assertion") {
		if el.NamespaceURI() == NSAssertion {
			found = append(found, el)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("%d SAML assertions, want exactly 1", len(found))
	}
	a := found[0]
	// Comments and processing instructions are outside the signed
	// (canonical) form: one inside NameID would let "8100<!---->1" read as
	// "8100" while the signature still verifies.
	if err := noHiddenNodes(a); err != nil {
		return nil, err
	}
	if err := verifyEnveloped(a, roots, intermediates, now); err != nil {
		return nil, err
	}
	return a, nil
}

func noHiddenNodes(el *etree.Element) error {
	for _, t := range el.Child {
		switch c := t.(type) {
		case *etree.Comment:
			return errors.New("comment inside the signed assertion")
		case *etree.ProcInst:
			return errors.New("processing instruction inside the signed assertion")
		case *etree.Element:
			if err := noHiddenNodes(c); err != nil {
				return err
			}
		}
	}
	return nil
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
