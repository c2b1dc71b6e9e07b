package saml

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// SignedAMCResponse is a SOAP answer whose response element carries an
// enveloped signature by signer, as an AMC signing with
// AC-SERVICES-APPLICATIFS would send it.
func SignedAMCResponse(t testing.TB, signer *testpki.Cert) []byte {
	t.Helper()
	resp := etree.NewElement("idb:reponseDroits")
	resp.CreateAttr("xmlns:idb", "urn:roc-proxy:sim:idb")
	resp.CreateAttr("ID", "_r1")
	resp.CreateElement("idb:droits_ouverts").SetText("true")
	ctx, err := dsig.NewSigningContext(signer.Key, [][]byte{signer.Cert.Raw})
	if err != nil {
		t.Fatal(err)
	}
	ctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	signed, err := ctx.SignEnveloped(resp)
	if err != nil {
		t.Fatal(err)
	}
	doc := etree.NewDocument()
	env := doc.CreateElement("S:Envelope")
	env.CreateAttr("xmlns:S", NSSOAP11)
	env.CreateElement("S:Body").AddChild(signed)
	b, err := doc.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func amcSigner(t testing.TB, ca *testpki.Cert) *testpki.Cert {
	t.Helper()
	c, err := ca.Issue(testpki.Template{Subject: pkix.Name{CommonName: "AMC SIGNATURE"}, KeyUsage: x509.KeyUsageDigitalSignature})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerifyResponse(t *testing.T) {
	p := testpki.MustShared(t)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(p.OSIRoot.Cert)
	inter.AddCert(p.OSIServicesApplicatifs.Cert)
	good := SignedAMCResponse(t, amcSigner(t, p.OSIServicesApplicatifs))
	if n, err := VerifyResponse(good, roots, inter, time.Now()); err != nil || n != 1 {
		t.Fatalf("valid response: %d %v", n, err)
	}
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"tampered", bytes.Replace(good, []byte(">true<"), []byte(">false<"), 1), "signature 1: signature"},
		{"unsigned", []byte(`<S:Envelope xmlns:S="` + NSSOAP11 + `"><S:Body><x/></S:Body></S:Envelope>`), ErrNoSignature.Error()},
		{"detached reference", bytes.Replace(good, []byte(`URI="#_r1"`), []byte(`URI="#body-1"`), 1), "detached references are not verified"},
		{"signer from another PKI", SignedAMCResponse(t, amcSigner(t, p.SanteOrg)), "signing certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyResponse(tc.body, roots, inter, time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if tc.name == "unsigned" && !errors.Is(err, ErrNoSignature) {
				t.Fatal("absence not reported as ErrNoSignature")
			}
		})
	}
}
