package saml

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/saml/samltest"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

func amcSigner(t testing.TB, ca *testpki.Cert) *testpki.Cert {
	t.Helper()
	c, err := ca.Issue(testpki.Template{Subject: pkix.Name{CommonName: "AMC SIGNATURE"}, KeyUsage: x509.KeyUsageDigitalSignature})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestResponsePolicy plays the partner's signed answers (xmlsec1) and each
// wrapping an attacker would try: legitimate answers verify, none of the
// others does, for the reason given.
func TestResponsePolicy(t *testing.T) {
	p := testpki.MustShared(t)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(p.OSIRoot.Cert)
	inter.AddCert(p.OSIServicesApplicatifs.Cert)
	element, err := ParseClark(samltest.SignedElement)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range samltest.Answers(t, amcSigner(t, p.OSIServicesApplicatifs), amcSigner(t, p.SanteOrg)) {
		t.Run(a.Name, func(t *testing.T) {
			policy := &ResponsePolicy{Roots: roots, Intermediates: inter, AllowSHA1: a.AllowSHA1, Now: time.Now}
			if a.SignedElement {
				policy.SignedElement = []QName{element}
			}
			n, err := policy.Verify(a.Body)
			if a.Refusal == "" {
				if err != nil || n == 0 {
					t.Fatalf("legitimate answer refused: %d %v\n%s", n, err, a.Body)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), a.Refusal) {
				t.Fatalf("error %v, want %q\n%s", err, a.Refusal, a.Body)
			}
			if a.Refusal == "no signature" && !errors.Is(err, ErrNoSignature) {
				t.Fatal("absence not reported as ErrNoSignature")
			}
		})
	}
}

// BenchmarkResponsePolicy is the check of a partner's answer under
// enforce: a WS-Security signature of the Body, signed by xmlsec1.
func BenchmarkResponsePolicy(b *testing.B) {
	p := testpki.MustShared(b)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(p.OSIRoot.Cert)
	inter.AddCert(p.OSIServicesApplicatifs.Cert)
	answer := samltest.Build(b, amcSigner(b, p.OSIServicesApplicatifs)).Detached
	policy := &ResponsePolicy{Roots: roots, Intermediates: inter, Now: time.Now}
	b.SetBytes(int64(len(answer)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := policy.Verify(answer); err != nil {
			b.Fatal(err)
		}
	}
}
