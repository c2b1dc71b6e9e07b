package saml

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/saml/samltest"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// signers are the certificates TestResponseSigners signs answers with,
// made once (RSA key generation is slow under -race).
type signers struct {
	applicatifs, email, documentSigning, other *testpki.Cert
	server, clientServer, ocsp, encipherOnly   *testpki.Cert
	fromServeur                                *testpki.Cert
}

var (
	signersOnce sync.Once
	signersVal  *signers
	signersErr  error
)

// oidDocumentSigning is RFC 9336's id-kp-documentSigning, which Go does
// not name.
var oidDocumentSigning = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 36}

func testSigners(t testing.TB) (*testpki.PKI, *signers) {
	t.Helper()
	p := testpki.MustShared(t)
	signersOnce.Do(func() {
		s := &signers{server: p.Servers[testpki.IDBHost]}
		issue := func(dst **testpki.Cert, ca *testpki.Cert, cn string, ku x509.KeyUsage, eku []x509.ExtKeyUsage, unknown ...asn1.ObjectIdentifier) {
			if signersErr != nil {
				return
			}
			*dst, signersErr = ca.Issue(testpki.Template{Subject: pkix.Name{CommonName: cn, Organization: []string{"AMC SIMULEE"}, Country: []string{"FR"}},
				KeyUsage: ku, ExtKeyUsage: eku, UnknownExtKeyUsage: unknown})
		}
		sig := x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
		sa := p.OSIServicesApplicatifs
		if s.applicatifs, signersErr = p.IssueAnswerSigner(sa, "", "AMC SIGNATURE", testpki.Options{}); signersErr != nil {
			return
		}
		issue(&s.other, sa, "AMC SIGNATURE AUTRE", sig, nil)
		issue(&s.email, sa, "AMC SIGNATURE EMAIL", sig, []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection})
		issue(&s.documentSigning, sa, "AMC SIGNATURE DOCUMENTS", sig, nil, oidDocumentSigning)
		issue(&s.clientServer, p.OSIServeur, "AMC TLS", x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment,
			[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth})
		issue(&s.ocsp, sa, "AMC OCSP", x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning})
		issue(&s.encipherOnly, sa, "AMC CHIFFREMENT", x509.KeyUsageKeyEncipherment, nil)
		issue(&s.fromServeur, p.OSIServeur, "AMC SIGNATURE HORS AC", sig, nil)
		signersVal = s
	})
	if signersErr != nil {
		t.Fatal(signersErr)
	}
	return p, signersVal
}

