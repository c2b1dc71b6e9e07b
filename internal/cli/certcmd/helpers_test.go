package certcmd

import (
	"context"
	"io"
	"testing"

	"github.com/roc-proxy/roc-proxy/internal/cli/cmdline"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// ErrUsage is the usage error (exit status 2).
var ErrUsage = cmdline.ErrUsage

// Run runs a roc-proxy command line through the same dispatch as the
// program's, with this package's commands only.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	p := cmdline.Program{Name: "roc-proxy", Commands: []cmdline.Command{Cert, CSR, P12}}
	return p.Run(ctx, args, stdout, stderr)
}

const testPassword = "Tr0ub4dor&3-test"

// testEnv is the shared test PKI's files in a folder of the test's.
type testEnv struct {
	dir   string
	files *testpki.Files
	pki   *testpki.PKI
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	p := testpki.MustShared(t)
	dir := t.TempDir()
	files, err := p.WriteFiles(dir, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{dir: dir, files: files, pki: p}
}
