package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