// TestResponseSigners plays answers signed with certificates of the
// partner's PKI that are not its signing certificates: the IGC OSI bundle
// holds AC-SERVEUR (TLS servers) beside AC-SERVICES-APPLICATIFS, and the
// partner's TLS server key, an OCSP responder's or a certificate for
// encryption must not be able to sign what the SIH reads. Legitimate
// signing profiles (no extended key usage, emailProtection as IGC-Santé's
// ORG_SIGN, RFC 9336 documentSigning) pass, signed by xmlsec1.
func TestResponseSigners(t *testing.T) {
	p, s := testSigners(t)
	all, inter := x509.NewCertPool(), x509.NewCertPool()
	all.AddCert(p.OSIRoot.Cert)
	inter.AddCert(p.OSIServeur.Cert)
	inter.AddCert(p.OSIServicesApplicatifs.Cert)
	// The bundle docs/security-model.md recommends: the signing authority only.
	signingInter := x509.NewCertPool()
	signingInter.AddCert(p.OSIServicesApplicatifs.Cert)
	full := func() *ResponsePolicy { return &ResponsePolicy{Roots: all, Intermediates: inter, Now: time.Now} }
	for _, tc := range []struct {
		name    string
		policy  *ResponsePolicy
		answer  []byte
		refusal string
	}{
		{"legit: AC-SERVICES-APPLICATIFS signer, no extended key usage", full(), samltest.SignDetached(t, s.applicatifs), ""},
		{"legit: emailProtection, as IGC-Santé signing certificates", full(), samltest.SignDetached(t, s.email), ""},
		{"legit: documentSigning (RFC 9336)", full(), samltest.SignDetached(t, s.documentSigning), ""},
		{"legit: the signing authority's bundle only", &ResponsePolicy{Roots: all, Intermediates: signingInter, Now: time.Now},
			samltest.SignDetached(t, s.applicatifs), ""},
		{"the partner's TLS server certificate (serverAuth)", full(), samltest.SignDetached(t, s.server), "serverAuth, not for signing"},
		{"a TLS client and server certificate", full(), samltest.SignDetached(t, s.clientServer), "serverAuth, clientAuth, not for signing"},
		{"an OCSP responder's certificate", full(), samltest.SignDetached(t, s.ocsp), "OCSPSigning, not for signing"},
		{"a certificate for encryption only", full(), samltest.SignDetached(t, s.encipherOnly), "neither digitalSignature nor nonRepudiation"},
		{"AC-SERVEUR signer, its authority carried in KeyInfo, on the signing authority's bundle",
			&ResponsePolicy{Roots: all, Intermediates: signingInter, Now: time.Now},
			samltest.SignDetached(t, s.fromServeur, p.OSIServeur.Cert), "certificate signed by unknown authority"},
		{"legit: pinned signer", &ResponsePolicy{Roots: all, Intermediates: inter, Now: time.Now, Signers: []string{s.applicatifs.Cert.Subject.String()}},
			samltest.SignDetached(t, s.applicatifs), ""},
		{"legit: pinned signer written C first", &ResponsePolicy{Roots: all, Intermediates: inter, Now: time.Now, Signers: []string{"C=FR, O=AMC SIMULEE, CN=AMC SIGNATURE"}},
			samltest.SignDetached(t, s.applicatifs), ""},
		{"another signer of the bundle than the pinned one", &ResponsePolicy{Roots: all, Intermediates: inter, Now: time.Now,
			Signers: []string{"CN=AMC SIGNATURE,O=AMC SIMULEE,C=FR", "CN=AMC SIGNATURE EMAIL,O=AMC SIMULEE,C=FR"}},
			samltest.SignDetached(t, s.other), "is not one of response_signature.signers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Twice: the second answer meets the cache of verified
			// signers, which must not forget why one was refused.
			for round := range 2 {
				_, err := tc.policy.Verify(context.Background(), tc.answer)
				if tc.refusal == "" {
					if err != nil {
						t.Fatalf("round %d: legitimate answer refused: %v", round, err)
					}
					continue
				}
				if err == nil || !strings.Contains(err.Error(), tc.refusal) {
					t.Fatalf("round %d: error %v, want %q", round, err, tc.refusal)
				}
			}
		})
	}
}

// chainRecorder is the revocation hook as a test sees it: it records the
// chains asked about and answers err.
type chainRecorder struct {
	chains [][]*x509.Certificate
	err    error
}

func (r *chainRecorder) CheckChain(_ context.Context, chain []*x509.Certificate) error {
	r.chains = append(r.chains, chain)
	return r.err
}

// TestResponseSignerRevocation: the signer's verified chain, leaf first,
// goes to the route's revocation check, whose refusal refuses the answer;
// a tampered answer is refused before (no revocation fetch for a forgery).
func TestResponseSignerRevocation(t *testing.T) {
	p, s := testSigners(t)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(p.OSIRoot.Cert)
	inter.AddCert(p.OSIServicesApplicatifs.Cert)
	answer := samltest.SignDetached(t, s.applicatifs)
	rec := &chainRecorder{}
	policy := &ResponsePolicy{Roots: roots, Intermediates: inter, Now: time.Now, Revocation: rec}
	if _, err := policy.Verify(context.Background(), answer); err != nil {
		t.Fatal(err)
	}
	if len(rec.chains) != 1 || len(rec.chains[0]) != 3 || !rec.chains[0][0].Equal(s.applicatifs.Cert) || !rec.chains[0][1].Equal(p.OSIServicesApplicatifs.Cert) {
		t.Fatalf("revocation asked about %v", rec.chains)
	}
	tampered := []byte(strings.Replace(string(answer), samltest.Amount, samltest.ForgedAmount, 1))
	if _, err := policy.Verify(context.Background(), tampered); err == nil || len(rec.chains) != 1 {
		t.Fatalf("tampered answer: %v, %d revocation checks", err, len(rec.chains))
	}
	rec.err = errors.New("certificate CN=AMC SIGNATURE is revoked (source crl)")
	if _, err := policy.Verify(context.Background(), answer); err == nil || !strings.Contains(err.Error(), "signing certificate: certificate CN=AMC SIGNATURE is revoked") {
		t.Fatalf("revoked signer: %v", err)
	}
}
