package auditcmd

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// writeTestChain writes n signed records (and their results) to chain in
// dir over files of at most maxBytes, signed by the shared test ORG_SIGN,
// and closes the log (a final checkpoint).
func writeTestChain(t *testing.T, dir, chain string, n int, maxBytes int64) []string {
	t.Helper()
	l := openTestChain(t, dir, chain, maxBytes)
	fillTestChain(t, l, chain, n)
	l.Close()
	files, err := audit.ChainFiles(dir, chain)
	if err != nil || len(files) == 0 {
		t.Fatalf("no files: %v", err)
	}
	return files
}

func openTestChain(t *testing.T, dir, chain string, maxBytes int64) *audit.Log {
	t.Helper()
	p := testpki.MustShared(t)
	m, err := metrics.New(prometheus.NewRegistry(), metrics.BuildInfo{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(testAuditOptions(dir, chain, maxBytes, p, m))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func fillTestChain(t *testing.T, l *audit.Log, chain string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("_%s-%d", chain, i)
		if err := l.Signed(context.Background(), &audit.Record{RequestID: fmt.Sprintf("req-%d", i), Route: "dmp", AssertionID: id, NameID: "810002345678"}); err != nil {
			t.Fatal(err)
		}
		l.Result(&audit.Record{RequestID: fmt.Sprintf("req-%d", i), Route: "dmp", AssertionID: id, Status: 200})
	}
}

// chainLines reads every line of files, in order.
func chainLines(t *testing.T, files []string) (lines [][]string) {
	t.Helper()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.Split(strings.TrimSuffix(string(data), "\n"), "\n"))
	}
	return lines
}

