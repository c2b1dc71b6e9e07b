package certcmd

import (
	"bytes"
	"errors"
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
