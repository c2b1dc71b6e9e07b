package saml

import (
	"bytes"
	"crypto/x509"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

func testMetrics(t testing.TB) *metrics.Metrics {
	m, err := metrics.New(prometheus.NewRegistry(), metrics.BuildInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func vihfToken() *config.Token {
	return &config.Token{Profile: "vihf", IssuerFormat: "rfc2253", Validity: 5 * time.Minute, ReuseFraction: 0.5, CacheEntries: 100,
		AuthnContext: config.DefaultAuthnContext,
		VIHF: config.VIHF{Version: "3.0", ActivitySector: config.DefaultActivitySector, SoftwareName: "SIH DEMO", SoftwareVersion: "1.0",
			SoftwareID: "SIH-42", HomologationID: "HOM-1", INSOID: config.DefaultINSOID, ResourceURN: "urn:dmp",
			PurposeOfUse: "normal", RoleCodeSystem: config.DefaultRoleCodeSystem, ConfidentialityCS: config.DefaultConfCodeSystem}}
}

func rocToken() *config.Token {
	return &config.Token{Profile: "roc", IssuerFormat: "rfc2253", Validity: 5 * time.Minute, ReuseFraction: 0.5, CacheEntries: 10,
		AuthnContext: config.DefaultAuthnContext, Attributes: map[string]string{"Type_Flux": "IDB"}}
}

func vihfHeaders() http.Header {
	h := http.Header{}
	h.Set(HeaderUserID, "810002345678")
	h.Set(HeaderUserName, "DUPONT Jeanne (Cardiologie)")
	h.Set(HeaderUserRoles, "10^1.2.250.1.71.1.2.7^Médecin")
	h.Set(HeaderPatientINS, "279035121518989")
	return h
}

func newInjector(t testing.TB, tok *config.Token) *Injector {
	p := testpki.MustShared(t)
	s := NewSigner(p.Sign.Key, p.Sign.Cert)
	return NewInjector(InjectorOptions{Route: "r", Token: tok, Signer: func() *Signer { return s }, Metrics: testMetrics(t)})
}

// xmlsec1Verify checks doc's signature with xmlsec1, the chain up to the
// test IGC-Santé root included.
func xmlsec1Verify(t *testing.T, doc []byte) {
	t.Helper()
	bin, err := exec.LookPath("xmlsec1")
	if err != nil {
		t.Skip("xmlsec1 not installed (Debian package xmlsec1; .ci/run installs it): independent verification skipped")
	}
	p := testpki.MustShared(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	out, err := exec.Command(bin, "--verify",
		"--trusted-pem", write("root.pem", testpki.PEM(p.SanteRoot.Cert)),
		"--untrusted-pem", write("aci.pem", testpki.PEM(p.SanteOrg.Cert)),
		"--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
		write("doc.xml", doc)).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("OK")) {
		t.Fatalf("xmlsec1 refused the signature: %v\n%s\n--- document:\n%s", err, out, doc)
	}
}

func TestInjectVerifiesIndependently(t *testing.T) {
	for _, tc := range []struct {
		file string
		tok  *config.Token
	}{
		{"dmp-soap12.xml", vihfToken()},
		{"roc-soap11.xml", rocToken()},
		{"default-ns-with-ds.xml", vihfToken()},
		{"empty-security.xml", rocToken()},
	} {
		t.Run(tc.file, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			tok, err := newInjector(t, tc.tok).Inject(vihfHeaders(), in)
			if err != nil {
				t.Fatal(err)
			}
			xmlsec1Verify(t, tok.Body)
			roots, inter, now := santePools(t)
			if _, err := VerifyEnvelope(tok.Body, roots, inter, now); err != nil {
				t.Fatalf("goxmldsig validation: %v", err)
			}
		})
	}
}

// santePools are the test IGC-Santé root and intermediate, as a partner
// holds them, and the current time.
func santePools(t testing.TB) (roots, inter *x509.CertPool, now time.Time) {
	p := testpki.MustShared(t)
	roots, inter = x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(p.SanteRoot.Cert)
	inter.AddCert(p.SanteOrg.Cert)
	return roots, inter, time.Now()
}

func TestAssertionShape(t *testing.T) {
	p := testpki.MustShared(t)
	in, _ := os.ReadFile("testdata/dmp-soap12.xml")
	tok, err := newInjector(t, vihfToken()).Inject(vihfHeaders(), in)
	if err != nil {
		t.Fatal(err)
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(tok.Body); err != nil {
		t.Fatal(err)
	}
	a := doc.FindElement("//Security/Assertion")
	if a == nil {
		t.Fatalf("no assertion in Security:\n%s", tok.Body)
	}
	kids := a.ChildElements()
	if kids[0].Tag != "Issuer" || kids[1].Tag != "Signature" {
		t.Errorf("Signature is not right after Issuer: %s, %s", kids[0].Tag, kids[1].Tag)
	}
	if got := a.FindElement("Issuer").Text(); !strings.HasPrefix(got, "CN="+testpki.SignCN+",OU="+testpki.IDNatStruct) {
		t.Errorf("Issuer %q", got)
	}
	attr := func(name string) string {
		for _, at := range a.FindElements("AttributeStatement/Attribute") {
			if at.SelectAttrValue("Name", "") == name {
				return at.FindElement("AttributeValue").Text()
			}
		}
		return "<absent>"
	}
	for name, want := range map[string]string{
		AttrAuthMode: "INDIRECTE", AttrStructureID: testpki.IDNatStruct, AttrVIHFVersion: "3.0",
		AttrResourceID: "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH", AttrSubjectID: "DUPONT Jeanne (Cardiologie)",
		AttrLPSName: "SIH DEMO", AttrResourceURN: "urn:dmp",
	} {
		if got := attr(name); got != want {
			t.Errorf("attribute %s = %q, want %q", name, got, want)
		}
	}
	if a.FindElement("Subject/NameID").Text() != "810002345678" {
		t.Error("NameID is not the user")
	}
	tr := a.FindElement("Signature/SignedInfo/Reference/Transforms")
	if tr == nil || len(tr.ChildElements()) != 2 || tr.FindElement("Transform/InclusiveNamespaces").SelectAttrValue("PrefixList", "") != PrefixList {
		t.Errorf("transforms: %v", tr)
	}
	// Everything the SIH sent is still there, byte for byte.
	for _, part := range []string{`<wsa:Action soap:mustUnderstand="true">urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b</wsa:Action>`,
		`<!-- the SIH's payload, untouched -->`, `<?xml version="1.0" encoding="UTF-8"?>`} {
		if !bytes.Contains(tok.Body, []byte(part)) {
			t.Errorf("lost %q", part)
		}
	}
	_ = p
}
