package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// buildBinary builds roc-proxy the way every shipped artefact is built
// (scripts/build.sh), stamped with the given version and revision.
func buildBinary(t *testing.T, version, revision string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "roc-proxy")
	cmd := exec.Command("sh", "scripts/build.sh", bin, version, revision)
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/build.sh: %v\n%s", err, out)
	}
	return bin
}

// The exit status is what scripts and systemd see: 0 done or help, 1
// failed, 2 wrong command line, 78 serve's configuration is wrong. Checked on the built binary, not only
// through app.Run, since only main turns errors into statuses.
func TestExitStatus(t *testing.T) {
	bin := buildBinary(t, "v9.9.9-test", "0123456789abcdef")
	expired, _ := filepath.Abs("../../testdata/reference-pki/org-sign-testsign-ministere-2021.pem")
	pki, err := testpki.MustShared(t).WriteFiles(t.TempDir(), "exit-status", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args       []string
		code       int
		stdout     string
		stderr     string
		noneOnPipe string // must not appear on stdout
	}{
		{args: nil, code: 2, stderr: "Usage"},
		{args: []string{"--help"}, code: 0, stdout: "Usage"},
		{args: []string{"help"}, code: 0, stdout: "Usage"},
		{args: []string{"help", "cert"}, code: 0, stdout: "cert inspect FILE"},
		{args: []string{"cert", "--help"}, code: 0, stdout: "cert inspect FILE"},
		{args: []string{"cert", "inspect", "x.pem", "--help"}, code: 0, stdout: "cert inspect FILE"},
		{args: []string{"audit", "--help"}, code: 0, stdout: "audit verify"},
		{args: []string{"--version"}, code: 0, stdout: "roc-proxy v9.9.9-test (revision 0123456789abcdef,"},
		{args: []string{"version"}, code: 0, stdout: "roc-proxy v9.9.9-test (revision 0123456789abcdef,"},
		{args: []string{"bogus"}, code: 2, stderr: `unknown command "bogus"`},
		{args: []string{"cert"}, code: 2, stderr: "Usage"},
		{args: []string{"cert", "inspect"}, code: 2, stderr: "one certificate file"},
		{args: []string{"cert", "inspect", expired, "--nope"}, code: 2, stderr: "flag provided but not defined: -nope"},
		{args: []string{"csr", "--o", "help"}, code: 2, stderr: "--role must be auth or sign", noneOnPipe: "Usage"},
		{args: []string{"serve"}, code: 2, stderr: "missing --config FILE"},
		{args: []string{"cert", "inspect", expired}, code: 1, stdout: "testsign.test.asipsante.fr", stderr: "roc-proxy: " + expired + ": certificate CN=testsign.test.asipsante.fr"},
		{args: []string{"cert", "inspect", expired, "--json"}, code: 1, stdout: `"subject"`, stderr: "expired on 2024-12-23"},
		{args: []string{"cert", "inspect", "help"}, code: 1, stderr: "open help"},
		{args: []string{"config", "check", "/nonexistent/roc-proxy.yaml"}, code: 1, stderr: "/nonexistent/roc-proxy.yaml"},
		// serve's configuration is wrong: EX_CONFIG, which systemd does
		// not restart on (packaging/systemd_config_test.go plays more).
		{args: []string{"serve", "--config", "/nonexistent/roc-proxy.yaml"}, code: 78, stderr: "roc-proxy: reading configuration"},
		// A flag given twice: Go's flag package would keep the last one.
		{args: []string{"serve", "--config", "a.yaml", "--config", "b.yaml"}, code: 2, stderr: "flag --config given twice"},
		{args: []string{"cert", "inspect", pki.AuthP12, "--password-file", pki.PasswordFile, "--password-file", "/dev/null"}, code: 2, stderr: "flag --password-file given twice"},
		// A certificate no partner could verify (its authority in no
		// bundle) is described, and a failure; its bundle makes it whole.
		{args: []string{"cert", "inspect", pki.AuthCertPEM}, code: 1, stdout: "chain:           INCOMPLETE", stderr: "chain INCOMPLETE against the bundles"},
		{args: []string{"cert", "inspect", pki.AuthCertPEM, "--bundle", pki.SanteBundle}, code: 0, stdout: "chain:           complete"},
		{args: []string{"cert", "inspect", pki.AuthCertPEM, "--bundle", pki.OSIBundle, "--bundle", pki.SanteBundle}, code: 0, stdout: "chain:           complete"},
	} {
		cmd := exec.Command(bin, tc.args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("roc-proxy %q: exit status %d, want %d\nstdout: %s\nstderr: %s", tc.args, code, tc.code, stdout.String(), stderr.String())
		}
		if !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("roc-proxy %q:\nstdout %q, want %q in it\nstderr %q, want %q in it", tc.args, stdout.String(), tc.stdout, stderr.String(), tc.stderr)
		}
		if tc.noneOnPipe != "" && strings.Contains(stdout.String(), tc.noneOnPipe) {
			t.Errorf("roc-proxy %q: %q on stdout: %s", tc.args, tc.noneOnPipe, stdout.String())
		}
	}
}