func writeChainLines(t *testing.T, files []string, lines [][]string) {
	t.Helper()
	for i, f := range files {
		if err := os.WriteFile(f, []byte(strings.Join(lines[i], "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// forge changes one record with edit, then recomputes every later link
// and re-signs every signed record with key and cert, as an attacker who
// read the code would.
func forge(t *testing.T, files []string, edit func(r *audit.Record) bool, key crypto.Signer, cert *x509.Certificate) {
	t.Helper()
	lines := chainLines(t, files)
	prev := ""
	edited := false
	for fi := range lines {
		for li, line := range lines[fi] {
			var r audit.Record
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			if !edited && edit(&r) {
				edited = true
			}
			if r.Seq > 1 {
				r.Prev = prev
			}
			if len(r.Signature) > 0 {
				r.Head = r.Prev
				d := signedDigest(&r)
				sig, err := key.Sign(rand.Reader, d[:], crypto.SHA256)
				if err != nil {
					t.Fatal(err)
				}
				r.Signature, r.Cert = sig, cert.Raw
			}
			b, _ := json.Marshal(&r)
			lines[fi][li] = string(b)
			h := sha256.Sum256(b)
			prev = hex.EncodeToString(h[:])
		}
	}
	if !edited {
		t.Fatal("nothing edited")
	}
	writeChainLines(t, files, lines)
}

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

// sameSubjectKey makes a key whose self-signed certificate copies ORG_SIGN's
// subject, and a rogue authority copying the IGC-Santé authority's names
// that issues one too.
func sameSubjectKeys(t *testing.T) map[string]*testpki.Cert {
	t.Helper()
	p := testpki.MustShared(t)
	self, err := testpki.NewRoot(testpki.Template{Subject: p.Sign.Cert.Subject})
	if err != nil {
		t.Fatal(err)
	}
	rogueRoot, err := testpki.NewRoot(testpki.Template{Subject: p.SanteRoot.Cert.Subject})
	if err != nil {
		t.Fatal(err)
	}
	rogueOrg, err := rogueRoot.Issue(testpki.Template{Subject: p.SanteOrg.Cert.Subject, IsCA: true})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := rogueOrg.Issue(testpki.Template{Subject: p.Sign.Cert.Subject,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*testpki.Cert{"self-signed copy of ORG_SIGN": self, "issued by a copy of the IGC-Santé authorities": leaf}
}

// Item 1: one record changed, the later links recomputed, the checkpoints
// re-signed with a self-made key whose certificate copies ORG_SIGN's
// subject: verify must not say OK.
func TestAuditVerifyRefusesASelfMadeSigner(t *testing.T) {
	// The genuine chain verifies with the same flags: the refusals below
	// are about the key, nothing else.
	genuine := writeTestChain(t, t.TempDir(), "pod-a", 40, 4096)
	if out, err := runAudit(t, verifyArgs(t, genuine...)...); err != nil || !strings.Contains(out, `chain "pod-a": OK`) {
		t.Fatalf("genuine chain: %v\n%s", err, out)
	}
	for name, fake := range sameSubjectKeys(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			files := writeTestChain(t, dir, "pod-a", 40, 4096)
			forge(t, files, func(r *audit.Record) bool {
				if r.Type == audit.TypeSigned && r.Seq > 5 {
					r.NameID = "810009999999"
					return true
				}
				return false
			}, fake.Key, fake.Cert)
			out, err := runAudit(t, verifyArgs(t, files...)...)
			if err == nil || strings.Contains(out, " OK") || !strings.Contains(out, "NOT ANCHORED") || !strings.Contains(out, "no trusted authority issued") {
				t.Fatalf("a chain re-signed by a self-made key verified:\n%s", out)
			}
			// With the shipped bundles (the default), said as plainly.
			out, err = runAudit(t, append([]string{"verify", "--structure-id", testpki.IDNatStruct}, files...)...)
			if err == nil || !strings.Contains(out, "NOT ANCHORED") || !strings.Contains(out, "AC RACINE IGC-SANTE ELEMENTAIRE") {
				t.Fatalf("default trust:\n%s", out)
			}
			t.Logf("%v\n%s", err, out)
		})
	}
}

// Item 2: the start and the end of a chain.
func TestAuditVerifyProtectsTheStartAndTheEnd(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, files []string) []string
		want   string
	}{
		{"first file deleted", func(t *testing.T, files []string) []string {
			os.Remove(files[0])
			return files[1:]
		}, "start"},
		{"first 30 records deleted", func(t *testing.T, files []string) []string {
			lines := chainLines(t, files)
			var all []string
			for _, l := range lines {
				all = append(all, l...)
			}
			os.WriteFile(files[0], []byte(strings.Join(all[30:], "\n")+"\n"), 0o600)
			for _, f := range files[1:] {
				os.Remove(f)
			}
			return files[:1]
		}, "start"},
		{"last record edited", func(t *testing.T, files []string) []string {
			lines := chainLines(t, files)
			last := lines[len(lines)-1]
			var r audit.Record
			json.Unmarshal([]byte(last[len(last)-1]), &r)
			r.Time = r.Time.Add(-time.Hour)
			b, _ := json.Marshal(&r)
			last[len(last)-1] = string(b)
			writeChainLines(t, files, lines)
			return files
		}, "bad checkpoint signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := writeTestChain(t, dir, "pod-a", 40, 4096)
			if len(files) < 3 {
				t.Fatalf("want rotated files, got %d", len(files))
			}
			files = tc.tamper(t, files)
			out, err := runAudit(t, verifyArgs(t, files...)...)
			if err == nil || strings.Contains(out, " OK") || !strings.Contains(out+err.Error(), tc.want) {
				t.Fatalf("%s passed: %v\n%s", tc.name, err, out)
			}
			t.Logf("%v\n%s", err, out)
		})
	}
}

// Item 2: a live chain's last records are covered by no checkpoint yet:
// verify says exactly which.
func TestAuditVerifyNamesUncoveredRecords(t *testing.T) {
	dir := t.TempDir()
	l := openTestChain(t, dir, "live", 0)
	fillTestChain(t, l, "live", 3)
	// A copy of the folder as it is while the proxy runs (or after a
	// crash): the last records follow the last checkpoint.
	snap := t.TempDir()
	files, _ := audit.ChainFiles(dir, "live")
	for _, f := range files {
		data, _ := os.ReadFile(f)
		os.WriteFile(filepath.Join(snap, filepath.Base(f)), data, 0o600)
	}
	l.Close()
	files, _ = audit.ChainFiles(snap, "live")
	lines := chainLines(t, files)
	last := lines[len(lines)-1]
	var r audit.Record
	json.Unmarshal([]byte(last[len(last)-1]), &r)
	if r.Type == audit.TypeCheckpoint {
		t.Fatal("the snapshot ends with a checkpoint")
	}
	r.Status = 500
	b, _ := json.Marshal(&r)
	last[len(last)-1] = string(b)
	writeChainLines(t, files, lines)
	out, _ := runAudit(t, verifyArgs(t, files...)...)
	want := fmt.Sprintf(" to %d (", r.Seq)
	if !strings.Contains(out, "not covered") || !strings.Contains(out, want) {
		t.Fatalf("verify does not say that record %d is covered by no checkpoint:\n%s", r.Seq, out)
	}
	t.Log(out)
}

// Item 5: a folder holding two replicas' chains is no tamper alarm; each
// chain is verified on its own, with a summary per chain.
func TestAuditVerifyFolderOfSeveralChains(t *testing.T) {
	dir := t.TempDir()
	writeTestChain(t, dir, "roc-proxy-7d9f-abcde", 25, 4096)
	writeTestChain(t, dir, "roc-proxy-7d9f-fghij", 15, 0)
	matches, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	for _, args := range [][]string{{dir}, matches} {
		out, err := runAudit(t, verifyArgs(t, args...)...)
		if err != nil {
			t.Fatalf("false alarm on a folder of two chains: %v\n%s", err, out)
		}
		for _, c := range []string{"roc-proxy-7d9f-abcde", "roc-proxy-7d9f-fghij"} {
			if !strings.Contains(out, c) {
				t.Errorf("no summary for chain %s:\n%s", c, out)
			}
		}
	}
	// show lists the tokens of both.
	out, err := runAudit(t, "show", "--json", dir)
	if err != nil || strings.Count(out, `"type":"signed"`) != 40 {
		t.Fatalf("show over two chains: %v\n%s", err, out)
	}
}

// Item 7: the files leave a distroless pod through "kubectl exec ... roc-proxy
// audit export": the export verifies as the folder does.
func TestAuditExportRoundTrip(t *testing.T) {
	dir := t.TempDir()
	writeTestChain(t, dir, "pod-a", 30, 4096)
	writeTestChain(t, dir, "pod-b", 10, 0)
	for _, format := range []string{"tar", "jsonl"} {
		t.Run(format, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := Run(t.Context(), []string{"audit", "export", "--format", format, dir}, &out, &errOut); err != nil {
				t.Fatalf("export: %v\n%s", err, errOut.String())
			}
			got := t.TempDir()
			if format == "tar" {
				untar(t, &out, got)
			} else {
				os.WriteFile(filepath.Join(got, "export.jsonl"), out.Bytes(), 0o600)
			}
			res, err := runAudit(t, verifyArgs(t, got)...)
			if err != nil {
				t.Fatalf("the export does not verify: %v\n%s", err, res)
			}
			if !strings.Contains(res, "pod-a") || !strings.Contains(res, "pod-b") {
				t.Fatalf("chains missing from the export:\n%s", res)
			}
		})
	}
}

// untar extracts a tar stream with the tar binary the security team's
// workstation has (an independent reader of our archive).
func untar(t *testing.T, r io.Reader, dir string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "export.tar")
	data, _ := io.ReadAll(r)
	os.WriteFile(f, data, 0o600)
	if out, err := execCommand("tar", "-xf", f, "-C", dir); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, out)
	}
}

