package auditcmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roc-proxy/roc-proxy/internal/audit"
)

// roc-proxy now refuses a guessable audit.patient_id_key at start, but
// records an older version keyed with one exist: the security team's
// search with that past key (audit show --patient-id-key) must still find
// them, and say the key is guessable, not refuse it.
func TestAuditShowWithAGuessablePastKey(t *testing.T) {
	const ins = "279035121518989"
	dir := t.TempDir()
	weak := filepath.Join(t.TempDir(), "old-patient-id.key")
	os.WriteFile(weak, []byte(strings.Repeat("hopital", 6)+"\n"), 0o600)
	key := []byte(strings.Repeat("hopital", 6))
	attr, value := audit.PatientHash(ins, key)
	l := openTestChain(t, dir, "old", 0)
	if err := l.Signed(t.Context(), &audit.Record{RequestID: "r1", Route: "dmp", AssertionID: "_weak", Attributes: map[string]string{attr: value}}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := audit.ReadPatientKey(weak); err == nil {
		t.Fatal("a guessable key is accepted for new records")
	}
	out, err := runAudit(t, "show", "--patient-ins", ins, "--patient-id-key", weak, dir)
	if err != nil || !strings.Contains(out, "_weak") || !strings.Contains(out, "guessable") {
		t.Fatalf("search with the past key: %v\n%s", err, out)
	}
}
