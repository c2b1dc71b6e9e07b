package testpki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/roc-proxy/roc-proxy/internal/referee"
)

// referenceDir holds real, public IGC-Santé certificates (no keys):
// ../../testdata/reference-pki, copied from /work/shared/reference-pki.
const referenceDir = "../../testdata/reference-pki"

func reference(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(referenceDir, name))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

var attrNames = map[string]string{"2.5.4.6": "C", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.3": "CN"}

// rdns reads a name from its DER, not through pkix.Name (which regroups
// attributes): one entry per RDN, "OU+OU" for a multi-valued one.
func rdns(t *testing.T, der []byte) (shape []string, values map[string][]string) {
	t.Helper()
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &seq); err != nil || len(rest) > 0 {
		t.Fatalf("name does not parse: %v", err)
	}
	values = map[string][]string{}
	for _, rdn := range seq {
		var types []string
		for _, atv := range rdn {
			name := attrNames[atv.Type.String()]
			if name == "" {
				name = atv.Type.String()
			}
			types = append(types, name)
			values[name] = append(values[name], atv.Value.(string))
		}
		shape = append(shape, strings.Join(types, "+"))
	}
	return shape, values
}

// opensslShape is the shape of c's subject as the openssl CLI prints it
// (RFC 2253: last RDN first, "+" inside a multi-valued RDN), in DER order:
// a parse that is not ours. ok is false when openssl is absent.
func opensslShape(t *testing.T, c *x509.Certificate) (shape []string, ok bool) {
	t.Helper()
	bin, found := referee.Find(t, "openssl", "Debian package openssl")
	if !found {
		return nil, false
	}
	cmd := exec.Command(bin, "x509", "-noout", "-subject", "-nameopt", "RFC2253")
	cmd.Stdin = strings.NewReader(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl x509: %v", err)
	}
	line := strings.TrimSpace(strings.TrimPrefix(string(out), "subject="))
	var rdn []string
	attr, escaped, inValue := "", false, false
	flush := func() { rdn = append(rdn, attr); attr, inValue = "", false }
	for _, r := range line {
		switch {
		case escaped:
			escaped = false
		case r == '\\':
			escaped = true
		case r == '=' && !inValue:
			inValue = true
		case (r == ',' || r == '+') && inValue:
			flush()
			if r == ',' {
				shape = append(shape, strings.Join(rdn, "+"))
				rdn = nil
			}
		case !inValue:
			attr += string(r)
		}
	}
	flush()
	shape = append(shape, strings.Join(rdn, "+"))
	slices.Reverse(shape)
	return shape, true
}

// sameShape holds the generated certificate's subject to the real one's:
// the same attributes, one per RDN, in the same order, read from the DER
// and by openssl.
func sameShape(t *testing.T, what string, got, real *x509.Certificate) (values, realValues map[string][]string) {
	t.Helper()
	gotShape, values := rdns(t, got.RawSubject)
	realShape, realValues := rdns(t, real.RawSubject)
	if !slices.Equal(gotShape, realShape) {
		t.Errorf("%s: subject RDNs %v, the real certificate's are %v", what, gotShape, realShape)
	}
	if gotSSL, ok := opensslShape(t, got); ok {
		if realSSL, _ := opensslShape(t, real); !slices.Equal(gotSSL, realSSL) || !slices.Equal(gotSSL, realShape) {
			t.Errorf("%s: openssl reads the subject RDNs as %v, and the real certificate's as %v", what, gotSSL, realSSL)
		}
	}
	return values, realValues
}

func criticalKeyUsage(c *x509.Certificate) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 15}) {
			return e.Critical
		}
	}
	return false
}

func privateExtension(c *x509.Certificate) (present, critical bool) {
	for _, e := range c.Extensions {
		if e.Id.Equal(oidIGCSanteProfile) {
			return true, e.Critical
		}
	}
	return false, false
}

// idNatStruct is the structure identifier an ORG leaf's OU holds
// (DOMAIN.md): 1 + FINESS (9 characters), 3 + SIRET (14 digits), 0 +
// ADELI (9 digits), 4 + RPPS-rang.
var idNatStruct = regexp.MustCompile(`^(1[0-9A-Z]{9}|3[0-9]{14}|0[0-9]{9}|4[0-9]{11,})$`)

