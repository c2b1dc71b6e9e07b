package mtls

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

const password = "s3cr3t-Pa55!"

func pki(t testing.TB) *testpki.PKI { return testpki.MustShared(t) }

func write(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func santeStore(t *testing.T, dir string) *trust.Store {
	t.Helper()
	p := pki(t)
	s, err := trust.LoadStore(map[string]*config.TrustBundle{
		"igc-sante-test": {Paths: []string{write(t, dir, "sante.pem", testpki.PEM(p.SanteRoot.Cert, p.SanteOrg.Cert))}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func p12(t *testing.T, c *testpki.Cert, enc *pkcs12.Encoder, chain bool) []byte {
	t.Helper()
	b, err := c.PKCS12(enc, password, chain)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func keyPEM(t *testing.T, c *testpki.Cert) []byte {
	t.Helper()
	b, err := c.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadIdentity(t *testing.T) {
	p := pki(t)
	dir := t.TempDir()
	store := santeStore(t, dir)
	pwFile := write(t, dir, "pw", []byte(password+"\n"))
	env := map[string]string{"ROC_PW": password}
	getenv := func(k string) string { return env[k] }

	tests := []struct {
		name    string
		src     config.CertSource
		role    Role
		store   *trust.Store
		now     time.Time
		wantErr string // substring; "" = success
	}{
		{"pkcs12 modern with chain", config.CertSource{PKCS12: write(t, dir, "modern.p12", p12(t, p.AuthCli, pkcs12.Modern, true)), PasswordFile: pwFile}, RoleAuthClient, nil, time.Time{}, ""},
		{"pkcs12 legacy 3DES", config.CertSource{PKCS12: write(t, dir, "des.p12", p12(t, p.AuthCli, pkcs12.LegacyDES, true)), PasswordEnv: "ROC_PW"}, RoleAuthClient, nil, time.Time{}, ""},
		{"pkcs12 legacy RC2", config.CertSource{PKCS12: write(t, dir, "rc2.p12", p12(t, p.AuthCli, pkcs12.LegacyRC2, true)), PasswordFile: pwFile}, RoleAuthClient, nil, time.Time{}, ""},
		{"pkcs12 without intermediate, completed from bundle", config.CertSource{PKCS12: write(t, dir, "leaf.p12", p12(t, p.AuthCli, pkcs12.Modern, false)), PasswordFile: pwFile}, RoleAuthClient, store, time.Time{}, ""},
		{"pkcs12 without intermediate nor bundle", config.CertSource{PKCS12: dir + "/leaf.p12", PasswordFile: pwFile}, RoleAuthClient, nil, time.Time{},
			`identity.auth (` + dir + `/leaf.p12): incomplete chain: the issuer "CN=TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS,OU=IGC-SANTE TEST,OU=0002 187512751,O=ROC-PROXY TEST PKI,C=FR" of CN=Client_ROC_Annuaire_AMC`},
		{"wrong password", config.CertSource{PKCS12: dir + "/modern.p12", PasswordFile: write(t, dir, "badpw", []byte("nope"))}, RoleAuthClient, nil, time.Time{},
			"identity.auth.pkcs12: " + dir + "/modern.p12: wrong password (read from password_file " + dir + "/badpw)"},
		{"password env unset", config.CertSource{PKCS12: dir + "/modern.p12", PasswordEnv: "UNSET_VAR"}, RoleAuthClient, nil, time.Time{},
			"identity.auth.password_env: environment variable UNSET_VAR is not set"},
		{"missing file", config.CertSource{PKCS12: dir + "/absent.p12", PasswordFile: pwFile}, RoleAuthClient, nil, time.Time{},
			"identity.auth.pkcs12: open " + dir + "/absent.p12: no such file or directory"},
		{"not a pkcs12", config.CertSource{PKCS12: pwFile, PasswordFile: pwFile}, RoleAuthClient, nil, time.Time{},
			"identity.auth.pkcs12: " + pwFile + ": not a usable PKCS#12 file"},
		{"pem leaf and key, completed from bundle", config.CertSource{Cert: write(t, dir, "auth.pem", testpki.PEM(p.AuthCli.Cert)), Key: write(t, dir, "auth.key", keyPEM(t, p.AuthCli))}, RoleAuthClient, store, time.Time{}, ""},
		{"pem with chain file", config.CertSource{Cert: dir + "/auth.pem", Key: dir + "/auth.key", Chain: write(t, dir, "chain.pem", testpki.PEM(p.SanteOrg.Cert, p.SanteRoot.Cert))}, RoleAuthClient, nil, time.Time{}, ""},
		{"pem key of another certificate", config.CertSource{Cert: dir + "/auth.pem", Key: write(t, dir, "sign.key", keyPEM(t, p.Sign))}, RoleAuthClient, store, time.Time{},
			"private key does not match public key"},
		{"signing certificate as TLS client", config.CertSource{PKCS12: write(t, dir, "sign.p12", p12(t, p.Sign, pkcs12.Modern, true)), PasswordFile: pwFile}, RoleAuthClient, nil, time.Time{},
			"is a signing certificate (ORG_SIGN: emailProtection usage), not a TLS client certificate (ORG_AUTH_CLI needs clientAuth): one certificate, one usage"},
		{"TLS client certificate as signer", config.CertSource{PKCS12: dir + "/modern.p12", PasswordFile: pwFile}, RoleSign, nil, time.Time{},
			"is a TLS certificate (clientAuth/serverAuth usage), not a signing certificate (ORG_SIGN)"},
		{"signing certificate as signer", config.CertSource{PKCS12: dir + "/sign.p12", PasswordFile: pwFile}, RoleSign, nil, time.Time{}, ""},
		{"expired", config.CertSource{PKCS12: dir + "/modern.p12", PasswordFile: pwFile}, RoleAuthClient, nil, time.Now().AddDate(3, 1, 0),
			"certificate CN=Client_ROC_Annuaire_AMC,OU=1990000019,O=CENTRE HOSPITALIER DE DEMONSTRATION,ST=Côte-d'Or (21),C=FR expired on"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := LoadOptions{Path: "identity.auth", Role: tc.role, Store: tc.store, Getenv: getenv}
			if !tc.now.IsZero() {
				o.Now = func() time.Time { return tc.now }
			}
			id, err := LoadIdentity(&tc.src, o)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatal("loaded, want error")
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error\n got: %v\nwant substring: %s", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), password) {
					t.Fatalf("error reveals the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Leaf and intermediate are sent; the root is not.
			if n := len(id.Certificate.Certificate); n != 2 {
				t.Fatalf("sent chain has %d certificates, want 2", n)
			}
			if got := id.Chain[len(id.Chain)-1]; !got.Equal(p.SanteRoot.Cert) {
				t.Fatalf("chain ends at %s", got.Subject)
			}
		})
	}
}

// Real ORG_SIGN and SERV_SSL leaves published by the authority's owner.
func TestCheckRoleOnReferenceCertificates(t *testing.T) {
	load := func(name string) *x509.Certificate {
		certs, err := trust.ReadCertificates("../../testdata/reference-pki/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return certs[0]
	}
	sign := load("org-sign-testsign-ministere-2021.pem")
	serv := load("serv-ssl-platines-qualif1-2020.pem")
	if err := CheckRole(sign, RoleSign); err != nil {
		t.Errorf("real ORG_SIGN refused as signer: %v", err)
	}
	if err := CheckRole(sign, RoleAuthClient); err == nil || !strings.Contains(err.Error(), "is a signing certificate") {
		t.Errorf("real ORG_SIGN accepted as TLS client: %v", err)
	}
	if err := CheckRole(serv, RoleAuthClient); err != nil {
		t.Errorf("SERV_SSL (serverAuth+clientAuth) refused as TLS client: %v", err)
	}
	if err := CheckRole(serv, RoleSign); err == nil {
		t.Error("SERV_SSL accepted as signer")
	}
}

func TestChainFromFileWithoutKnownRoot(t *testing.T) {
	p := pki(t)
	dir := t.TempDir()
	// leaf + intermediate only, no bundle: the file's chain is complete
	// enough for the partner.
	src := config.CertSource{
		Cert: write(t, dir, "auth.pem", testpki.PEM(p.AuthCli.Cert, p.SanteOrg.Cert)),
		Key:  write(t, dir, "auth.key", keyPEM(t, p.AuthCli)),
	}
	id, err := LoadIdentity(&src, LoadOptions{Path: "identity.auth", Role: RoleAuthClient})
	if err != nil {
		t.Fatal(err)
	}
	if len(id.Certificate.Certificate) != 2 {
		t.Fatalf("sent chain has %d certificates, want leaf + intermediate", len(id.Certificate.Certificate))
	}
}

// TestCheckSigningUsage: what may sign a SAML token or a partner's answer.
// Real ORG_SIGN leaves (digitalSignature, nonRepudiation, emailProtection)
// pass; the real SERV_SSL (serverAuth, clientAuth) does not.
func TestCheckSigningUsage(t *testing.T) {
	for _, tc := range []struct {
		file string
		ok   bool
	}{
		{"org-sign-asipsign-preuve-2022.pem", true},
		{"org-sign-rpps-tra-expired-2019.pem", true},
		{"org-sign-testsign-asip-2021.pem", true},
		{"org-sign-testsign-ministere-2021.pem", true},
		{"org-sign-tomwsrevoque-2022.pem", true},
		{"serv-ssl-platines-qualif1-2020.pem", false},
	} {
		certs, err := trust.ReadCertificates("../../testdata/reference-pki/" + tc.file)
		if err != nil {
			t.Fatal(err)
		}
		err = CheckSigningUsage(certs[0])
		if tc.ok && err != nil {
			t.Errorf("%s refused: %v", tc.file, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "is for serverAuth, clientAuth, not for signing documents")) {
			t.Errorf("%s: %v", tc.file, err)
		}
	}
}
