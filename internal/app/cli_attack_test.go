package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An operator who gives the request's path as the key's too (or a request
// path that already exists) must not end up with the private key where the
// request goes, the file the operator then uploads to the IGC-Santé
// portal, nor with a key left behind without its request.
func TestCSRNeverLeavesAKeyWhereTheRequestGoes(t *testing.T) {
	dir := t.TempDir()
	subject := []string{"csr", "--role", "auth", "--ou", "1990000019", "--o", "CH TEST"}
	for _, tc := range []struct {
		name       string
		keyOut     string
		csrOut     string
		existing   string // made before the command
		wantUsage  bool
		wantAbsent string
	}{
		{"same path", "req.pem", "req.pem", "", true, "req.pem"},
		{"same file through another spelling", "req2.pem", "./sub/../req2.pem", "", true, "req2.pem"},
		{"request path already taken", "new.key", "taken.csr", "taken.csr", false, "new.key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(dir)
			os.MkdirAll(filepath.Join(dir, "sub"), 0o700)
			if tc.existing != "" {
				os.WriteFile(tc.existing, []byte("an earlier request\n"), 0o644)
			}
			var stdout, stderr bytes.Buffer
			err := Run(t.Context(), append(subject, "--key-out", tc.keyOut, "--csr-out", tc.csrOut), &stdout, &stderr)
			if err == nil {
				t.Fatalf("csr succeeded:\n%s", stdout.String())
			}
			if tc.wantUsage != errors.Is(err, ErrUsage) {
				t.Errorf("err %v: usage error %v, want %v", err, errors.Is(err, ErrUsage), tc.wantUsage)
			}
			data, rerr := os.ReadFile(tc.wantAbsent)
			if rerr == nil && bytes.Contains(data, []byte("PRIVATE KEY")) {
				t.Errorf("%s holds a private key after a failed csr (%v)", tc.wantAbsent, err)
			} else if rerr == nil && tc.existing != tc.wantAbsent {
				t.Errorf("%s made by a failed csr", tc.wantAbsent)
			}
			if tc.existing != "" {
				if data, _ := os.ReadFile(tc.existing); string(data) != "an earlier request\n" {
					t.Errorf("%s overwritten: %q", tc.existing, data)
				}
			}
		})
	}
}

// A password file given where the certificate goes (tab completion picking
// org-auth-cli.password for org-auth-cli.p12, on the command line or in
// the configuration's pkcs12 key) must not have its bytes described in the
// error: the ASN.1 parser's message reads the first ones as a tag and a
// length ("class:1 tag:19 length:51" is "S3").
func TestPasswordFileGivenAsCertificateIsNotEchoed(t *testing.T) {
	e := newTestEnv(t)
	const secret = "S3cret-Hospital-2026"
	pw := filepath.Join(e.dir, "swapped.password")
	os.WriteFile(pw, []byte(secret+"\n"), 0o600)
	leaks := func(s string) []string {
		var found []string
		// The ASN.1 decoder names the bytes it read: tag and length, i.e.
		// the first two characters of the password.
		for _, w := range []string{"tag:", "length:", "class:", secret[:2]} {
			if strings.Contains(s, w) {
				found = append(found, w)
			}
		}
		return found
	}

	var stdout, stderr bytes.Buffer
	err := Run(t.Context(), []string{"cert", "inspect", pw}, &stdout, &stderr)
	if err == nil || errors.Is(err, ErrUsage) {
		t.Fatalf("cert inspect PASSWORD-FILE: %v", err)
	}
	if l := leaks(err.Error() + stdout.String() + stderr.String()); len(l) > 0 {
		t.Errorf("cert inspect describes the password file's bytes (%v): %v", l, err)
	}
	if !strings.Contains(err.Error(), "neither a certificate") {
		t.Errorf("cert inspect: %v, want it to say the file is neither a certificate nor PKCS#12", err)
	}

	identity := fmt.Sprintf("  auth:\n    pkcs12: %s\n    password_file: %s\n", pw, pw)
	path := e.config(t, "https://127.0.0.1:1/x", identity)
	stdout.Reset()
	stderr.Reset()
	err = Run(context.Background(), []string{"config", "check", path}, &stdout, &stderr)
	if err == nil {
		t.Fatal("config check accepted a password file as the PKCS#12 file")
	}
	if l := leaks(err.Error() + stdout.String() + stderr.String()); len(l) > 0 {
		t.Errorf("config check describes the password file's bytes (%v): %v", l, err)
	}
	if !strings.Contains(err.Error(), "identity.auth.pkcs12") || !strings.Contains(err.Error(), "not a usable PKCS#12 file") {
		t.Errorf("config check: %v, want the field and the reason", err)
	}
}

// An empty password file (a password manager that failed inside
// "--password-file <(pass show ...)", a file not filled yet) must not
// produce a PKCS#12 file that any empty password opens.
func TestP12BuildRefusesAnEmptyPassword(t *testing.T) {
	e := newTestEnv(t)
	for _, content := range []string{"", "\n", "\r\n"} {
		pw := filepath.Join(e.dir, "empty.password")
		os.WriteFile(pw, []byte(content), 0o600)
		out := filepath.Join(e.dir, "out.p12")
		os.Remove(out)
		err := Run(t.Context(), []string{"p12", "build", "--key", e.files.AuthKeyPEM, "--cert", e.files.AuthCertPEM,
			"--bundle", e.files.SanteBundle, "--password-file", pw, "--out", out}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "empty") {
			t.Errorf("password file %q: %v, want a refusal naming the empty file", content, err)
		}
		if _, serr := os.Stat(out); serr == nil {
			t.Errorf("password file %q: %s written", content, out)
		}
	}
	// The same material with a password works (the refusal is about the
	// password only).
	out := filepath.Join(e.dir, "ok.p12")
	if err := Run(t.Context(), []string{"p12", "build", "--key", e.files.AuthKeyPEM, "--cert", e.files.AuthCertPEM,
		"--bundle", e.files.SanteBundle, "--password-file", e.files.PasswordFile, "--out", out}, io.Discard, io.Discard); err != nil {
		t.Fatalf("p12 build with a password: %v", err)
	}
}
