package saml

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/beevik/etree"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// assertionOf parses the assertion a token carries.
func assertionOf(t *testing.T, tok *Token) *etree.Element {
	t.Helper()
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(tok.Assertion); err != nil {
		t.Fatal(err)
	}
	return doc.Root()
}

func attrValue(a *etree.Element, name string) (text string, coded *etree.Element) {
	for _, at := range a.FindElements("AttributeStatement/Attribute") {
		if at.SelectAttrValue("Name", "") == name {
			v := at.FindElement("AttributeValue")
			if c := v.ChildElements(); len(c) > 0 {
				return "", c[0]
			}
			return v.Text(), nil
		}
	}
	return "<absent>", nil
}

// TestTokensNeverSentNearExpiry plays an operator setting reuse_fraction
// 1.0 (the configuration refuses it now, the injector must hold anyway):
// NotOnOrAfter is written in whole seconds, and no token may leave with
// less than the expiry margin of its validity left, whatever the clock's
// sub-second phase.
func TestTokensNeverSentNearExpiry(t *testing.T) {
	p := testpki.MustShared(t)
	s := NewSigner(p.Sign.Key, p.Sign.Cert)
	tok := rocToken()
	tok.ReuseFraction = 1.0
	tok.ExpiryMargin = 30 * time.Second
	clock := time.Date(2026, 3, 1, 10, 0, 0, 730_000_000, time.UTC) // .73 s past a second
	in := NewInjector(InjectorOptions{Route: "r", Token: tok, Signer: func() *Signer { return s }, Metrics: testMetrics(t), Now: func() time.Time { return clock }})
	body, _ := os.ReadFile("testdata/roc-soap11.xml")
	signed := 0
	for step := 0; step < 3*int(tok.Validity/(250*time.Millisecond)); step++ { // three lifetimes, bounded
		out, err := in.Inject(nil, body)
		if err != nil {
			t.Fatal(err)
		}
		if !out.Cached {
			signed++
		}
		cond := assertionOf(t, out).FindElement("Conditions")
		end, err := time.Parse(time.RFC3339, cond.SelectAttrValue("NotOnOrAfter", ""))
		if err != nil {
			t.Fatal(err)
		}
		if left := end.Sub(clock); left < tok.ExpiryMargin {
			t.Fatalf("token sent at %s with %s of validity left (NotOnOrAfter %s), margin %s",
				clock.Format(time.RFC3339Nano), left, end.Format(time.RFC3339), tok.ExpiryMargin)
		}
		clock = clock.Add(250 * time.Millisecond)
	}
	if signed < 3 || signed > 4 {
		t.Fatalf("%d tokens signed over three lifetimes: reuse does not follow the validity", signed)
	}
}

// TestNotBeforeSkew: a partner whose clock runs behind must not see a
// token that is not yet valid.
func TestNotBeforeSkew(t *testing.T) {
	tok := rocToken()
	tok.NotBeforeSkew = 90 * time.Second
	out, err := newInjector(t, tok).Inject(nil, []byte(`<S:Envelope `+s11+`><S:Body/></S:Envelope>`))
	if err != nil {
		t.Fatal(err)
	}
	a := assertionOf(t, out)
	issue, _ := time.Parse(time.RFC3339, a.SelectAttrValue("IssueInstant", ""))
	nb, _ := time.Parse(time.RFC3339, a.FindElement("Conditions").SelectAttrValue("NotBefore", ""))
	if got := issue.Sub(nb); got != tok.NotBeforeSkew {
		t.Fatalf("NotBefore is %s before IssueInstant, want %s", got, tok.NotBeforeSkew)
	}
}

