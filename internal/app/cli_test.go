package app

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/certinfo"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// The command lines ops type, as the README writes them: flags after the
// file names.
func TestFlagsAfterArguments(t *testing.T) {
	e := newTestEnv(t)
	var out bytes.Buffer
	if err := Run(t.Context(), []string{"cert", "inspect", e.files.AuthP12, "--password-file", e.files.PasswordFile}, &out, io.Discard); err != nil {
		t.Fatalf("cert inspect FILE --password-file F: %v", err)
	}
	if !strings.Contains(out.String(), "fits:            ORG_AUTH_CLI") {
		t.Errorf("output:\n%s", out.String())
	}
	out.Reset()
	if err := Run(t.Context(), []string{"cert", "inspect", e.files.AuthCertPEM, "--json", "--bundle", e.files.SanteBundle}, &out, io.Discard); err != nil {
		t.Fatalf("cert inspect FILE --json --bundle B: %v", err)
	}
	var r certinfo.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || !r.ChainComplete {
		t.Errorf("flags after the file were not applied: %v\n%s", err, out.String())
	}
	// "--" ends the flags: a file whose name starts with a dash.
	dashed := filepath.Join(e.dir, "-leaf.pem")
	data, _ := os.ReadFile(e.files.AuthCertPEM)
	os.WriteFile(dashed, data, 0o644)
	t.Chdir(e.dir)
	out.Reset()
	if err := Run(t.Context(), []string{"cert", "inspect", "--json", "--bundle", e.files.SanteBundle, "--", "-leaf.pem"}, &out, io.Discard); err != nil {
		t.Fatalf("cert inspect -- -leaf.pem: %v", err)
	}

	_, files := demoAudit(t)
	out.Reset()
	args := append([]string{"audit", "show"}, files...)
	args = append(args, "--json", "--route", "dmp")
	if err := Run(t.Context(), args, &out, io.Discard); err != nil {
		t.Fatalf("audit show FILES --json --route dmp: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !json.Valid([]byte(lines[0])) || !strings.Contains(lines[0], `"route":"dmp"`) || !strings.Contains(lines[1], `"type":"result"`) {
		t.Errorf("audit show with trailing flags printed:\n%s", out.String())
	}
	out.Reset()
	if err := Run(t.Context(), append(append([]string{"audit", "verify"}, files...), "--signer", filepath.Join(e.dir, "nope.pem")), &out, io.Discard); err == nil || !strings.Contains(err.Error(), "--signer") {
		t.Errorf("audit verify FILES --signer MISSING: the flag was not applied: %v", err)
	}
}

// "help" is a value like any other except where a command is expected.
func TestHelpIsAValueOutsideTheCommandPosition(t *testing.T) {
	dir := t.TempDir()
	key, req := filepath.Join(dir, "k.key"), filepath.Join(dir, "k.csr")
	var out bytes.Buffer
	err := Run(t.Context(), []string{"csr", "--role", "auth", "--ou", "1990000019", "--o", "help", "--key-out", key, "--csr-out", req}, &out, io.Discard)
	if err != nil {
		t.Fatalf("csr --o help: %v\n%s", err, out.String())
	}
	data, err := os.ReadFile(req)
	if err != nil {
		t.Fatalf("csr --o help made no request (taken for a help request?): %v\n%s", err, out.String())
	}
	block, _ := pem.Decode(data)
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil || len(csr.Subject.Organization) != 1 || csr.Subject.Organization[0] != "help" {
		t.Errorf("request subject %v (%v)", csr.Subject, err)
	}
	// A flag value that looks like a help flag is a value too.
	pw := filepath.Join(dir, "-h")
	os.WriteFile(pw, []byte("x"), 0o600)
	t.Chdir(dir)
	e := newTestEnv(t)
	err = Run(t.Context(), []string{"cert", "inspect", "--password-file", "-h", e.files.AuthP12}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "wrong PKCS#12 password") {
		t.Errorf("--password-file -h: %v (want the file named -h read as the password)", err)
	}
	// A file named help is a file.
	err = Run(t.Context(), []string{"cert", "inspect", "help"}, &out, io.Discard)
	if err == nil || errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "help") {
		t.Errorf("cert inspect help: %v (want: cannot read the file help)", err)
	}
	err = Run(t.Context(), []string{"config", "check", "help"}, io.Discard, io.Discard)
	if err == nil || errors.Is(err, ErrUsage) {
		t.Errorf("config check help: %v (want: cannot read the file help)", err)
	}

	// In the command position, help is help, on stdout, without error.
	for _, args := range [][]string{
		{"help"}, {"--help"}, {"-h"}, {"help", "cert"}, {"help", "audit"},
		{"cert", "--help"}, {"cert", "help"}, {"cert", "-h"}, {"cert", "inspect", "--help"}, {"cert", "inspect", "FILE", "--help"},
		{"p12", "--help"}, {"p12", "build", "-h"}, {"csr", "--help"}, {"csr", "--o", "x", "-h"},
		{"config", "help"}, {"config", "check", "-h"}, {"audit", "help"}, {"audit", "show", "--help"},
		{"serve", "-help"}, {"demo", "--help"}, {"version", "--help"},
	} {
		out.Reset()
		var stderr bytes.Buffer
		if err := Run(t.Context(), args, &out, &stderr); err != nil || !strings.Contains(out.String(), "Usage") {
			t.Errorf("%q: err %v, stdout %q, stderr %q", args, err, out.String(), stderr.String())
		}
	}
}

