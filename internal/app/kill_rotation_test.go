package app

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/audit"
)

// The real binary, SIGKILLed three times under signed traffic with files
// rotated every few records (kills land before, during and after
// rotations), restarted each time, then stopped: every token the partner
// received is recorded once, audit verify of the folder says OK with the
// collector's copy (--shipped), and the collector got every record.
func TestRepeatedSIGKILLAcrossRotations(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	k := newSigningChild(t, "rot", "max_file_bytes: 6000, checkpoint_every: 7")
	dir, bin, cfgPath, auditDir, collector := k.dir, k.bin, k.cfgPath, k.auditDir, k.collector
	for round := 0; round < 3; round++ {
		cmd, base := startRocProxy(t, bin, cfgPath)
		n := killUnderLoad(t, cmd, base, 6, 150, 40+round*17, 15*time.Second, func(w, i int) string { return fmt.Sprintf("81%02d%04d%04d", round, w, i) })
		t.Logf("round %d: killed after %d tokens", round, n)
	}
	cmd, _ := startRocProxy(t, bin, cfgPath)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("stopping: %v", err)
	}

	auditFiles, _ := audit.ChainFiles(auditDir, "rot")
	if len(auditFiles) < 6 {
		for _, f := range auditFiles {
			fi, _ := os.Stat(f)
			t.Logf("%s %d", f, fi.Size())
		}
		t.Fatalf("%d files: too few rotations", len(auditFiles))
	}
	recs, err := audit.Select(auditFiles, audit.Filter{Types: []string{audit.TypeSigned}})
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string]int{}
	for _, r := range recs {
		if r.Type == audit.TypeSigned {
			recorded[r.AssertionID]++
		}
	}
	k.mu.Lock()
	for id := range k.received {
		if recorded[id] != 1 {
			t.Errorf("token %s reached the partner and is recorded %d times", id, recorded[id])
		}
	}
	n := len(k.received)
	k.mu.Unlock()
	var shipped []string
	waitUntil(t, "the collector to read every record", func() bool {
		shipped = shipped[:0]
		seen := map[uint64]bool{}
		for _, m := range collector.Messages() {
			var h struct{ Seq uint64 }
			json.Unmarshal(m.Msg, &h)
			seen[h.Seq] = true
			shipped = append(shipped, string(m.Msg))
		}
		rep, err := audit.Verify(auditFiles, audit.VerifyOptions{})
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		for s := uint64(1); s <= rep.LastSeq; s++ {
			if !seen[s] {
				return false
			}
		}
		return true
	})
	siem := filepath.Join(dir, "siem.jsonl")
	os.WriteFile(siem, []byte(strings.Join(shipped, "\n")+"\n"), 0o600)
	out, err := runAudit(t, verifyArgs(t, "--shipped", siem, auditDir)...)
	if err != nil {
		t.Fatalf("false alarm after three SIGKILLs across rotations: %v\n%s", err, out)
	}
	t.Logf("%d tokens at the partner, %d files\n%s", n, len(auditFiles), out)
}
