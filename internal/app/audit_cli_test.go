package app

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// anchorArgs are the verify flags of the security team of the test PKI's
// establishment: its authority (written to a file) and its structure id.
func anchorArgs(t *testing.T) []string {
	t.Helper()
	p := testpki.MustShared(t)
	path := filepath.Join(t.TempDir(), "igc-sante-test-pki.pem")
	if err := os.WriteFile(path, testpki.PEM(p.SanteRoot.Cert, p.SanteOrg.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"--trust", path, "--structure-id", testpki.IDNatStruct}
}

// verifyArgs is "verify" with the anchor flags, extra flags and paths.
func verifyArgs(t *testing.T, rest ...string) []string {
	return append(append([]string{"verify"}, anchorArgs(t)...), rest...)
}

// runAudit runs "roc-proxy audit ARGS..." and returns its output and error.
func runAudit(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := Run(t.Context(), append([]string{"audit"}, args...), &out, &out)
	return out.String(), err
}