// renewedSigner is ORG_SIGN renewed by the authority with another
// organisation and structure (OU).
func renewedSigner(t *testing.T) *testpki.Cert {
	t.Helper()
	p := testpki.MustShared(t)
	name := pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: asn1.ObjectIdentifier{2, 5, 4, 6}, Value: "FR"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "GROUPE HOSPITALIER RENOUVELE"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: "1990000027"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: testpki.SignCN},
	}}
	c, err := p.SanteOrg.Issue(testpki.Template{Subject: name, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestHotSwapFollowsTheCertificate plays the renewal of ORG_SIGN with a
// different O and OU, swapped while the injector runs: from the first
// token the new key signs, everything derived from the certificate
// (Issuer, Identifiant_Structure, the ROC NameID, the audit record's
// issuer) is the new certificate's.
func TestHotSwapFollowsTheCertificate(t *testing.T) {
	p := testpki.MustShared(t)
	renewed := renewedSigner(t)
	var mu sync.Mutex
	cur := NewSigner(p.Sign.Key, p.Sign.Cert)
	signer := func() *Signer { mu.Lock(); defer mu.Unlock(); return cur }
	body, _ := os.ReadFile("testdata/roc-soap11.xml")
	for _, profile := range []string{"roc", "vihf"} {
		t.Run(profile, func(t *testing.T) {
			mu.Lock()
			cur = NewSigner(p.Sign.Key, p.Sign.Cert)
			mu.Unlock()
			cfg := rocToken()
			if profile == "vihf" {
				cfg = vihfToken()
			}
			in := NewInjector(InjectorOptions{Route: "r", Token: cfg, Signer: signer, Metrics: testMetrics(t)})
			before, err := in.Inject(vihfHeaders(), body)
			if err != nil {
				t.Fatal(err)
			}
			if _, s := attrValue(assertionOf(t, before), AttrStructureID); s != nil {
				t.Fatal("structure id is coded")
			}
			mu.Lock()
			cur = NewSigner(renewed.Key, renewed.Cert)
			mu.Unlock()
			after, err := in.Inject(vihfHeaders(), body)
			if err != nil {
				t.Fatal(err)
			}
			a := assertionOf(t, after)
			wantIssuer := "CN=" + testpki.SignCN + ",OU=1990000027,O=GROUPE HOSPITALIER RENOUVELE,C=FR"
			if got := a.FindElement("Issuer").Text(); got != wantIssuer {
				t.Errorf("Issuer after the swap: %q, want %q", got, wantIssuer)
			}
			if got, _ := attrValue(a, AttrStructureID); got != "1990000027" {
				t.Errorf("Identifiant_Structure after the swap: %q", got)
			}
			if profile == "roc" {
				if got := a.FindElement("Subject/NameID").Text(); got != "1990000027" {
					t.Errorf("ROC NameID after the swap: %q", got)
				}
				if after.NameID != "1990000027" {
					t.Errorf("NameID recorded for the audit: %q", after.NameID)
				}
			}
			if after.Issuer != wantIssuer {
				t.Errorf("issuer recorded for the audit: %q", after.Issuer)
			}
			if got := a.FindElement("Signature/KeyInfo/X509Data/X509Certificate").Text(); got == "" || after.Cached {
				t.Errorf("the renewed certificate did not sign a fresh token (cached %v)", after.Cached)
			}
		})
	}
}

// TestFidelityToTheDRIMboxClient: attribute names and coded values as the
// public DRIMbox DMP client writes them, names overridable per route, and
// the token still verifies independently.
func TestFidelityToTheDRIMboxClient(t *testing.T) {
	body, _ := os.ReadFile("testdata/dmp-soap12.xml")
	h := vihfHeaders()
	h.Set(HeaderConfidentiality, "N")
	out, err := newInjector(t, vihfToken()).Inject(h, body)
	if err != nil {
		t.Fatal(err)
	}
	xmlsec1Verify(t, out.Body)
	a := assertionOf(t, out)
	_, conf := attrValue(a, "urn:oasis:names:tc:xspa:1.0:resource:patient:hl7:confidentiality-code")
	if conf == nil || conf.SelectAttrValue("code", "") != "N" {
		t.Errorf("no confidentiality-code attribute under the DRIMbox name:\n%s", out.Assertion)
	}
	_, role := attrValue(a, "urn:oasis:names:tc:xacml:2.0:subject:role")
	if role == nil || role.SelectAttrValue("codeSystemName", "") != "professions" || role.SelectAttrValue("codeSystem", "") != "1.2.250.1.71.1.2.7" {
		t.Errorf("Role without the DRIMbox codeSystemName: %v", role)
	}
	_, pou := attrValue(a, "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse")
	if pou == nil || pou.SelectAttrValue("codeSystemName", "") != "mode acces VIHF 1.0" {
		t.Errorf("PurposeOfUse without the DRIMbox codeSystemName: %v", pou)
	}

	// A site whose partner expects other names: configuration only.
	tok := vihfToken()
	tok.AttributeNames = map[string]string{"confidentiality_code": "Confidentiality_Code", "structure_id": "urn:x:structure"}
	tok.VIHF.CodeSystemNames = map[string]string{"1.2.250.1.71.1.2.7": "", "2.16.840.1.113883.5.25": "HL7 Confidentiality"}
	out, err = newInjector(t, tok).Inject(h, body)
	if err != nil {
		t.Fatal(err)
	}
	xmlsec1Verify(t, out.Body)
	a = assertionOf(t, out)
	if _, conf := attrValue(a, "Confidentiality_Code"); conf == nil || conf.SelectAttrValue("codeSystemName", "") != "HL7 Confidentiality" {
		t.Errorf("overridden confidentiality name or code system name not used:\n%s", out.Assertion)
	}
	if got, _ := attrValue(a, "urn:x:structure"); got != testpki.IDNatStruct {
		t.Errorf("overridden structure attribute: %q", got)
	}
	if _, role := attrValue(a, AttrRole); role == nil || role.SelectAttr("codeSystemName") != nil {
		t.Errorf("an empty code system name still written: %v", role)
	}
}
