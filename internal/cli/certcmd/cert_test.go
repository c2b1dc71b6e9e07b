package certcmd

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/certinfo"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

func TestCertInspectCommand(t *testing.T) {
	var out bytes.Buffer
	// The public test certificate expired in 2024: described, and a failure.
	if err := Run(t.Context(), []string{"cert", "inspect", "--json", "../../../testdata/reference-pki/org-sign-testsign-ministere-2021.pem"}, &out, io.Discard); err == nil || !strings.Contains(err.Error(), "expired on 2024-12-23") {
		t.Fatalf("expired certificate: %v", err)
	}
	var r certinfo.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.Subject != "CN=testsign.test.asipsante.fr,OU=300000000077081,O=MINISTERE DE TEST7708,ST=Côte-d'Or (21),C=FR" ||
		!r.ChainComplete || r.StructureID.Kind != "SIRET" || len(r.Roles) != 1 || r.Roles[0] != "ORG_SIGN" {
		t.Errorf("report %+v", r)
	}
	// A PKCS#12 file, with its password, and with a wrong one.
	e := newTestEnv(t)
	out.Reset()
	if err := Run(t.Context(), []string{"cert", "inspect", "--password-file", e.files.PasswordFile, e.files.AuthP12}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CN=Client_ROC_Annuaire_AMC,OU=1990000019", "structure:       1990000019 = FINESS 990000019", "fits:            ORG_AUTH_CLI", "chain:           complete"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	bad := filepath.Join(e.dir, "bad-password")
	os.WriteFile(bad, []byte("nope"), 0o600)
	if err := Run(t.Context(), []string{"cert", "inspect", "--password-file", bad, e.files.AuthP12}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "wrong PKCS#12 password") {
		t.Errorf("wrong password: %v", err)
	}
}

func TestCSRCommand(t *testing.T) {
	dir := t.TempDir()
	key, req := filepath.Join(dir, "sign.key"), filepath.Join(dir, "sign.csr")
	args := []string{"csr", "--role", "sign", "--ou", "1990000019", "--o", "CH DE TEST", "--st", "Côte-d'Or (21)", "--key-out", key, "--csr-out", req}
	if err := Run(t.Context(), args, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(key)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	data, _ := os.ReadFile(req)
	block, _ := pem.Decode(data)
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		t.Fatalf("request: %v", err)
	}
	if csr.Subject.CommonName != "Client_ROC_WebServices_AMC" || csr.Subject.OrganizationalUnit[0] != "1990000019" {
		t.Errorf("subject %s", csr.Subject)
	}
	// An existing key is never overwritten.
	if err := Run(t.Context(), args, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("second run: %v", err)
	}
	var stderr bytes.Buffer
	if err := Run(t.Context(), []string{"csr", "--role", "both", "--ou", "12"}, io.Discard, &stderr); !errors.Is(err, ErrUsage) ||
		!strings.Contains(stderr.String(), "--role must be auth or sign") || !strings.Contains(stderr.String(), "--ou must be an idNat_Struct") || !strings.Contains(stderr.String(), "--o (the establishment") {
		t.Errorf("bad arguments: %v\n%s", err, stderr.String())
	}
}

func TestP12BuildCommand(t *testing.T) {
	e := newTestEnv(t)
	out := filepath.Join(e.dir, "built.p12")
	// Leaf only: the chain comes from the given bundle.
	args := []string{"p12", "build", "--key", e.files.AuthKeyPEM, "--cert", e.files.AuthCertPEM, "--bundle", e.files.SanteBundle,
		"--password-file", e.files.PasswordFile, "--out", out}
	if err := Run(t.Context(), args, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	id, err := mtls.LoadIdentity(&config.CertSource{PKCS12: out, PasswordFile: e.files.PasswordFile},
		mtls.LoadOptions{Path: "identity.auth", Role: mtls.RoleAuthClient})
	if err != nil {
		t.Fatalf("the built file does not load: %v", err)
	}
	if len(id.Certificate.Certificate) != 2 || !id.Chain[len(id.Chain)-1].Equal(e.pki.SanteRoot.Cert) {
		t.Errorf("chain of the built file: %d certificates sent", len(id.Certificate.Certificate))
	}
	// Without the bundle the chain cannot be completed.
	args[len(args)-1] = filepath.Join(e.dir, "other.p12")
	args[7] = testpkiRogueBundle(t, e) // the --bundle value
	if err := Run(t.Context(), args, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "chain incomplete") {
		t.Errorf("incomplete chain: %v", err)
	}
}

func testpkiRogueBundle(t *testing.T, e *testEnv) string {
	p := filepath.Join(e.dir, "unrelated.pem")
	os.WriteFile(p, testpki.PEM(e.pki.RogueRoot.Cert), 0o644)
	return p
}
