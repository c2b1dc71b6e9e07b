package auditcmd

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/roc-proxy/roc-proxy/internal/cli/cmdline"
)

// Run runs a roc-proxy command line through the same dispatch as the
// program's, with this package's command only.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	p := cmdline.Program{Name: "roc-proxy", Commands: []cmdline.Command{Command}}
	return p.Run(ctx, args, stdout, stderr)
}

// buildRocProxy builds the binary into dir.
func buildRocProxy(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "roc-proxy")
	build := exec.Command("go", "build", "-o", bin, "github.com/roc-proxy/roc-proxy/cmd/roc-proxy")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building roc-proxy: %v\n%s", err, out)
	}
	return bin
}
