package app

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/roc-proxy/roc-proxy/config"

	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// The patient's INS is 13 structured digits and a 2-digit key: about
// 10^10 values, which a laptop hashes in minutes. An attacker holding the
// records (a SIEM copy, an export, a backup) reverses a plain SHA-256 of
// it by trying every INS: with patient_id: hash alone the record names the
// patient. With audit.patient_id_key the record carries an HMAC-SHA-256
// under a key kept apart from the records: the same enumeration finds
// nothing, while the security team, holding the key, still finds a
// patient's records with audit show --patient-ins. config check says
// which of the two a configuration writes.
func TestPatientHashResistsEnumeration(t *testing.T) {
	const ins = "279035121518989"
	// The attacker's search: every order number and key around a known
	// birth date and place (10^5 of the 10^10 candidates, in the test).
	enumerate := func(record string) string {
		for order := 0; order < 1000; order++ {
			for key := 0; key < 100; key++ {
				cand := fmt.Sprintf("%s%03d%02d", ins[:10], order, key)
				h := sha256.Sum256([]byte(cand))
				if strings.Contains(record, hex.EncodeToString(h[:])) {
					return cand
				}
			}
		}
		return ""
	}
	for _, keyed := range []bool{false, true} {
		t.Run(fmt.Sprintf("keyed=%v", keyed), func(t *testing.T) {
			e := newTestEnv(t)
			up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
			auditDir := filepath.Join(e.dir, "audit")
			keyFile := filepath.Join(e.dir, "patient-id.key")
			os.WriteFile(keyFile, []byte("4f9c1d0e8b7a6f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6\n"), 0o600)
			extra := "  patient_id: hash\n"
			if keyed {
				extra += "  patient_id_key: " + keyFile + "\n"
			}
			path := filepath.Join(e.dir, "roc-proxy.yaml")
			os.WriteFile(path, []byte(fmt.Sprintf(`listen: {sih: "127.0.0.1:0", admin: "127.0.0.1:0"}
identity:
  auth: {pkcs12: %s, password_file: %s}
  sign: {pkcs12: %s, password_file: %s}
trust_bundles: {osi: {paths: [%s]}, sante: {paths: [%s]}}
audit:
  dir: %s
  chain_id: dmp-0
%sroutes:
  - name: dmp
    path_prefix: /dmp/
    upstream: "%s"
    server_name: %s
    trust: [osi]
    revocation: {policy: off}
    token: {profile: vihf, vihf: {software_name: TEST, software_version: "1"}}
`, e.files.AuthP12, e.files.PasswordFile, e.files.SignP12, e.files.PasswordFile, e.files.OSIBundle, e.files.SanteBundle, auditDir, extra, up.URL, testpki.IDBHost)), 0o600)
			var check bytes.Buffer
			if err := Run(t.Context(), []string{"config", "check", path}, &check, &check); err != nil {
				t.Fatalf("config check: %v\n%s", err, check.String())
			}
			warned := strings.Contains(check.String(), "pseudonymisation only")
			if warned == keyed {
				t.Errorf("config check, keyed=%v: %s", keyed, check.String())
			}
			p := buildFile(t, path)
			sih, stop := serveUntil(t, p)
			req, _ := http.NewRequest(http.MethodPost, sih+"/dmp/", strings.NewReader(`<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><x/></S:Body></S:Envelope>`))
			req.Header.Set("Content-Type", "text/xml")
			req.Header.Set("X-Roc-User-Id", "810012345678")
			req.Header.Set("X-Roc-User-Name", "DUPONT Jeanne")
			req.Header.Set("X-Roc-User-Roles", "10")
			req.Header.Set("X-Roc-Patient-Ins", ins)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			stop()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			files, _ := audit.ChainFiles(auditDir, "dmp-0")
			var all strings.Builder
			for _, f := range files {
				data, _ := os.ReadFile(f)
				all.Write(data)
			}
			found := enumerate(all.String())
			switch {
			case keyed && found != "":
				t.Fatalf("the attacker recovered the INS %s from a keyed record", found)
			case !keyed && found != ins:
				t.Fatalf("the plain hash was not reversed (%q): the test's attacker is broken", found)
			case keyed && !strings.Contains(all.String(), `"patient_ins_hmac":"`):
				t.Fatalf("no keyed patient hash in the records:\n%s", all.String())
			}
			// The security team finds the patient's records, with the key.
			show := []string{"show", "--patient-ins", ins, auditDir}
			if keyed {
				out, err := runAudit(t, "show", "--patient-ins", ins, auditDir)
				if err != nil || strings.Contains(out, "dmp ") || !strings.Contains(out, "--patient-id-key") {
					t.Errorf("without the key, show found keyed records or did not say why: %v\n%s", err, out)
				}
				show = []string{"show", "--patient-ins", ins, "--patient-id-key", keyFile, "--json", auditDir}
			} else {
				show = []string{"show", "--patient-ins", ins, "--json", auditDir}
			}
			out, err := runAudit(t, show...)
			if err != nil || strings.Count(out, `"type":"signed"`) != 1 || strings.Count(out, `"type":"result"`) != 1 {
				t.Errorf("show --patient-ins: %v\n%s", err, out)
			}
			if out, _ := runAudit(t, "show", "--patient-ins", "180127512345678", "--patient-id-key", keyFile, "--json", auditDir); strings.Contains(out, `"type":"signed"`) {
				t.Errorf("another patient's INS matched: %s", out)
			}
		})
	}
}

// A patient_id_key file too short to be a secret, or missing, stops the
// start (and config check) with the field and the file named.
func TestPatientKeyFileIsChecked(t *testing.T) {
	e := newTestEnv(t)
	short := filepath.Join(e.dir, "short.key")
	os.WriteFile(short, []byte("secret\n"), 0o600)
	missing := filepath.Join(e.dir, "missing.key")
	for file, want := range map[string]string{short: "holds 6 bytes", missing: "no such file"} {
		path := e.signingConfig(t, "https://127.0.0.1:1/x", e.files.SignP12, filepath.Join(e.dir, "audit"), "  patient_id_key: "+file+"\n")
		err := Run(t.Context(), []string{"config", "check", path}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "audit.patient_id_key") || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), want) {
			t.Errorf("config check with %s: %v", file, err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Build(cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()}); err == nil || !strings.Contains(err.Error(), "audit.patient_id_key") {
			t.Errorf("start with %s: %v", file, err)
		}
	}
}
