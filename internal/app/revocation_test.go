package app

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/sim"
	"github.com/roc-proxy/roc-proxy/internal/testclock"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// TestRevocationThroughTheProxy runs the whole process wiring against a
// simulated CRL server and OCSP responder: warm answers cost no network
// call, a revoked partner is refused, and when status cannot be had the
// route's policy decides.
func TestRevocationThroughTheProxy(t *testing.T) {
	rs, err := sim.StartRevocation(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	o := testpki.Options{RevocationBaseURL: rs.URL, ServerNames: []string{"good.amc.test", "revoked.amc.test"}}
	pki, err := testpki.New(o)
	if err != nil {
		t.Fatal(err)
	}
	rs.PublishFor(pki)
	rs.Revoke("ac-serveur", pki.Servers["revoked.amc.test"].Cert.SerialNumber)
	dir := t.TempDir()
	files, err := pki.WriteFiles(dir, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	// Every answer closes its connection: each call is a new handshake,
	// where the revocation check runs again.
	closing := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "<ok/>")
	}
	good, revoked := partner(t, pki, "good.amc.test", closing), partner(t, pki, "revoked.amc.test", closing)
	cfgText := yamlf(`listen: {sih: "127.0.0.1:0", admin: "127.0.0.1:0"}
identity: {auth: {pkcs12: %s, password_file: %s}}
trust_bundles: {osi: {paths: [%s]}, sante: {paths: [%s]}}
revocation:
  fetch_timeout: 500ms
  grace: 1ms
routes:
  - {name: hard, path_prefix: /hard/, upstream: %s, server_name: good.amc.test, trust: [osi]}
  - {name: soft, path_prefix: /soft/, upstream: %s, server_name: good.amc.test, trust: [osi], revocation: {policy: soft}}
  - {name: revoked, path_prefix: /revoked/, upstream: %s, server_name: revoked.amc.test, trust: [osi], revocation: {policy: soft, sources: [crl]}}
`, files.AuthP12, files.PasswordFile, files.OSIBundle, files.SanteBundle, good.URL, good.URL, revoked.URL)
	cfgPath := filepath.Join(dir, "roc-proxy.yaml")
	os.WriteFile(cfgPath, []byte(cfgText), 0o600)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	clk := testclock.New(time.Now())
	sih := startProxy(t, cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry(), Now: clk.Now})

	call := func(path string) (int, map[string]string) {
		t.Helper()
		resp, err := http.Post(sih+path, "text/xml", strings.NewReader("<x/>"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]string
		b, _ := io.ReadAll(resp.Body)
		json.Unmarshal(b, &body)
		return resp.StatusCode, body
	}
	if code, _ := call("/hard/"); code != 200 {
		t.Fatalf("good partner: %d", code)
	}
	if code, body := call("/revoked/"); code != 502 || body["reason"] != "revoked" || body["source"] != "crl" {
		t.Fatalf("revoked partner: %d %v", code, body)
	}
	// Warm: new connections (the partner closes them) and many calls, not
	// one revocation request on the network.
	before := rs.OCSPRequests.Load() + rs.CRLRequests.Load()
	for i := 0; i < 20; i++ {
		if code, _ := call("/hard/"); code != 200 {
			t.Fatalf("call %d: %d", i, code)
		}
	}
	if n := rs.OCSPRequests.Load() + rs.CRLRequests.Load() - before; n != 0 {
		t.Fatalf("%d revocation requests on the network for warm calls", n)
	}

	// The responder and CRL server go down; two days pass: every cached
	// answer is stale past the grace.
	rs.SetFault(sim.FaultDown, 0)
	clk.Add(48 * time.Hour)
	if code, body := call("/hard/"); code != 502 || body["reason"] != "revocation_unavailable" {
		t.Fatalf("hard policy with no status: %d %v", code, body)
	}
	if code, _ := call("/soft/"); code != 200 {
		t.Fatalf("soft policy with no status: %d", code)
	}
}

// startProxy builds and serves cfg on loopback until the test ends, and
// returns the SIH base URL once the proxy is ready.
func startProxy(t *testing.T, cfg *config.Config, d Deps) string {
	t.Helper()
	p, err := Build(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	sih, _ := serve(t, p)
	return sih
}

// serve runs p on loopback until the test ends and returns its SIH and
// admin base URLs once it is ready.
func serve(t *testing.T, p *Proxy) (sih, admin string) {
	t.Helper()
	sihLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, sihLn, adminLn) }()
	t.Cleanup(func() {
		stop()
		<-served
		http.DefaultClient.CloseIdleConnections()
	})
	admin = "http://" + adminLn.Addr().String()
	waitReady(t, admin)
	return "http://" + sihLn.Addr().String(), admin
}

// fullDisk fails writes while full is set.
type fullDisk struct {
	f    *os.File
	full *atomic.Bool
}

