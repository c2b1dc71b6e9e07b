package app

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/cli/democmd"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// demoAudit runs the demo keeping its folder, and returns its audit files.
func demoAudit(t *testing.T) (dir string, files []string) {
	t.Helper()
	// The demo removes its folder; run the same steps on a kept one.
	dir = t.TempDir()
	err := democmd.Session(t.Context(), dir, buildForDemo)
	if err != nil {
		t.Fatal(err)
	}
	files, err = audit.ChainFiles(filepath.Join(dir, "audit"), "demo")
	if err != nil || len(files) == 0 {
		t.Fatalf("no audit files: %v", err)
	}
	return dir, files
}

func TestAuditCommands(t *testing.T) {
	dir, files := demoAudit(t)
	var out bytes.Buffer
	anchor := []string{"audit", "verify", "--trust", filepath.Join(dir, "igc-sante-test.pem"), "--structure-id", testpki.IDNatStruct}
	if err := Run(t.Context(), append(anchor, files...), &out, io.Discard); err != nil {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), `chain "demo": OK`) || !strings.Contains(out.String(), "2 signed tokens") {
		t.Errorf("verify output: %s", out.String())
	}

	// show: the VIHF of the DMP call, its stored assertion re-verified.
	out.Reset()
	args := append([]string{"audit", "show", "--route", "dmp", "--json", "--verify-tokens", "--trust", filepath.Join(dir, "igc-sante-test.pem")}, files...)
	if err := Run(t.Context(), args, &out, io.Discard); err != nil {
		t.Fatalf("show: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("show printed %d records, want the signed one and its result:\n%s", len(lines), out.String())
	}
	var signed struct {
		audit.Record
		TokenCheck string `json:"token_check"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &signed); err != nil {
		t.Fatal(err)
	}
	if signed.Type != "signed" || signed.NameID != "810002345678" || signed.TokenCheck != "signature valid" ||
		// The demo stores assertions, which hold the INS: it keeps it
		// (patient_id keep); hashing is TestAuditRecordOfNoPatientHasNoPatientHash's.
		signed.Attributes["patient_ins"] != "279035121518989" || signed.Attributes["patient_ins_sha256"] != "" {
		t.Errorf("signed record: %+v", signed)
	}
	if !strings.Contains(lines[1], `"type":"result"`) || !strings.Contains(lines[1], `"status":200`) {
		t.Errorf("result record: %s", lines[1])
	}

	// A record altered in the file: verify locates it.
	tampered := filepath.Join(t.TempDir(), filepath.Base(files[0]))
	data, _ := os.ReadFile(files[0])
	os.WriteFile(tampered, bytes.Replace(data, []byte(`"name_id":"810002345678"`), []byte(`"name_id":"810009999999"`), 1), 0o600)
	out.Reset()
	err := Run(t.Context(), append(anchor, tampered), &out, io.Discard)
	if err == nil || !strings.Contains(out.String(), "modified") || !strings.Contains(out.String(), tampered+":") {
		t.Fatalf("tampered file: %v", err)
	}
}

// The checkpoint that the process log ships verifies against the files,
// and catches their truncation.
func TestAuditCheckpointFromLogs(t *testing.T) {
	dir, files := demoAudit(t)
	anchor := []string{"audit", "verify", "--trust", filepath.Join(dir, "igc-sante-test.pem")}
	lines, _, err := audit.ReadRecords(files[len(files)-1])
	if err != nil {
		t.Fatal(err)
	}
	cp := string(lines[len(lines)-1]) // the final checkpoint
	if !strings.Contains(cp, `"type":"checkpoint"`) {
		t.Fatalf("last record is not a checkpoint: %s", cp)
	}
	signer := filepath.Join(t.TempDir(), "sign.pem")
	os.WriteFile(signer, testpki.PEM(mustSignCert(t, files)), 0o644)
	if err := Run(t.Context(), append(append(anchor, "--checkpoint", cp, "--signer", signer), files...), io.Discard, io.Discard); err != nil {
		t.Fatalf("with the checkpoint: %v", err)
	}
	// Drop the checkpoint and what precedes it at the end of the file.
	data, _ := os.ReadFile(files[len(files)-1])
	all := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	os.WriteFile(files[len(files)-1], []byte(strings.Join(all[:len(all)-2], "\n")+"\n"), 0o600)
	var out bytes.Buffer
	err = Run(t.Context(), append(append(anchor, "--checkpoint", cp, "--signer", signer), files...), &out, io.Discard)
	if err == nil || !strings.Contains(out.String(), "truncated") {
		t.Fatalf("truncated tail: %v", err)
	}
}

// mustSignCert reads the ORG_SIGN certificate from a checkpoint record.
func mustSignCert(t *testing.T, files []string) *x509.Certificate {
	t.Helper()
	recs, err := audit.Select(files, audit.Filter{Types: []string{audit.TypeCheckpoint}})
	if err != nil || len(recs) == 0 {
		t.Fatalf("no checkpoint: %v", err)
	}
	certs, err := trust.ParseCertificates(recs[0].Cert)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}
