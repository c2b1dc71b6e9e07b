package saml

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"

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
			n, err := policy.Verify(context.Background(), a.Body)
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
		if _, err := policy.Verify(context.Background(), answer); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResponsePolicyDuplicateIDs is an answer from an attacker on the
// path (or a hostile partner): 20,000 elements carrying one ID, refused
// before any signature is checked. The work must grow with the answer's
// size, not with its square (a 10 MiB answer is 900,000 such elements).
func BenchmarkResponsePolicyDuplicateIDs(b *testing.B) {
	answer := []byte(`<S:Envelope xmlns:S="` + NSSOAP11 + `"><S:Body>` + strings.Repeat(`<a Id="x" ID="x"/><b id="x"/>`, 10000) + `</S:Body></S:Envelope>`)
	policy := &ResponsePolicy{Now: time.Now}
	b.SetBytes(int64(len(answer)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := policy.Verify(context.Background(), answer); err == nil || !strings.Contains(err.Error(), `ID "x" is carried by 10000 elements`) {
			b.Fatal(err)
		}
	}
}

// FuzzResponsePolicy feeds partner answers to the verifier: it must never
// panic, and an answer it accepts must show a reader of the SOAP Body only
// what the partner signed (the seeds' amount; a fuzzing worker's own test
// PKI signed none of its inputs, so there it must accept nothing).
func FuzzResponsePolicy(f *testing.F) {
	p := testpki.MustShared(f)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(p.OSIRoot.Cert)
	inter.AddCert(p.OSIServicesApplicatifs.Cert)
	f.Add([]byte(`<S:Envelope xmlns:S="` + NSSOAP11 + `"><S:Body><x/></S:Body></S:Envelope>`))
	if _, err := exec.LookPath("xmlsec1"); err == nil {
		l := samltest.Build(f, amcSigner(f, p.OSIServicesApplicatifs))
		for _, b := range [][]byte{l.Detached, l.Enveloped, l.WholeDocument, l.HeaderSigned} {
			f.Add(b)
		}
	}
	element, _ := ParseClark(samltest.SignedElement)
	policies := []*ResponsePolicy{
		{Roots: roots, Intermediates: inter, Now: time.Now},
		{Roots: roots, Intermediates: inter, Now: time.Now, SignedElement: []QName{element}},
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, policy := range policies {
			if _, err := policy.Verify(context.Background(), body); err != nil {
				continue
			}
			doc := etree.NewDocument()
			if err := doc.ReadFromBytes(body); err != nil {
				t.Fatalf("accepted an answer etree cannot read: %v", err)
			}
			for _, m := range doc.FindElements("//montant") {
				if m.Text() != samltest.Amount {
					t.Fatalf("accepted an answer showing the amount %q:\n%s", m.Text(), body)
				}
			}
		}
	})
}

// TestResponsePolicyKnownLimits holds the honest limits of
// docs/security-model.md to what they say: these answers are legitimate
// (xmlsec1 verifies them) and refused (goxmldsig canonicalizes them otherwise: the digest does not
// match). Should goxmldsig change, this test says the document must too.
func TestResponsePolicyKnownLimits(t *testing.T) {
	p := testpki.MustShared(t)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(p.OSIRoot.Cert)
	inter.AddCert(p.OSIServicesApplicatifs.Cert)
	policy := &ResponsePolicy{Roots: roots, Intermediates: inter, Now: time.Now}
	for _, l := range samltest.KnownLimits(t, amcSigner(t, p.OSIServicesApplicatifs)) {
		if err := samltest.Verify(t, l.Body, p.OSIRoot.Cert, []*x509.Certificate{p.OSIServicesApplicatifs.Cert}, l.IDArgs...); err != nil {
			t.Fatalf("%s: not legitimate for xmlsec1: %v", l.Name, err)
		}
		tampered := []byte(strings.Replace(string(l.Body), samltest.Amount, samltest.ForgedAmount, 1))
		if err := samltest.Verify(t, tampered, p.OSIRoot.Cert, []*x509.Certificate{p.OSIServicesApplicatifs.Cert}, l.IDArgs...); err == nil {
			t.Fatalf("%s: xmlsec1 accepts the tampered answer: the referee proves nothing", l.Name)
		}
		if _, err := policy.Verify(context.Background(), l.Body); err == nil || !strings.Contains(err.Error(), "the digest does not match") {
			t.Errorf("%s: %v, want the known refusal (digest)", l.Name, err)
		}
	}
}
