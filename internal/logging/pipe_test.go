package logging

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/config"
)

// Under systemd (journald's socket) or Kubernetes (a pipe), stderr cannot
// be synced: fsync fails with EINVAL. A warning must go out at once as a
// JSON line, and nothing else: zap reporting the failed sync as a
// plain-text "write error" line after every warning or error broke the
// JSON stream the log shippers parse.
func TestWarningsOnAPipeStayJSON(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	interval := time.Hour
	log, flush, err := New(config.Log{Level: "info", Format: "json", FlushInterval: &interval}, w)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("request")
	log.Warn("revocation fetch failed")
	log.Error("configuration reload refused")
	flush()
	w.Close()
	out, _ := io.ReadAll(r)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 {
		t.Errorf("%d lines, want the 3 logged: %q", len(lines), lines)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "{") {
			t.Errorf("not a JSON line: %q", l)
		}
	}
}
