package trust

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

func pki(t testing.TB) *testpki.PKI { return testpki.MustShared(t) }

func writePEM(t *testing.T, dir, name string, certs ...*x509.Certificate) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, testpki.PEM(certs...), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func testStore(t *testing.T) *Store {
	t.Helper()
	p := pki(t)
	dir := t.TempDir()
	osiDir := filepath.Join(dir, "osi")
	if err := os.Mkdir(osiDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writePEM(t, osiDir, "root.crt", p.OSIRoot.Cert)
	writePEM(t, osiDir, "ac-serveur.pem", p.OSIServeur.Cert)
	os.WriteFile(filepath.Join(osiDir, "README.txt"), []byte("ignored"), 0o644)
	s, err := LoadStore(map[string]*config.TrustBundle{
		"igc-osi":        {Paths: []string{osiDir}},
		"igc-sante-test": {Paths: []string{writePEM(t, dir, "sante.pem", p.SanteRoot.Cert, p.SanteOrg.Cert)}},
		"real-test":      {Paths: []string{"../../config/bundles/igc-sante-test.pem"}},
		"real-prod":      {Paths: []string{"../../config/bundles/igc-sante-prod.pem"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	p := pki(t)
	s := testStore(t)
	srv := p.Servers[testpki.AnnuaireHost]
	rogue, err := p.IssueServer(p.RogueRoot, testpki.AnnuaireHost, testpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	goodPin := SPKIPin(srv.Cert)
	otherPin := SPKIPin(p.Servers[testpki.IDBHost].Cert)
	realLeaf, err := ReadCertificates("../../testdata/reference-pki/serv-ssl-platines-qualif1-2020.pem")
	if err != nil {
		t.Fatal(err)
	}
	in2019 := func() time.Time { return time.Date(2019, 6, 1, 0, 0, 0, 0, time.UTC) }
	in2021 := func() time.Time { return time.Date(2021, 6, 1, 0, 0, 0, 0, time.UTC) }

	tests := []struct {
		name    string
		bundles []string
		server  string
		pins    []string
		now     func() time.Time
		peer    []*x509.Certificate
		want    Reason // "" = accepted
	}{
		{"leaf and intermediate sent", []string{"igc-osi"}, testpki.AnnuaireHost, nil, nil, srv.Chain(), ""},
		{"leaf only, intermediate from bundle", []string{"igc-osi"}, testpki.AnnuaireHost, nil, nil, srv.Chain()[:1], ""},
		{"pinned key", []string{"igc-osi"}, testpki.AnnuaireHost, []string{otherPin, goodPin}, nil, srv.Chain(), ""},
		{"rogue authority", []string{"igc-osi"}, testpki.AnnuaireHost, nil, nil, rogue.Chain(), ReasonUnknownAuthority},
		{"bundle of another PKI", []string{"igc-sante-test"}, testpki.AnnuaireHost, nil, nil, srv.Chain(), ReasonUnknownAuthority},
		{"wrong name", []string{"igc-osi"}, "other.amc.test", nil, nil, srv.Chain(), ReasonNameMismatch},
		{"expired", []string{"igc-osi"}, testpki.AnnuaireHost, nil, func() time.Time { return time.Now().AddDate(4, 0, 0) }, srv.Chain(), ReasonExpired},
		{"client certificate posing as server", []string{"igc-sante-test"}, "", nil, nil, p.AuthCli.Chain(), ReasonBadUsage},
		{"pin mismatch", []string{"igc-osi"}, testpki.AnnuaireHost, []string{otherPin}, nil, srv.Chain(), ReasonPinMismatch},
		{"no certificate", []string{"igc-osi"}, testpki.AnnuaireHost, nil, nil, nil, ReasonNoCertificate},
		{"real IGC-Santé test server", []string{"real-test"}, "platines.qualif2.henix.asipsante.fr", nil, in2019, realLeaf, ""},
		{"real test server against prod chain", []string{"real-prod"}, "platines.qualif1.henix.asipsante.fr", nil, in2019, realLeaf, ReasonUnknownAuthority},
		{"real test server expired", []string{"real-test"}, "platines.qualif1.henix.asipsante.fr", nil, in2021, realLeaf, ReasonExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var pins [][]byte
			for _, pin := range tc.pins {
				b, err := config.ParsePin(pin)
				if err != nil {
					t.Fatal(err)
				}
				pins = append(pins, b)
			}
			v, err := s.NewVerifier(VerifierOptions{Bundles: tc.bundles, ServerName: tc.server, Pins: pins, Now: tc.now})
			if err != nil {
				t.Fatal(err)
			}
			chains, err := v.Verify(tc.peer)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if len(chains) == 0 || !IsSelfSigned(chains[0][len(chains[0])-1]) {
					t.Fatal("no chain ending at a trust anchor returned")
				}
				return
			}
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v is not a *VerifyError", err)
			}
			if ve.Reason != tc.want {
				t.Fatalf("reason = %s, want %s (%v)", ve.Reason, tc.want, err)
			}
		})
	}
}

func TestLoadBundleErrors(t *testing.T) {
	p := pki(t)
	dir := t.TempDir()
	onlyInter := writePEM(t, dir, "inter.pem", p.SanteOrg.Cert)
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644)
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	_, err := LoadStore(map[string]*config.TrustBundle{
		"a-missing":  {Paths: []string{filepath.Join(dir, "nope.pem")}},
		"b-inter":    {Paths: []string{onlyInter}},
		"c-garbage":  {Paths: []string{onlyInter, garbage}},
		"d-emptydir": {Paths: []string{empty}},
	})
	if err == nil {
		t.Fatal("bad bundles loaded")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{
		"trust_bundles.a-missing: paths[0]: stat " + filepath.Join(dir, "nope.pem") + ": no such file or directory",
		"trust_bundles.b-inter: no self-signed root certificate: a bundle needs at least one trust anchor",
		"trust_bundles.c-garbage: paths[1]: " + garbage + ": certificate 1: x509: malformed certificate",
		"trust_bundles.d-emptydir: paths[0]: " + empty + ": folder holds no .pem, .crt or .cer file",
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(lines), len(want), err)
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("error %d\n got: %s\nwant: %s", i, lines[i], want[i])
		}
	}
}

func TestShippedBundles(t *testing.T) {
	for name, wantCN := range map[string]string{
		"../../config/bundles/igc-sante-prod.pem": "AC RACINE IGC-SANTE ELEMENTAIRE",
		"../../config/bundles/igc-sante-test.pem": "TEST AC RACINE IGC-SANTE ELEMENTAIRE",
	} {
		b, err := LoadBundle("x", []string{name})
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Anchors) != 1 || b.Anchors[0].Subject.CommonName != wantCN || len(b.Intermediates) != 1 {
			t.Errorf("%s: anchors %d, intermediates %d", name, len(b.Anchors), len(b.Intermediates))
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	p := pki(b)
	s := NewStore(&Bundle{Name: "osi", Anchors: []*x509.Certificate{p.OSIRoot.Cert}, Intermediates: []*x509.Certificate{p.OSIServeur.Cert}})
	v, err := s.NewVerifier(VerifierOptions{Bundles: []string{"osi"}, ServerName: testpki.AnnuaireHost})
	if err != nil {
		b.Fatal(err)
	}
	chain := p.Servers[testpki.AnnuaireHost].Chain()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(chain); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDNOfReferenceCertificates(t *testing.T) {
	certs, err := ReadCertificates("../../testdata/reference-pki/org-sign-testsign-ministere-2021.pem")
	if err != nil {
		t.Fatal(err)
	}
	// As openssl prints them (reference-pki/README.md), UTF-8 kept.
	if got, want := SubjectDN(certs[0]), "CN=testsign.test.asipsante.fr,OU=300000000077081,O=MINISTERE DE TEST7708,ST=Côte-d'Or (21),C=FR"; got != want {
		t.Errorf("subject\n got: %s\nwant: %s", got, want)
	}
	if got, want := IssuerDN(certs[0]), "CN=TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS,OU=IGC-SANTE TEST,OU=0002 187512751,O=ASIP-SANTE,C=FR"; got != want {
		t.Errorf("issuer\n got: %s\nwant: %s", got, want)
	}
	escaped, err := ReadCertificates("../../testdata/reference-pki/org-sign-rpps-tra-expired-2019.pem")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := SubjectDN(escaped[0]), `CN=rpps.tra.henix\;asipsante.fr,OU=318751275100020,O=ASIP-SANTE,ST=Paris (75),C=FR`; got != want {
		t.Errorf("escaped subject\n got: %s\nwant: %s", got, want)
	}
}
