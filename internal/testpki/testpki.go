// Package testpki generates certificate hierarchies that imitate the
// IGC-Santé "ORG" offer and the GIE SESAM-Vitale IGC OSI, for tests, the demo
// and the benchmark harness.
//
// It owns key generation and certificate issuance for non-production use
// only. It must never be wired into the serving path of roc-proxy, and no key
// it generates is ever committed: everything is made at run time.
package testpki

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Cert is a certificate with its private key and the certificate authority
// that issued it (nil for a self-signed root).
type Cert struct {
	Cert   *x509.Certificate
	Key    *rsa.PrivateKey
	Issuer *Cert
}

// Template describes a certificate to issue. Zero fields get the defaults of
// the issuing method.
type Template struct {
	Subject     pkix.Name
	IsCA        bool
	KeyUsage    x509.KeyUsage
	ExtKeyUsage []x509.ExtKeyUsage
	// UnknownExtKeyUsage are extended key usages Go has no name for
	// (documentSigning, an authority's private usage).
	UnknownExtKeyUsage []asn1.ObjectIdentifier
	DNSNames           []string
	IPAddresses        []net.IP
	NotBefore          time.Time
	NotAfter           time.Time
	// CRLURL and OCSPURL, when set, go into the CRL distribution point and
	// the Authority Information Access extension; DeltaCRLURL into a
	// Freshest CRL extension (delta CRL pointer).
	CRLURL      string
	OCSPURL     string
	DeltaCRLURL string
	// KeyBits defaults to 2048.
	KeyBits int
	// PathLenZero makes a certificate authority that may issue only end
	// entities (basicConstraints pathlen:0), as the real IGC-Santé
	// intermediates are.
	PathLenZero bool
}

// oidIGCSanteProfile is the private, non-critical extension that real
// IGC-Santé leaves carry (1.2.250.1.71.1.2.5); the test leaves carry it too so
// that parsers are exercised on it.
var oidIGCSanteProfile = asn1.ObjectIdentifier{1, 2, 250, 1, 71, 1, 2, 5}

// NewRoot makes a self-signed root certificate authority.
func NewRoot(t Template) (*Cert, error) {
	t.IsCA = true
	return issue(nil, t)
}

// Issue makes a certificate signed by c.
func (c *Cert) Issue(t Template) (*Cert, error) {
	if c == nil || !c.Cert.IsCA {
		return nil, errors.New("testpki: issuer is not a certificate authority")
	}
	return issue(c, t)
}

// Chain returns the certificate followed by its issuers, excluding the
// self-signed root: what a TLS peer sends.
func (c *Cert) Chain() []*x509.Certificate {
	var out []*x509.Certificate
	for n := c; n != nil && n.Issuer != nil; n = n.Issuer {
		out = append(out, n.Cert)
	}
	if len(out) == 0 {
		out = append(out, c.Cert)
	}
	return out
}

// Root returns the self-signed root at the top of c's hierarchy.
func (c *Cert) Root() *Cert {
	n := c
	for n.Issuer != nil {
		n = n.Issuer
	}
	return n
}

// Signer returns the private key as a crypto.Signer.
func (c *Cert) Signer() crypto.Signer { return c.Key }

func issue(parent *Cert, t Template) (*Cert, error) {
	bits := t.KeyBits
	if bits == 0 {
		bits = 2048
	}
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("testpki: generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("testpki: serial: %w", err)
	}
	now := time.Now()
	if t.NotBefore.IsZero() {
		t.NotBefore = now.Add(-time.Hour)
	}
	if t.NotAfter.IsZero() {
		if t.IsCA {
			t.NotAfter = t.NotBefore.AddDate(20, 0, 0)
		} else {
			t.NotAfter = t.NotBefore.AddDate(3, 0, 0) // IGC-Santé ORG certificates live 3 years.
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               t.Subject,
		NotBefore:             t.NotBefore,
		NotAfter:              t.NotAfter,
		KeyUsage:              t.KeyUsage,
		ExtKeyUsage:           t.ExtKeyUsage,
		UnknownExtKeyUsage:    t.UnknownExtKeyUsage,
		DNSNames:              t.DNSNames,
		IPAddresses:           t.IPAddresses,
		BasicConstraintsValid: true,
		IsCA:                  t.IsCA,
		MaxPathLenZero:        t.IsCA && t.PathLenZero,
	}
	if t.IsCA {
		if tmpl.KeyUsage == 0 {
			tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		}
	} else {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidIGCSanteProfile, Value: []byte{0x05, 0x00}})
	}
	if t.CRLURL != "" {
		tmpl.CRLDistributionPoints = []string{t.CRLURL}
	}
	if t.OCSPURL != "" {
		tmpl.OCSPServer = []string{t.OCSPURL}
	}
	if t.DeltaCRLURL != "" {
		ext, err := freshestCRL(t.DeltaCRLURL)
		if err != nil {
			return nil, err
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, ext)
	}
	signerCert, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signerCert, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, &key.PublicKey, signerKey)
	if err != nil {
		return nil, fmt.Errorf("testpki: creating certificate %q: %w", t.Subject.String(), err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testpki: parsing certificate %q: %w", t.Subject.String(), err)
	}
	return &Cert{Cert: cert, Key: key, Issuer: parent}, nil
}

var oidFreshestCRL = asn1.ObjectIdentifier{2, 5, 29, 46}

// freshestCRL encodes a Freshest CRL extension (same syntax as CRL
// distribution points) with one URI.
func freshestCRL(url string) (pkix.Extension, error) {
	type dpName struct {
		FullName []asn1.RawValue `asn1:"optional,tag:0"`
	}
	type dp struct {
		DistributionPoint dpName `asn1:"optional,tag:0"`
	}
	v, err := asn1.Marshal([]dp{{DistributionPoint: dpName{FullName: []asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(url)}}}}})
	return pkix.Extension{Id: oidFreshestCRL, Value: v}, err
}