// Item 1: a certificate the trusted authority did issue, but to another
// establishment, does not anchor this one's chain; and without the
// establishment, verify does not say OK.
func TestAuditVerifyRefusesAnotherEstablishment(t *testing.T) {
	p := testpki.MustShared(t)
	other, err := p.SanteOrg.Issue(testpki.Template{
		Subject:  pkix.Name{Country: []string{"FR"}, Organization: []string{"AUTRE HOPITAL"}, OrganizationalUnit: []string{"1990000027"}, CommonName: testpki.SignCN},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := writeTestChain(t, dir, "pod-a", 20, 0)
	// Without the establishment: not OK, and it says what to give.
	out, err := runAudit(t, append([]string{"verify", "--trust", anchorArgs(t)[1]}, files...)...)
	if err == nil || !strings.Contains(out, "NOT VERIFIED") || !strings.Contains(out, "--structure-id") || !strings.Contains(out, testpki.IDNatStruct) {
		t.Fatalf("no establishment given:\n%s", out)
	}
	forge(t, files, func(r *audit.Record) bool {
		if r.Type == audit.TypeSigned {
			r.NameID = "810009999999"
			return true
		}
		return false
	}, other.Key, other.Cert)
	out, err = runAudit(t, verifyArgs(t, files...)...)
	if err == nil || !strings.Contains(out, "NOT ANCHORED") || !strings.Contains(out, "not the establishment's") {
		t.Fatalf("another establishment's certificate anchored the chain:\n%s", out)
	}
	// --signer pins certificates instead of a structure id.
	signer := filepath.Join(t.TempDir(), "signer.pem")
	os.WriteFile(signer, testpki.PEM(p.Sign.Cert), 0o644)
	out, err = runAudit(t, append([]string{"verify", "--trust", anchorArgs(t)[1], "--signer", signer}, files...)...)
	if err == nil || !strings.Contains(out, "not the establishment's") {
		t.Fatalf("--signer:\n%s", out)
	}
}

// Item 2: files archived elsewhere: verify starts at a checkpoint only when
// asked, and says so.
func TestAuditVerifyFromCheckpoint(t *testing.T) {
	dir := t.TempDir()
	files := writeTestChain(t, dir, "pod-a", 40, 4096)
	os.Remove(files[0])
	out, err := runAudit(t, verifyArgs(t, append([]string{"--from-checkpoint"}, files[1:]...)...)...)
	if err != nil || !strings.Contains(out, `chain "pod-a": OK`) || !strings.Contains(out, "(--from-checkpoint)") {
		t.Fatalf("--from-checkpoint: %v\n%s", err, out)
	}
	// Cutting inside a file leaves a start that is no checkpoint.
	lines := chainLines(t, files[1:2])
	os.WriteFile(files[1], []byte(strings.Join(lines[0][1:], "\n")+"\n"), 0o600)
	out, err = runAudit(t, verifyArgs(t, append([]string{"--from-checkpoint"}, files[1:]...)...)...)
	if err == nil || !strings.Contains(out, "is not a checkpoint") {
		t.Fatalf("a start that is no checkpoint: %v\n%s", err, out)
	}
}

// Item 2 and 8: with the copy shipped to the SIEM, an edited or truncated
// tail is detected even where no checkpoint covers it yet.
func TestAuditVerifyAgainstTheShippedCopy(t *testing.T) {
	dir := t.TempDir()
	l := openTestChain(t, dir, "live", 0)
	fillTestChain(t, l, "live", 3)
	l.Close()
	files, _ := audit.ChainFiles(dir, "live")
	lines := chainLines(t, files)
	shipped := filepath.Join(t.TempDir(), "siem.jsonl")
	// A SIEM export: the records, with unrelated lines around them.
	os.WriteFile(shipped, []byte("not a record\n"+strings.Join(lines[0], "\n")+"\n"), 0o600)
	if out, err := runAudit(t, verifyArgs(t, "--shipped", shipped, dir)...); err != nil || !strings.Contains(out, "kept elsewhere: ") {
		t.Fatalf("untouched files: %v\n%s", err, out)
	}
	// The last records (the final checkpoint removed, a status changed).
	all := lines[0]
	var r audit.Record
	json.Unmarshal([]byte(all[len(all)-2]), &r)
	r.Status = 502
	b, _ := json.Marshal(&r)
	edited := append(append([]string(nil), all[:len(all)-2]...), string(b))
	os.WriteFile(files[0], []byte(strings.Join(edited, "\n")+"\n"), 0o600)
	out, err := runAudit(t, verifyArgs(t, "--shipped", shipped, dir)...)
	if err == nil || !strings.Contains(out, "differs from the copy kept elsewhere") {
		t.Fatalf("edited tail: %v\n%s", err, out)
	}
	os.WriteFile(files[0], []byte(strings.Join(all[:len(all)-2], "\n")+"\n"), 0o600)
	out, err = runAudit(t, verifyArgs(t, "--shipped", shipped, dir)...)
	if err == nil || !strings.Contains(out, "truncated") {
		t.Fatalf("truncated tail: %v\n%s", err, out)
	}
}

// Item 2: the checkpoints after some record removed and the rest relinked
// (nothing re-signed): the writer never leaves more than checkpoint_every
// records unsigned, so verify calls it tampering, not an uncovered tail.
func TestAuditVerifyRefusesRemovedCheckpoints(t *testing.T) {
	dir := t.TempDir()
	files := writeTestChain(t, dir, "pod-a", 40, 0) // one file, a checkpoint every 10 records
	lines := chainLines(t, files)[0]
	var kept []string
	prev := ""
	seq := uint64(0)
	for i, line := range lines {
		var r audit.Record
		json.Unmarshal([]byte(line), &r)
		if i > 5 && r.Type == audit.TypeCheckpoint {
			continue
		}
		seq++
		r.Seq = seq
		if seq > 1 {
			r.Prev = prev
		}
		b, _ := json.Marshal(&r)
		if i > 5 && r.Type == audit.TypeSigned {
			b = bytes.Replace(b, []byte("810002345678"), []byte("810009999999"), 1)
		}
		h := sha256.Sum256(b)
		prev = hex.EncodeToString(h[:])
		kept = append(kept, string(b))
	}
	writeChainLines(t, files, [][]string{kept})
	out, err := runAudit(t, verifyArgs(t, files...)...)
	if err == nil || strings.Contains(out, ": OK") || !strings.Contains(out, "checkpoint") {
		t.Fatalf("a chain whose checkpoints were removed verified:\n%s", out)
	}
	t.Log(out)
}

// Item 7, as kubectl exec runs it in the distroless image: the binary
// alone, no shell, no PATH, no tar; the archive read back with Go's own
// tar reader, then verified.
func TestAuditExportFromTheBinaryAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	writeTestChain(t, dir, "roc-proxy-0", 30, 4096)
	bin := buildRocProxy(t, t.TempDir())
	cmd := exec.Command(bin, "audit", "export", dir)
	cmd.Env = []string{} // nothing but the binary
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("export: %v\n%s", err, errOut.String())
	}
	got := t.TempDir()
	tr := tar.NewReader(&out)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != filepath.Base(h.Name) || h.Typeflag != tar.TypeReg {
			t.Fatalf("archive entry %q (type %c): not a plain file name", h.Name, h.Typeflag)
		}
		data, _ := io.ReadAll(tr)
		os.WriteFile(filepath.Join(got, h.Name), data, 0o600)
		n++
	}
	if res, err := runAudit(t, verifyArgs(t, got)...); err != nil || !strings.Contains(res, `chain "roc-proxy-0": OK`) {
		t.Fatalf("%d files exported; verify: %v\n%s", n, err, res)
	}
	if !strings.Contains(errOut.String(), "exported") {
		t.Errorf("no summary on standard error: %q", errOut.String())
	}
}

// Flags may follow the paths (the command line of issue 14a).
func TestAuditFlagsAfterPaths(t *testing.T) {
	dir := t.TempDir()
	writeTestChain(t, dir, "pod-a", 3, 0)
	args := append([]string{"verify", dir}, anchorArgs(t)...)
	if out, err := runAudit(t, args...); err != nil || !strings.Contains(out, `chain "pod-a": OK`) {
		t.Fatalf("%v\n%s", err, out)
	}
	var out bytes.Buffer
	if err := Run(t.Context(), []string{"audit", "export", dir, "--format", "jsonl", "--chain", "pod-a"}, &out, io.Discard); err != nil || strings.Count(out.String(), "\n") < 8 {
		t.Fatalf("export: %v\n%s", err, out.String())
	}
}