func (d fullDisk) Write(b []byte) (int, error) {
	if d.full.Load() {
		return 0, syscall.ENOSPC
	}
	return d.f.Write(b)
}
func (d fullDisk) Sync() error  { return d.f.Sync() }
func (d fullDisk) Close() error { return d.f.Close() }

// TestTokensThroughTheProxy: a route signing ROC tokens, its refusals, and
// a revoked ORG_SIGN.
func TestTokensThroughTheProxy(t *testing.T) {
	rs, err := sim.StartRevocation(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	// Short-lived answers: the revocation of ORG_SIGN below is seen at the
	// next refresh, within the test.
	rs.Validity = 2 * time.Second
	o := testpki.Options{RevocationBaseURL: rs.URL, ServerNames: []string{"idb.amc.test"}}
	pki, err := testpki.New(o)
	if err != nil {
		t.Fatal(err)
	}
	rs.PublishFor(pki)
	dir := t.TempDir()
	files, err := pki.WriteFiles(dir, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	var seen http.Header
	var seenMu sync.Mutex
	up := partner(t, pki, "idb.amc.test", func(w http.ResponseWriter, r *http.Request) {
		seenMu.Lock()
		seen = r.Header.Clone()
		seenMu.Unlock()
		io.WriteString(w, "<ok/>")
	})
	cfgPath := filepath.Join(dir, "roc-proxy.yaml")
	os.WriteFile(cfgPath, []byte(yamlf(`listen: {sih: "127.0.0.1:0", admin: "127.0.0.1:0"}
identity:
  auth: {pkcs12: %s, password_file: %s}
  sign: {pkcs12: %s, password_file: %s}
trust_bundles: {osi: {paths: [%s]}, sante: {paths: [%s]}}
revocation: {check_interval: 50ms}
audit: {dir: %s, chain_id: test}
routes:
  - {name: idb, path_prefix: /idb/, upstream: %s, server_name: idb.amc.test, trust: [osi], token: {profile: roc}}
  - {name: plain, path_prefix: /plain/, upstream: %s, server_name: idb.amc.test, trust: [osi]}
`, files.AuthP12, files.PasswordFile, files.SignP12, files.PasswordFile, files.OSIBundle, files.SanteBundle, filepath.Join(dir, "audit"), up.URL, up.URL)), 0o600)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var diskFull atomic.Bool
	openAudit := func(path string) (audit.File, error) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		return fullDisk{f, &diskFull}, err
	}
	sih := startProxy(t, cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry(), AuditOpenFile: openAudit})
	post := func(body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, sih+"/idb/", strings.NewReader(body))
		req.Header.Set("X-Roc-User-Id", "must-not-leave")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		b, _ := io.ReadAll(resp.Body)
		json.Unmarshal(b, &out)
		return resp.StatusCode, out
	}
	envelope := `<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><x/></S:Body></S:Envelope>`
	if code, _ := post(envelope); code != 200 {
		t.Fatalf("signed call: %d", code)
	}
	seenMu.Lock()
	if seen.Get("X-Roc-User-Id") != "" {
		t.Error("a per-request token header reached the partner")
	}
	seenMu.Unlock()
	if code, body := post(`<!DOCTYPE x><S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body/></S:Envelope>`); code != 400 || body["error"] != "bad_envelope" {
		t.Fatalf("DTD: %d %v", code, body)
	}
	// The disk is full: the token is not recorded, so it does not leave.
	seenMu.Lock()
	seen = nil
	seenMu.Unlock()
	diskFull.Store(true)
	if code, body := post(envelope); code != 503 || body["error"] != "audit_unavailable" {
		t.Fatalf("disk full: %d %v", code, body)
	}
	seenMu.Lock()
	if seen != nil {
		t.Error("a request reached the partner with an unrecorded token")
	}
	seenMu.Unlock()
	// Pass-through routes do not depend on the audit log.
	if resp, err := http.Post(sih+"/plain/", "text/xml", strings.NewReader(envelope)); err != nil || resp.StatusCode != 200 {
		t.Fatalf("pass-through route while the audit log fails: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	diskFull.Store(false)
	if code, _ := post(envelope); code != 200 {
		t.Fatalf("after the disk is freed: %d", code)
	}
	auditFiles, _ := audit.ChainFiles(filepath.Join(dir, "audit"), "test")
	if rep, err := audit.Verify(auditFiles, audit.VerifyOptions{}); err != nil || rep.Signed != 2 {
		t.Fatalf("audit chain: %+v %v", rep, err)
	}
	// ORG_SIGN is revoked: once the refresh has seen it, nothing is signed.
	rs.Revoke("aci-el-org", pki.Sign.Cert.SerialNumber)
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := post(envelope)
		if code == 503 && body["error"] == "signer_revoked" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked signer still signing: %d %v", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