// The generated certificates carry the profiles of the real IGC-Santé
// certificates of testdata/reference-pki: subject RDN order and count (one
// attribute per RDN, read from the DER and by openssl), the authorities'
// names, the leaf's single OU holding an idNat_Struct, key usages,
// extended key usages, criticality, path length, the private extension.
// The organisation of the test authorities is left different on purpose
// (ROC-PROXY TEST PKI): nobody should take them for ASIP-Santé's.
func TestProfilesMatchTheRealIGCSante(t *testing.T) {
	p := MustShared(t)
	for _, tc := range []struct {
		what    string
		got     *Cert
		real    string
		pathLen int // -1: none
	}{
		{"root", p.SanteRoot, "ACR-EL-TEST.pem", -1},
		{"intermediate (ORGANISATIONS)", p.SanteOrg, "ACI-EL-ORG-TEST.pem", 0},
	} {
		real := reference(t, tc.real)
		values, realValues := sameShape(t, tc.what, tc.got.Cert, real)
		for _, attr := range []string{"CN", "OU", "C"} {
			if !slices.Equal(values[attr], realValues[attr]) {
				t.Errorf("%s: %s %q, the real authority's %q", tc.what, attr, values[attr], realValues[attr])
			}
		}
		g := tc.got.Cert
		if !g.IsCA || g.KeyUsage != real.KeyUsage || criticalKeyUsage(g) != criticalKeyUsage(real) {
			t.Errorf("%s: CA %v, key usage %v (critical %v); the real one: CA %v, %v (critical %v)", tc.what, g.IsCA, g.KeyUsage, criticalKeyUsage(g), real.IsCA, real.KeyUsage, criticalKeyUsage(real))
		}
		realLen := -1
		if real.MaxPathLen > 0 || real.MaxPathLenZero {
			realLen = real.MaxPathLen
		}
		gotLen := -1
		if g.MaxPathLen > 0 || g.MaxPathLenZero {
			gotLen = g.MaxPathLen
		}
		if realLen != tc.pathLen || gotLen != realLen {
			t.Errorf("%s: path length %d, the real one's %d", tc.what, gotLen, realLen)
		}
	}
	// The intermediate is named by its root as the real one is.
	if string(p.SanteOrg.Cert.RawIssuer) != string(p.SanteRoot.Cert.RawSubject) ||
		string(reference(t, "ACI-EL-ORG-TEST.pem").RawIssuer) != string(reference(t, "ACR-EL-TEST.pem").RawSubject) {
		t.Error("the intermediate's issuer is not its root's subject byte for byte")
	}

	// ORG_SIGN against every real ORG signature leaf.
	leaves, err := filepath.Glob(filepath.Join(referenceDir, "org-sign-*.pem"))
	if err != nil || len(leaves) < 3 {
		t.Fatalf("real ORG signature leaves: %v %v", leaves, err)
	}
	for _, path := range leaves {
		real := reference(t, filepath.Base(path))
		for _, c := range []struct {
			what string
			got  *x509.Certificate
		}{{"ORG_SIGN", p.Sign.Cert}, {"ORG_AUTH_CLI", p.AuthCli.Cert}} {
			what := c.what + " / " + filepath.Base(path)
			values, realValues := sameShape(t, what, c.got, real)
			for _, v := range [][]string{values["OU"], realValues["OU"]} {
				if len(v) != 1 || !idNatStruct.MatchString(v[0]) {
					t.Errorf("%s: OU %q, want one idNat_Struct (the real leaf: %q)", what, values["OU"], realValues["OU"])
				}
			}
			if got, gotCrit := privateExtension(c.got); !got || gotCrit {
				t.Errorf("%s: private extension 1.2.250.1.71.1.2.5 present %v, critical %v", what, got, gotCrit)
			}
			if real, realCrit := privateExtension(real); !real || realCrit {
				t.Errorf("%s: the real leaf's private extension: present %v, critical %v", what, real, realCrit)
			}
		}
		g := p.Sign.Cert
		if g.IsCA || g.KeyUsage != real.KeyUsage || !criticalKeyUsage(g) || !criticalKeyUsage(real) ||
			!slices.Equal(g.ExtKeyUsage, real.ExtKeyUsage) || len(g.UnknownExtKeyUsage) != len(real.UnknownExtKeyUsage) {
			t.Errorf("ORG_SIGN / %s: key usage %v, extended %v; the real leaf: %v, %v", filepath.Base(path), g.KeyUsage, g.ExtKeyUsage, real.KeyUsage, real.ExtKeyUsage)
		}
	}
	// ORG_AUTH_CLI: no real one is public. DOMAIN.md: TLS client
	// authentication only (a signing certificate is refused as a TLS
	// client, and this one never signs tokens).
	if a := p.AuthCli.Cert; !slices.Equal(a.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) ||
		a.KeyUsage&x509.KeyUsageDigitalSignature == 0 || a.KeyUsage&x509.KeyUsageContentCommitment != 0 {
		t.Errorf("ORG_AUTH_CLI usages: %v %v", a.KeyUsage, a.ExtKeyUsage)
	}
	for _, c := range []*Cert{p.AuthCli, p.Sign, p.Servers[AnnuaireHost]} {
		if err := c.Cert.CheckSignatureFrom(c.Issuer.Cert); err != nil {
			t.Errorf("%s not signed by its issuer: %v", c.Cert.Subject.CommonName, err)
		}
	}
}

func TestRevocationPointers(t *testing.T) {
	o := Options{RevocationBaseURL: "http://127.0.0.1:8888/"}
	if got := o.CRLURL("aci-el-org"); got != "http://127.0.0.1:8888/crl/aci-el-org.crl" {
		t.Errorf("CRL URL %q", got)
	}
	root, err := NewRoot(Template{Subject: santeName("R")})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := root.Issue(Template{Subject: OrgName("x"), CRLURL: o.CRLURL("r"), OCSPURL: o.OCSPURL()})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(leaf.Cert.CRLDistributionPoints, []string{"http://127.0.0.1:8888/crl/r.crl"}) ||
		!slices.Equal(leaf.Cert.OCSPServer, []string{"http://127.0.0.1:8888/ocsp"}) {
		t.Errorf("pointers %v %v", leaf.Cert.CRLDistributionPoints, leaf.Cert.OCSPServer)
	}
}
