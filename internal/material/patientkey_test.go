package material

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roc-proxy/roc-proxy/config"
)

// The key roc-proxy starts with is held to the same rules as the one
// audit.ReadPatientKey accepts: a key of zeros, one character repeated or
// a short word repeated is refused at start and at reload (the HMAC would
// be no better than a plain hash), not only by audit show.
func TestGuessablePatientKeyRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"zeros":    strings.Repeat("0", 64),
		"repeated": strings.Repeat("hopital", 6),
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := PatientKey(&config.Config{Audit: config.Audit{PatientIDKey: path}})
		if err == nil || !strings.Contains(err.Error(), "guessable") || !strings.Contains(err.Error(), "audit.patient_id_key") {
			t.Errorf("%s: %v, want a refusal naming audit.patient_id_key and saying it is guessable", name, err)
		}
	}
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("3f9a1c0b7e52d8469af31b2c5d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90\n"), 0o600)
	if key, err := PatientKey(&config.Config{Audit: config.Audit{PatientIDKey: good}}); err != nil || len(key) != 64 {
		t.Errorf("a random key: %d bytes, %v", len(key), err)
	}
}
