package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/sim"
)

// Item 8: every record, once durable, reaches the security team's tools:
// JSON lines on standard output and RFC 5424 messages at a syslog
// collector, each identical to the line in the files.
func TestAuditShippingThroughTheProxy(t *testing.T) {
	e := newTestEnv(t)
	collector, err := sim.StartSyslogCollector(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer collector.Close()
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
	auditDir := filepath.Join(e.dir, "audit")
	ship := fmt.Sprintf("  ship:\n    stdout: true\n    syslog: {address: %q, transport: tcp, hostname: roc-proxy-0}\n", collector.Addr)
	cfg, err := config.Load(e.signingConfig(t, up.URL, e.files.SignP12, auditDir, ship))
	if err != nil {
		t.Fatal(err)
	}
	var stdout syncBuffer
	p, err := Build(cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry(), Stdout: &stdout})
	if err != nil {
		t.Fatal(err)
	}
	sih, stop := serveUntil(t, p)
	for i := 0; i < 5; i++ {
		resp, err := http.Post(sih+"/idb/", "text/xml", strings.NewReader(`<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><x/></S:Body></S:Envelope>`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	stop() // drains: the final checkpoint is shipped too

	files, _ := audit.ChainFiles(auditDir, "renewal")
	var want []string
	for _, f := range files {
		data, _ := os.ReadFile(f)
		want = append(want, strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")...)
	}
	if got := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stdout shipped %d lines, the files hold %d:\n%s", len(got), len(want), stdout.String())
	}
	// Delivered means acknowledged by the collector's TCP: its reading
	// goroutine may still be parsing the last ones.
	for deadline := time.Now().Add(10 * time.Second); len(collector.Messages()) < len(want) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	msgs := collector.Messages()
	if errs := collector.Errors(); len(errs) > 0 {
		t.Fatalf("the collector could not parse what it got: %v", errs)
	}
	if len(msgs) != len(want) {
		t.Fatalf("the collector got %d messages, the files hold %d records", len(msgs), len(want))
	}
	for i, m := range msgs {
		var r audit.Record
		json.Unmarshal([]byte(want[i]), &r)
		wantPri := 10*8 + 6 // authpriv.info
		if r.Type == audit.TypeOpen || r.Type == audit.TypeCheckpoint {
			wantPri = 10*8 + 5 // authpriv.notice
		}
		if string(m.Msg) != want[i] || m.AppName != "roc-proxy" || m.ProcID != "renewal" || m.MsgID != r.Type ||
			m.Hostname != "roc-proxy-0" || m.Priority != wantPri || !m.Timestamp.Equal(r.Time.Truncate(1000)) {
			t.Errorf("message %d: %+v\nwant the record %s", i, m, want[i])
		}
	}
	// What the SIEM holds verifies the files.
	var siem bytes.Buffer
	for _, m := range msgs {
		siem.Write(append(m.Msg, '\n'))
	}
	kept := filepath.Join(t.TempDir(), "siem.jsonl")
	os.WriteFile(kept, siem.Bytes(), 0o600)
	if out, err := runAudit(t, verifyArgs(t, "--shipped", kept, auditDir)...); err != nil || !strings.Contains(out, fmt.Sprintf("kept elsewhere: %d records", len(want))) {
		t.Fatalf("verify against the SIEM's copy: %v\n%s", err, out)
	}
}

// config check reads the collector's authority: a missing file is named
// before the proxy starts.
func TestConfigCheckNamesTheCollectorAuthority(t *testing.T) {
	e := newTestEnv(t)
	missing := filepath.Join(e.dir, "siem-ca.pem")
	ship := fmt.Sprintf("  ship:\n    syslog: {address: \"siem.hopital.local:6514\", ca: %s}\n", missing)
	path := e.signingConfig(t, "https://127.0.0.1:1/x", e.files.SignP12, filepath.Join(e.dir, "audit"), ship)
	err := Run(t.Context(), []string{"config", "check", path}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "audit.ship.syslog.ca") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing collector authority: %v", err)
	}
	os.WriteFile(missing, testpkiPEMRoot(e), 0o644)
	var out bytes.Buffer
	if err := Run(t.Context(), []string{"config", "check", path}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "audit.ship.syslog: tls://siem.hopital.local:6514 (facility authpriv)") {
		t.Fatalf("%v\n%s", err, out.String())
	}
}

func testpkiPEMRoot(e *testEnv) []byte { data, _ := os.ReadFile(e.files.OSIBundle); return data }