// Usage errors are ErrUsage (exit 2), with a message saying what is wrong.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "Usage"},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"cert"}, "Usage"},
		{[]string{"cert", "bogus"}, `unknown cert command "bogus"`},
		{[]string{"p12", "bogus"}, `unknown p12 command "bogus"`},
		{[]string{"cert", "inspect"}, "one certificate file"},
		{[]string{"cert", "inspect", "a.pem", "b.pem"}, "one certificate file"},
		{[]string{"cert", "inspect", "a.pem", "--nope"}, "flag provided but not defined: -nope"},
		{[]string{"cert", "inspect", "a.pem", "--password-file"}, "flag needs an argument"},
		{[]string{"csr", "--role", "both", "--ou", "12"}, "--role must be auth or sign"},
		{[]string{"csr", "extra"}, `unexpected argument "extra"`},
		{[]string{"p12", "build", "--key", "k"}, "--key, --cert, --password-file and --out are required"},
		{[]string{"serve"}, "missing --config FILE"},
		{[]string{"serve", "--config", "a.yaml", "b.yaml"}, `unexpected argument "b.yaml"`},
		{[]string{"config", "check"}, "Usage"},
		{[]string{"config", "check", "a", "b"}, "Usage"},
		{[]string{"config", "bogus"}, "Usage"},
		{[]string{"version", "extra"}, `unexpected argument "extra"`},
		{[]string{"help", "bogus"}, `unknown command "bogus"`},
		{[]string{"audit"}, "Usage"},
		{[]string{"audit", "show"}, "no audit file given"},
	} {
		var stderr bytes.Buffer
		err := Run(t.Context(), tc.args, io.Discard, &stderr)
		if !errors.Is(err, ErrUsage) {
			t.Errorf("%q: err %v, want a usage error", tc.args, err)
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: stderr lacks %q:\n%s", tc.args, tc.want, stderr.String())
		}
	}
}

func TestVersionFlag(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		var out bytes.Buffer
		if err := Run(t.Context(), args, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "roc-proxy ") || !strings.Contains(out.String(), "revision") {
			t.Errorf("%q: %v %q", args, err, out.String())
		}
	}
}

// writeLeaf issues a certificate from ca with the given names and
// validity, and writes it as PEM.
func writeLeaf(t *testing.T, dir string, ca *testpki.Cert, tmpl *x509.Certificate) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, tmpl.Subject.CommonName+".pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// A server certificate: its names are the first thing ops look for.
func TestCertInspectSubjectAltNames(t *testing.T) {
	p := testpki.MustShared(t)
	e := newTestEnv(t) // its bundles complete the chains (an incomplete one exits 1)
	u, _ := url.Parse("spiffe://hospital.test/roc-proxy")
	path := writeLeaf(t, t.TempDir(), p.OSIServeur, &x509.Certificate{
		Subject:   pkix.Name{CommonName: "roc-proxy.hospital.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"roc-proxy.hospital.test", "roc.hospital.test"},
		IPAddresses: []net.IP{net.ParseIP("10.20.0.5"), net.ParseIP("fd00::5")},
		URIs:        []*url.URL{u}, EmailAddresses: []string{"dsi@hospital.test"},
	})
	var out bytes.Buffer
	if err := Run(t.Context(), []string{"cert", "inspect", path, "--bundle", e.files.OSIBundle}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"DNS names:       roc-proxy.hospital.test, roc.hospital.test",
		"IP addresses:    10.20.0.5, fd00::5",
		"URIs:            spiffe://hospital.test/roc-proxy",
		"e-mail:          dsi@hospital.test",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := Run(t.Context(), []string{"cert", "inspect", path, "--json", "--bundle", e.files.OSIBundle}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var r certinfo.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if strings.Join(r.DNSNames, ",") != "roc-proxy.hospital.test,roc.hospital.test" || strings.Join(r.IPAddresses, ",") != "10.20.0.5,fd00::5" ||
		strings.Join(r.URIs, ",") != "spiffe://hospital.test/roc-proxy" || strings.Join(r.EmailAddresses, ",") != "dsi@hospital.test" {
		t.Errorf("JSON names: %+v", r)
	}
	// A certificate without alternative names says so.
	out.Reset()
	if err := Run(t.Context(), []string{"cert", "inspect", e.files.AuthCertPEM, "--bundle", e.files.SanteBundle}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "alt names:       none") {
		t.Errorf("no alternative names, not said:\n%s", out.String())
	}
}

// An expired certificate is described, and the command fails saying why:
// a script that checks a renewal must not see success.
func TestCertInspectExpiredFails(t *testing.T) {
	p := testpki.MustShared(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name      string
		from, to  time.Time
		wantError string
	}{
		{"expired", time.Now().Add(-400 * 24 * time.Hour), time.Now().Add(-24 * time.Hour), "expired on " + time.Now().Add(-24*time.Hour).UTC().Format(time.DateOnly)},
		{"future", time.Now().Add(24 * time.Hour), time.Now().Add(400 * 24 * time.Hour), "not valid before " + time.Now().Add(24*time.Hour).UTC().Format(time.DateOnly)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeLeaf(t, dir, p.OSIServeur, &x509.Certificate{
				Subject: pkix.Name{CommonName: tc.name + ".hospital.test"}, NotBefore: tc.from, NotAfter: tc.to,
				KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			for _, extra := range [][]string{nil, {"--json"}} {
				var out bytes.Buffer
				err := Run(t.Context(), append([]string{"cert", "inspect", path}, extra...), &out, io.Discard)
				if err == nil || errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.wantError) {
					t.Errorf("%v: err %v, want a failure saying %q", extra, err, tc.wantError)
				}
				if !strings.Contains(out.String(), tc.name+".hospital.test") {
					t.Errorf("%v: the report was not printed:\n%s", extra, out.String())
				}
			}
		})
	}
}
