package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/sim"
	"github.com/roc-proxy/roc-proxy/internal/testclock"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// revocationWorld is a PKI pointing at a simulated CRL server and OCSP
// responder on a controlled clock, with its files written.
type revocationWorld struct {
	rs    *sim.RevocationServer
	pki   *testpki.PKI
	files *testpki.Files
	dir   string
	clk   *testclock.Clock
}

func newRevocationWorld(t *testing.T, names ...string) *revocationWorld {
	t.Helper()
	rs, err := sim.StartRevocation(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	clk := testclock.New(time.Now())
	rs.Now = clk.Now
	pki, err := testpki.New(testpki.Options{RevocationBaseURL: rs.URL, ServerNames: names})
	if err != nil {
		t.Fatal(err)
	}
	rs.PublishFor(pki)
	dir := t.TempDir()
	files, err := pki.WriteFiles(dir, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	return &revocationWorld{rs: rs, pki: pki, files: files, dir: dir, clk: clk}
}

func (w *revocationWorld) load(t *testing.T, revocation, routes string) *config.Config {
	t.Helper()
	text := yamlf(`listen: {sih: "127.0.0.1:0", admin: "127.0.0.1:0"}
server: {shutdown_timeout: 5s}
identity: {auth: {pkcs12: %s, password_file: %s}}
trust_bundles: {osi: {paths: [%s]}, sante: {paths: [%s]}}
revocation:
%s
routes:
%s
`, w.files.AuthP12, w.files.PasswordFile, w.files.OSIBundle, w.files.SanteBundle, rawYAML(revocation), rawYAML(routes))
	path := filepath.Join(w.dir, "roc-proxy.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startUnready serves p without waiting for readiness; it returns the SIH
// and admin URLs and a stop function that reports whether Serve returned.
func startUnready(t *testing.T, p *Proxy) (sih, admin string, stop func(time.Duration) bool) {
	t.Helper()
	sihLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, sihLn, adminLn) }()
	stopped := false
	stop = func(wait time.Duration) bool {
		if stopped {
			return true
		}
		cancel()
		select {
		case <-served:
			stopped = true
			http.DefaultClient.CloseIdleConnections()
			return true
		case <-time.After(wait):
			return false
		}
	}
	t.Cleanup(func() {
		if !stop(30 * time.Second) {
			t.Error("Serve did not return")
		}
	})
	return "http://" + sihLn.Addr().String(), "http://" + adminLn.Addr().String(), stop
}

func getJSON(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func postJSON(t *testing.T, client *http.Client, url string) (int, map[string]any) {
	t.Helper()
	resp, err := client.Post(url, "text/xml", strings.NewReader("<x/>"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

// Item 9: with the CRL server unreachable, /readyz says 503 and why, and
// past the start-up budget /healthz warns; once the authority answers the
// pod becomes ready.
func TestReadinessWaitsForEveryRequiredStatus(t *testing.T) {
	w := newRevocationWorld(t, "idb.amc.test")
	w.rs.SetFault(sim.FaultDown, 0)
	cfg := w.load(t, yamlf(`  check_interval: 50ms
  max_status_age: 1m
  startup_budget: 30s
  fetch_timeout: 500ms
  issuers:
    - {subject: "C=FR,O=GIE SESAM-VITALE (ROC-PROXY TEST PKI),OU=IGC OSI TEST,CN=TEST AC-SERVEUR", crl_urls: [%s]}`, w.rs.URL+"/crl/ac-serveur.crl"),
		`  - {name: idb, path_prefix: /idb/, upstream: "https://127.0.0.1:1", server_name: idb.amc.test, trust: [osi]}`)
	p, err := Build(cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry(), Now: w.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	_, admin, _ := startUnready(t, p)
	var body map[string]any
	code := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if code, body = getJSON(t, admin+"/readyz"); code == 503 && body["missing"] != nil {
			break
		}
	}
	if code != 503 || !strings.Contains(fmt.Sprint(body["missing"]), "/crl/ac-serveur.crl") {
		t.Fatalf("readyz with the CRL server down: %d %v", code, body)
	}
	if _, h := getJSON(t, admin+"/healthz"); strings.Contains(fmt.Sprint(h["warnings"]), "startup_budget") {
		t.Errorf("budget not spent yet, but healthz says %v", h["warnings"])
	}
	w.clk.Add(time.Minute) // past the start-up budget
	if code, body = getJSON(t, admin+"/readyz"); code != 503 || !strings.Contains(fmt.Sprint(body["reason"]), "startup_budget") {
		t.Errorf("readyz past the budget: %d %v", code, body)
	}
	if _, h := getJSON(t, admin+"/healthz"); !strings.Contains(fmt.Sprint(h["warnings"]), "not ready after revocation.startup_budget") {
		t.Errorf("healthz past the budget: %v", h)
	}
	w.rs.SetFault(sim.FaultNone, 0)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if code, body = getJSON(t, admin+"/readyz"); code == 200 {
			break
		}
	}
	if code != 200 {
		t.Fatalf("readyz once the authority answers: %d %v", code, body)
	}
}

// Items 7 and 6, through the whole proxy: a partner revoked while the
// proxy holds a keep-alive connection to it is refused on that connection
// once the status is asked again (max_status_age), and the connection is
// closed.
func TestPooledConnectionRefusedOnceRevoked(t *testing.T) {
	w := newRevocationWorld(t, "idb.amc.test")
	var opened, closed atomic.Int64
	up := partner(t, w.pki, "idb.amc.test", func(rw http.ResponseWriter, r *http.Request) { io.WriteString(rw, "<ok/>") })
	up.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			opened.Add(1)
		case http.StateClosed:
			closed.Add(1)
		}
	}
	cfg := w.load(t, "  check_interval: 50ms\n  max_status_age: 1h",
		yamlf(`  - {name: idb, path_prefix: /idb/, upstream: %s, server_name: idb.amc.test, trust: [osi]}`, up.URL))
	sih := startProxy(t, cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry(), Now: w.clk.Now})
	client := &http.Client{}
	for i := 0; i < 5; i++ {
		if code, body := postJSON(t, client, sih+"/idb/"); code != 200 {
			t.Fatalf("call %d: %d %v", i, code, body)
		}
	}
	if opened.Load() != 1 {
		t.Fatalf("%d partner connections for 5 calls: the test needs a pooled one", opened.Load())
	}
	w.rs.Revoke("ac-serveur", w.pki.Servers["idb.amc.test"].Cert.SerialNumber)
	w.clk.Add(2 * time.Hour) // past max_status_age: the next refresh asks again
	var code int
	var body map[string]any
	served := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if code, body = postJSON(t, client, sih+"/idb/"); code != 200 {
			break
		}
		served++
	}
	if code != 502 || body["reason"] != "revoked" {
		t.Fatalf("revoked partner on a pooled connection: %d %v (after %d calls served)", code, body, served)
	}
	if closed.Load() == 0 {
		t.Error("the pooled connection to the revoked partner was not closed")
	}
}

// Item 11: ORG_AUTH_CLI is revoked; the partner answers what nginx sends
// for a refused client certificate (an HTML 400): the SIH gets a 502
// own_certificate_revoked and /healthz warns.
func TestOwnAuthCertificateRevoked(t *testing.T) {
	w := newRevocationWorld(t, "idb.amc.test")
	var refuse atomic.Bool
	up := partner(t, w.pki, "idb.amc.test", func(rw http.ResponseWriter, r *http.Request) {
		if refuse.Load() {
			rw.Header().Set("Content-Type", "text/html")
			rw.WriteHeader(http.StatusBadRequest)
			io.WriteString(rw, "<html><head><title>400 The SSL certificate error</title></head><body>nginx</body></html>")
			return
		}
		io.WriteString(rw, "<ok/>")
	})
	cfg := w.load(t, "  check_interval: 50ms\n  max_status_age: 1h",
		yamlf(`  - {name: idb, path_prefix: /idb/, upstream: %s, server_name: idb.amc.test, trust: [osi]}`, up.URL))
	p, err := Build(cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry(), Now: w.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	sih, admin := serve(t, p)
	client := &http.Client{}
	if code, _ := postJSON(t, client, sih+"/idb/"); code != 200 {
		t.Fatalf("before: %d", code)
	}
	w.rs.Revoke("aci-el-org", w.pki.AuthCli.Cert.SerialNumber)
	refuse.Store(true)
	w.clk.Add(2 * time.Hour)
	var code int
	var body map[string]any
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if code, body = postJSON(t, client, sih+"/idb/"); body["reason"] == "own_certificate_revoked" {
			break
		}
	}
	if code != 502 || body["error"] != "upstream_tls" || body["reason"] != "own_certificate_revoked" {
		t.Fatalf("partner refusing our revoked certificate: %d %v", code, body)
	}
	if _, h := getJSON(t, admin+"/healthz"); !strings.Contains(fmt.Sprint(h["warnings"]), "ORG_AUTH_CLI") {
		t.Errorf("healthz does not warn about the revoked ORG_AUTH_CLI: %v", h)
	}
	if code, snap := getJSON(t, admin+"/revocation"); code != 200 || !strings.Contains(fmt.Sprint(snap["own_certificates"]), "source:ocsp") {
		t.Errorf("/revocation own certificates: %v", snap["own_certificates"])
	}
}

// Item 13: an issuer subject that names no trusted authority is a
// configuration error naming it; the same authority written C first is
// accepted.
func TestConfigCheckRevocationIssuers(t *testing.T) {
	w := newRevocationWorld(t, "idb.amc.test")
	route := `  - {name: idb, path_prefix: /idb/, upstream: "https://idb.amc.test", trust: [osi]}`
	for subject, wantErr := range map[string]bool{
		"C=FR, O=GIE SESAM-VITALE (ROC-PROXY TEST PKI), OU=IGC OSI TEST, CN=TEST AC-SERVEUR": false,
		"CN=TEST AC-SERVEUR,OU=IGC OSI TEST,O=GIE SESAM-VITALE (ROC-PROXY TEST PKI),C=FR":    false,
		"CN=TEST AC-SERVEUR,OU=IGC OSI TEST,O=GIE SESAM-VITALE,C=FR":                         true,
	} {
		w.load(t, yamlf("  issuers: [{subject: %s, crl_urls: [http://crl.example/a.crl]}]", subject), route)
		var out, errOut bytes.Buffer
		err := cmdConfigCheck([]string{filepath.Join(w.dir, "roc-proxy.yaml")}, &out, &errOut)
		switch {
		case wantErr && (err == nil || !strings.Contains(err.Error(), `revocation.issuers[0].subject: "CN=TEST AC-SERVEUR,OU=IGC OSI TEST,O=GIE SESAM-VITALE,C=FR" names no certificate authority`)):
			t.Errorf("%s: %v, want an error naming the issuer", subject, err)
		case !wantErr && err != nil:
			t.Errorf("%s: %v", subject, err)
		}
	}
}

// Item 14: with a configured CRL that is a FIFO nobody writes, an OCSP
// responder that never answers and a long fetch timeout, shutdown still
// completes (the start-up prefetch included).
func TestShutdownWithSilentRevocationServer(t *testing.T) {
	w := newRevocationWorld(t, "idb.amc.test")
	fifo := filepath.Join(t.TempDir(), "ac-serveur.crl")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("no FIFO on this system:", err)
	}
	hang := make(chan struct{})
	silent := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer silent.Close()
	defer close(hang)
	cfg := w.load(t, yamlf(`  fetch_timeout: 1h
  issuers:
    - {subject: "CN=TEST AC-SERVEUR,OU=IGC OSI TEST,O=GIE SESAM-VITALE (ROC-PROXY TEST PKI),C=FR", crl_urls: [%s, %s], ocsp_url: %s}`, "file://"+fifo, silent.URL+"/a.crl", silent.URL+"/ocsp"),
		`  - {name: idb, path_prefix: /idb/, upstream: "https://127.0.0.1:1", server_name: idb.amc.test, trust: [osi]}`)
	p, err := Build(cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry(), Now: w.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	_, admin, stop := startUnready(t, p)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := http.Get(admin + "/healthz"); err == nil {
			c.Body.Close()
			break
		}
	}
	if !stop(20 * time.Second) {
		t.Fatal("Serve still running 20 s after shutdown was asked, with a silent CRL server")
	}
}
