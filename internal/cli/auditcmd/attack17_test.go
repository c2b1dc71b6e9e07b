package auditcmd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/roc-proxy/roc-proxy/internal/cli/cmdline"
)

// Issue 13, release review after the commands moved out of internal/app:
// "roc-proxy audit verify" on a chain with one record edited (links left
// as they were) says BROKEN, names the file and the line, and exits 1; with
// a file of the middle deleted it says BROKEN and names the records no
// given file holds and where the gap shows. Neither is ever "OK".
func TestAuditVerifySaysBrokenAndNamesTheFile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, files []string) (rest []string, want []string)
	}{
		{"one record edited", func(t *testing.T, files []string) ([]string, []string) {
			lines := chainLines(t, files)
			for i, l := range lines[1] {
				if strings.Contains(l, `"type":"result"`) {
					lines[1][i] = strings.Replace(l, `"status":200`, `"status":500`, 1)
					if lines[1][i] == l {
						t.Fatalf("no status to edit in %s", l)
					}
					writeChainLines(t, files, lines)
					return files, []string{`BROKEN`, filepath.Base(files[1]) + ":" + strconv.Itoa(i+1), "modified"}
				}
			}
			t.Fatal("no result record in the second file")
			return nil, nil
		}},
		{"a file of the middle deleted", func(t *testing.T, files []string) ([]string, []string) {
			gone := len(files) / 2
			if err := os.Remove(files[gone]); err != nil {
				t.Fatal(err)
			}
			return append(append([]string{}, files[:gone]...), files[gone+1:]...), []string{"BROKEN", "missing file", filepath.Base(files[gone+1])}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := writeTestChain(t, t.TempDir(), "pod-a", 40, 4096)
			if len(files) < 3 {
				t.Fatalf("want rotated files, got %d", len(files))
			}
			rest, want := tc.tamper(t, files)
			out, err := runAudit(t, verifyArgs(t, rest...)...)
			if code := cmdline.ExitStatus(err); code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			if strings.Contains(out, ": OK") {
				t.Errorf("said OK:\n%s", out)
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not say %q:\n%s", w, out)
				}
			}
		})
	}
}
