package auditcmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/audit"
)

// shippedCopy writes the lines of files as the SIEM keeps them (JSON lines
// shipped to stdout) and returns its path.
func shippedCopy(t *testing.T, files ...[]string) string {
	t.Helper()
	var all []string
	for _, fs := range files {
		for _, ls := range chainLines(t, fs) {
			all = append(all, ls...)
		}
	}
	path := filepath.Join(t.TempDir(), "siem.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(all, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// An insider deletes every file of one replica's chain (its tokens with
// them). The SIEM kept that chain's records: verify given the folder and the
// shipped copy must say the chain is missing, not "OK" for the chains left.
// Verifying one replica's files against a SIEM copy of every replica is
// scoped with --chain (no false alarm for the others).
func TestAuditVerifyNamesAChainWhoseFilesAreAllDeleted(t *testing.T) {
	dir := t.TempDir()
	a := writeTestChain(t, dir, "roc-proxy-0", 12, 0)
	b := writeTestChain(t, dir, "roc-proxy-1", 7, 0)
	shipped := shippedCopy(t, a, b)
	if out, err := runAudit(t, verifyArgs(t, "--shipped", shipped, dir)...); err != nil {
		t.Fatalf("untouched folder: %v\n%s", err, out)
	}
	for _, f := range b {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runAudit(t, verifyArgs(t, "--shipped", shipped, dir)...)
	if err == nil || !strings.Contains(out, `chain "roc-proxy-1"`) || !strings.Contains(out, "missing chain") {
		t.Fatalf("a chain deleted whole passes against the shipped copy: %v\n%s", err, out)
	}
	// The security team verifies one pod's export against the whole SIEM.
	out, err = runAudit(t, verifyArgs(t, "--shipped", shipped, "--chain", "roc-proxy-0", dir)...)
	if err != nil || strings.Contains(out, "roc-proxy-1") {
		t.Fatalf("--chain roc-proxy-0: %v\n%s", err, out)
	}
	// --chain naming a chain of which nothing is given is an error.
	if out, err := runAudit(t, verifyArgs(t, "--chain", "roc-proxy-9", dir)...); err == nil || !strings.Contains(out+err.Error(), "roc-proxy-9") {
		t.Fatalf("--chain of nothing: %v\n%s", err, out)
	}

}

// audit export run by the security team through kubectl exec, on a folder
// an insider prepared: a link named like a chain file pointing outside the
// folder (to a secret), a FIFO named *.jsonl (which would hang a reader),
// another chain's files, a half-written line. The export must not follow
// the link or open the FIFO, must hold only the chain asked for, and must
// verify as exported.
func TestAuditExportThroughAPreparedFolder(t *testing.T) {
	dir := t.TempDir()
	writeTestChain(t, dir, "roc-proxy-0", 12, 3000)
	writeTestChain(t, dir, "roc-proxy-1", 5, 0)
	secret := filepath.Join(t.TempDir(), "org-sign.key")
	os.WriteFile(secret, []byte("-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n"), 0o600)
	if err := os.Symlink(secret, filepath.Join(dir, "audit-roc-proxy-0-99999999999999999999.jsonl")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe.jsonl"), 0o600); err != nil {
		t.Fatal(err)
	}
	files, _ := audit.ChainFiles(dir, "roc-proxy-0")
	f, _ := os.OpenFile(files[len(files)-1], os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"v":2,"chain":"roc-proxy-0","seq":`) // a line being written
	f.Close()
	for _, format := range []string{"tar", "jsonl"} {
		var out, errOut bytes.Buffer
		done := make(chan error, 1)
		go func() {
			done <- Run(t.Context(), []string{"audit", "export", "--format", format, "--chain", "roc-proxy-0", dir}, &out, &errOut)
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v\n%s", format, err, errOut.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: export hangs on the prepared folder", format)
		}
		if bytes.Contains(out.Bytes(), []byte("SECRET")) || bytes.Contains(out.Bytes(), []byte("roc-proxy-1")) {
			t.Fatalf("%s: the export holds what was not asked for", format)
		}
		got := t.TempDir()
		if format == "tar" {
			untar(t, &out, got)
		} else {
			os.WriteFile(filepath.Join(got, "export.jsonl"), out.Bytes(), 0o600)
		}
		if res, err := runAudit(t, verifyArgs(t, got)...); err != nil {
			t.Fatalf("%s: the export does not verify: %v\n%s", format, err, res)
		}
	}
}
