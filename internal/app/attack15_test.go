package app

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/audit"
)

// Ops stop roc-proxy (SIGTERM) while a reload loop or a log rotation
// script keeps sending SIGHUP (systemctl reload in a retry loop, a
// logrotate postrotate on several units): the shutdown must still drain,
// close the audit log with its final checkpoint and exit 0. A SIGHUP that
// lands after the handler is removed, while the process ends, used to
// kill it (SIGHUP's default action: exit by signal, not 0).
func TestSIGHUPStormDuringShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	e := newTestEnv(t)
	bin := buildRocProxy(t, e.dir)
	up := partner(t, e.pki, "idb.amc.test", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
	for round := 0; round < 5; round++ {
		cfgPath := e.config(t, up.URL, "")
		text, _ := os.ReadFile(cfgPath)
		if err := os.WriteFile(cfgPath, []byte(e.withAudit(e.withSign(withRoute(string(text), tokenRoute(up.URL))))), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd, _ := startRocProxy(t, bin, cfgPath)
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		var err error
	storm:
		for i := 0; i < 20000; i++ {
			select {
			case err = <-exited:
				break storm
			default:
			}
			cmd.Process.Signal(syscall.SIGHUP)
			time.Sleep(100 * time.Microsecond)
		}
		if err == nil && cmd.ProcessState == nil {
			err = <-exited
		}
		if err != nil || !cmd.ProcessState.Success() {
			t.Fatalf("round %d: SIGTERM then a SIGHUP storm: %v (%v)", round, err, cmd.ProcessState)
		}
		files, _ := audit.ChainFiles(filepath.Join(e.dir, "audit"), "reload")
		lines, _, _ := audit.ReadRecords(files[len(files)-1])
		var last audit.Record
		json.Unmarshal(lines[len(lines)-1], &last)
		if !last.IsSigned() {
			t.Fatalf("round %d: the audit log did not close (last record: %s)", round, last.Type)
		}
	}
}
