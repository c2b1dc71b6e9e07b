package certinfo

import (
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

func TestDecodeStructureID(t *testing.T) {
	for in, want := range map[string]string{
		"1990000019":      "FINESS 990000019",
		"318751275100020": "SIRET 18751275100020",
		"0751234567":      "ADELI 751234567",
		"412345678901":    "RPPS-rang 12345678901",
		"3123":            "",
		"9123456789":      "",
		"":                "",
	} {
		got := ""
		if s := DecodeStructureID(in); s != nil {
			got = s.Kind + " " + s.ID
		}
		if got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestInspectReferenceCertificates(t *testing.T) {
	testChain, err := trust.LoadBundle("test", []string{"../../config/bundles/igc-sante-test.pem"})
	if err != nil {
		t.Fatal(err)
	}
	withTest := trust.NewStore(testChain)
	empty := trust.NewStore()
	now := time.Date(2022, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		file      string
		store     *trust.Store
		roles     []string
		complete  bool
		warnings  []string
		structure string
	}{
		{"org-sign-testsign-asip-2021.pem", withTest, []string{"ORG_SIGN"}, true, []string{"LDAP only"}, "SIRET 18751275100020"},
		{"serv-ssl-platines-qualif1-2020.pem", withTest, []string{"ORG_AUTH_CLI", "SERV_SSL"}, true, []string{"expired on 2020-07-31"}, "SIRET 18751275100020"},
		{"org-sign-testsign-asip-2021.pem", empty, []string{"ORG_SIGN"}, false, []string{"chain incomplete: the issuer CN=TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS"}, "SIRET 18751275100020"},
	} {
		certs, err := trust.ReadCertificates("../../testdata/reference-pki/" + tc.file)
		if err != nil {
			t.Fatal(err)
		}
		r := Inspect(certs[0], nil, tc.store, now)
		if !slices.Equal(r.Roles, tc.roles) || r.ChainComplete != tc.complete || r.StructureID == nil || r.StructureID.Kind+" "+r.StructureID.ID != tc.structure {
			t.Errorf("%s: roles %v, chain complete %v, structure %+v", tc.file, r.Roles, r.ChainComplete, r.StructureID)
		}
		for _, w := range tc.warnings {
			if !strings.Contains(strings.Join(r.Warnings, "|"), w) {
				t.Errorf("%s: warnings %q lack %q", tc.file, r.Warnings, w)
			}
		}
	}
}

// An authority's certificate is told apart, not warned about.
func TestInspectAuthority(t *testing.T) {
	certs, err := trust.ReadCertificates("../../testdata/reference-pki/ACI-EL-ORG.pem")
	if err != nil {
		t.Fatal(err)
	}
	r := Inspect(certs[0], nil, trust.NewStore(), time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
	if !r.CA || len(r.Roles) != 0 || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "chain incomplete") {
		t.Errorf("CA %v, roles %v, warnings %q", r.CA, r.Roles, r.Warnings)
	}
	if r.StructureID != nil {
		t.Errorf("an authority's OU read as a structure: %+v", r.StructureID)
	}
}

func TestInspectTestPKI(t *testing.T) {
	p := testpki.MustShared(t)
	store := trust.NewStore(&trust.Bundle{Name: "s", Anchors: []*x509.Certificate{p.SanteRoot.Cert}})
	r := Inspect(p.AuthCli.Cert, []*x509.Certificate{p.SanteOrg.Cert}, store, time.Now())
	if !slices.Equal(r.Roles, []string{"ORG_AUTH_CLI"}) || !r.ChainComplete || len(r.Chain) != 3 || r.StructureID.Kind != "FINESS" || len(r.Warnings) != 0 {
		t.Errorf("%+v", r)
	}
	soon := Inspect(p.AuthCli.Cert, nil, store, p.AuthCli.Cert.NotAfter.Add(-10*24*time.Hour))
	if !strings.Contains(strings.Join(soon.Warnings, "|"), "expires in 10 days") {
		t.Errorf("expiry warning: %v", soon.Warnings)
	}
}
