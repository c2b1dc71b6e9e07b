package doctorcmd

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roc-proxy/roc-proxy/internal/sim"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// doctorWorld is install day: simulated partners (good ones, and each way
// they fail), a CRL server and OCSP responder, and the hospital's forward
// proxy.
type doctorWorld struct {
	rs      *sim.RevocationServer
	pki     *testpki.PKI
	files   *testpki.Files
	dir     string
	proxy   *sim.ForwardProxy
	refuser *sim.ForwardProxy // refuses every destination (403)
	pwFile  string
	servers map[string]string // name -> https://127.0.0.1:port
}

func newDoctorWorld(t *testing.T) *doctorWorld {
	t.Helper()
	rs, err := sim.StartRevocation(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	o := testpki.Options{RevocationBaseURL: rs.URL, ServerNames: []string{testpki.IDBHost, testpki.AnnuaireHost}}
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
	w := &doctorWorld{rs: rs, pki: pki, files: files, dir: dir, servers: map[string]string{}}
	sante := newPool(pki.SanteRoot.Cert)
	start := func(name string, cert *testpki.Cert, o sim.Options, amc bool) {
		o.Certificate, o.ErrorLog = cert.TLSCertificate(), log.New(io.Discard, "", 0)
		if o.ClientCAs == nil {
			o.ClientCAs = sante
		}
		var s *sim.Server
		if amc {
			s, err = sim.StartAMCService(o)
		} else {
			s, err = sim.StartAnnuaire(o, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		w.servers[name] = s.URL
	}
	start("idb", pki.Servers[testpki.IDBHost], sim.Options{}, true)
	start("annuaire", pki.Servers[testpki.AnnuaireHost], sim.Options{}, false)
	rogue, err := pki.IssueServer(pki.RogueRoot, testpki.IDBHost, testpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start("rogue", rogue, sim.Options{}, true)
	revoked, err := pki.IssueServer(pki.OSIServeur, "revoked.amc.test", o)
	if err != nil {
		t.Fatal(err)
	}
	rs.Revoke("ac-serveur", revoked.Cert.SerialNumber)
	start("revoked", revoked, sim.Options{}, true)
	// A partner whose TLS front end trusts another authority for client
	// certificates: it ends the handshake with an alert.
	start("refuses-alert", pki.Servers[testpki.IDBHost], sim.Options{ClientCAs: newPool(pki.OSIRoot.Cert)}, true)
	// A front end that asks for any client certificate and answers 400
	// in HTML when it does not like it, as nginx does.
	front := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/html")
		rw.WriteHeader(http.StatusBadRequest)
		io.WriteString(rw, "<html><body>400 The SSL certificate error</body></html>")
	}))
	front.TLS = &tls.Config{Certificates: []tls.Certificate{*pki.Servers[testpki.IDBHost].TLSCertificate()}, ClientAuth: tls.RequestClientCert}
	front.Config.ErrorLog = log.New(io.Discard, "", 0)
	front.StartTLS()
	t.Cleanup(front.Close)
	w.servers["refuses-http"] = front.URL
	// The same, in TLS 1.2: the alert comes during the handshake, after
	// our certificate.
	tls12 := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {}))
	tls12.TLS = &tls.Config{Certificates: []tls.Certificate{*pki.Servers[testpki.IDBHost].TLSCertificate()}, MaxVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: newPool(pki.OSIRoot.Cert)}
	tls12.Config.ErrorLog = log.New(io.Discard, "", 0)
	tls12.StartTLS()
	t.Cleanup(tls12.Close)
	w.servers["refuses-tls12"] = tls12.URL
	// A partner that streams headers without end.
	endless := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		c, buf, err := http.NewResponseController(rw).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		buf.WriteString("HTTP/1.1 200 OK\r\n")
		for i := 0; i < 100000; i++ {
			if _, err := buf.WriteString("X-Padding: " + strings.Repeat("a", 1000) + "\r\n"); err != nil {
				return
			}
			if buf.Flush() != nil {
				return
			}
		}
	}))
	endless.TLS = &tls.Config{Certificates: []tls.Certificate{*pki.Servers[testpki.IDBHost].TLSCertificate()}, ClientAuth: tls.RequestClientCert}
	endless.Config.ErrorLog = log.New(io.Discard, "", 0)
	endless.StartTLS()
	t.Cleanup(endless.Close)
	w.servers["endless"] = endless.URL

	w.proxy, err = sim.StartForwardProxy(sim.ForwardProxyOptions{Username: "roc-proxy", Password: proxyPassword, Hosts: map[string]string{
		testpki.IDBHost + ":443":      strings.TrimPrefix(w.servers["idb"], "https://"),
		testpki.AnnuaireHost + ":443": strings.TrimPrefix(w.servers["annuaire"], "https://"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.proxy.Close() })
	if w.refuser, err = sim.StartForwardProxy(sim.ForwardProxyOptions{}); err != nil {
		t.Fatal(err)
	}
	w.refuser.SetBehaviour(sim.ProxyRefuse)
	t.Cleanup(func() { w.refuser.Close() })
	w.pwFile = filepath.Join(dir, "proxy-password")
	os.WriteFile(w.pwFile, []byte(proxyPassword), 0o600)
	return w
}

// config writes a configuration with the given routes and returns its
// path.
func (w *doctorWorld) config(t *testing.T, routes string) string {
	t.Helper()
	text := fmt.Sprintf(`identity: {auth: {pkcs12: %s, password_file: %s}}
trust_bundles: {osi: {paths: [%s]}, sante: {paths: [%s]}}
revocation:
  fetch_timeout: 2s
  issuers:
    - {subject: "C=FR,O=GIE SESAM-VITALE (ROC-PROXY TEST PKI),OU=IGC OSI TEST,CN=TEST AC-SERVEUR", crl_urls: ["%s/crl/ac-serveur.crl"]}
routes:
%s`, w.files.AuthP12, w.files.PasswordFile, w.files.OSIBundle, w.files.SanteBundle, w.rs.URL, routes)
	path := filepath.Join(w.dir, "roc-proxy.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (w *doctorWorld) route(name, server, serverName, extra string) string {
	return fmt.Sprintf("  - {name: %s, path_prefix: /%s/, upstream: \"%s/ws\", server_name: %s, trust: [osi]%s}\n", name, name, w.servers[server], serverName, extra)
}

func (w *doctorWorld) viaProxy() string {
	return fmt.Sprintf(", outbound_proxy: {url: %s, username: roc-proxy, password_file: %s}", w.proxy.URL, w.pwFile)
}

type doctorReport struct {
	OK     bool `json:"ok"`
	Checks []struct {
		Kind   string `json:"kind"`
		Name   string `json:"name"`
		Target string `json:"target"`
		Via    string `json:"via"`
		Result string `json:"result"`
		Steps  []struct {
			Name    string `json:"name"`
			Status  string `json:"status"`
			Summary string `json:"summary"`
			Detail  string `json:"detail"`
		} `json:"steps"`
	} `json:"checks"`
}

func runDoctor(t *testing.T, args ...string) (doctorReport, string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := Run(context.Background(), append([]string{"doctor"}, args...), &out, &errOut)
	var r doctorReport
	if strings.Contains(strings.Join(args, " "), "--json") {
		if jerr := json.Unmarshal(out.Bytes(), &r); jerr != nil {
			t.Fatalf("doctor --json output is not JSON: %v\n%s\n%s", jerr, out.String(), errOut.String())
		}
	}
	return r, out.String(), errOut.String(), err
}

// step returns the status and summary of a step of the check of kind and
// name, with the step's detail.
func (r doctorReport) step(kind, name, step string) (status, summary, detail string) {
	for _, c := range r.Checks {
		if c.Kind != kind || c.Name != name {
			continue
		}
		for _, s := range c.Steps {
			if s.Name == step {
				return s.Status, s.Summary, s.Detail
			}
		}
		return "missing step", "", ""
	}
	return "missing check", "", ""
}

func (r doctorReport) result(kind, name string) string {
	for _, c := range r.Checks {
		if c.Kind == kind && c.Name == name {
			return c.Result
		}
	}
	return "missing check"
}

// Install day, every failure the issue names at once: each partner's row
// says which step failed and why, with the trust classifications, and the
// exit status is 1.
func TestDoctorFindsEachFailure(t *testing.T) {
	w := newDoctorWorld(t)
	path := w.config(t, w.route("good", "idb", testpki.IDBHost, "")+
		w.route("unknown-ca", "rogue", testpki.IDBHost, "")+
		w.route("wrong-name", "annuaire", testpki.IDBHost, "")+
		w.route("revoked", "revoked", "revoked.amc.test", "")+
		w.route("refuses-alert", "refuses-alert", testpki.IDBHost, "")+
		w.route("refuses-http", "refuses-http", testpki.IDBHost, ", revocation: {policy: off}")+
		w.route("endless", "endless", testpki.IDBHost, ", revocation: {policy: off}")+
		w.route("refuses-tls12", "refuses-tls12", testpki.IDBHost, ", revocation: {policy: off}")+
		`  - {name: port-closed, path_prefix: /closed/, upstream: "https://127.0.0.1:1/ws", server_name: idb.amc.test, trust: [osi], timeouts: {connect: 2s}}
  - {name: no-dns, path_prefix: /nodns/, upstream: "https://roc-proxy-doctor.invalid/ws", trust: [osi]}
`+fmt.Sprintf(`  - {name: proxied, path_prefix: /proxied/, upstream: "https://%s/ws", trust: [osi]%s}
  - {name: proxy-refuses, path_prefix: /refused/, upstream: "https://%s/ws", trust: [osi], outbound_proxy: {url: %s}}
`, testpki.IDBHost, w.viaProxy(), testpki.IDBHost, w.refuser.URL))
	r, out, progress, err := runDoctor(t, "--config", path, "--json", "--timeout", "20s")
	if err == nil || errors.Is(err, ErrUsage) {
		t.Fatalf("doctor with failures: err %v, want a failure (exit 1)\n%s", err, progress)
	}
	if r.OK {
		t.Error(`"ok": true with failures`)
	}
	for _, c := range []struct {
		route, step, status, summary string
	}{
		{"good", "chain", "ok", "ok"},
		{"good", "revocation", "ok", "good"},
		{"good", "client_certificate", "ok", "accepted"},
		{"unknown-ca", "chain", "fail", "unknown_authority"},
		{"unknown-ca", "client_certificate", "skip", ""},
		{"wrong-name", "chain", "fail", "name_mismatch"},
		{"revoked", "chain", "ok", "ok"},
		{"revoked", "revocation", "fail", "revoked"},
		{"revoked", "client_certificate", "skip", ""},
		{"refuses-alert", "tls", "ok", ""},
		{"refuses-alert", "client_certificate", "fail", "refused"},
		{"refuses-http", "client_certificate", "fail", "refused: HTTP 400"},
		{"endless", "client_certificate", "fail", "malformed answer"},
		{"refuses-tls12", "tls", "ok", "ended after our certificate"},
		{"refuses-tls12", "chain", "ok", "ok"},
		{"refuses-tls12", "client_certificate", "fail", "refused: alert"},
		{"port-closed", "connect", "fail", "refused"},
		{"port-closed", "tls", "skip", ""},
		{"no-dns", "dns", "fail", "no such host"},
		{"no-dns", "connect", "skip", ""},
		{"proxied", "dns", "ok", "by the proxy"},
		{"proxied", "connect", "ok", "tunnel"},
		{"proxied", "client_certificate", "ok", "accepted"},
		{"proxy-refuses", "connect", "fail", "proxy_refused"},
	} {
		status, summary, detail := r.step("partner", c.route, c.step)
		if status != c.status || !strings.Contains(summary, c.summary) {
			t.Errorf("route %s, step %s: %s %q (%s), want %s %q", c.route, c.step, status, summary, detail, c.status, c.summary)
		}
	}
	for route, want := range map[string]string{"good": "ok", "proxied": "ok", "unknown-ca": "fail", "port-closed": "fail", "proxy-refuses": "fail", "refuses-http": "fail"} {
		if got := r.result("partner", route); got != want {
			t.Errorf("route %s: result %s, want %s", route, got, want)
		}
	}
	if _, _, detail := r.step("partner", "proxy-refuses", "connect"); !strings.Contains(detail, `"403 Forbidden"`) {
		t.Errorf("proxy refusal detail %q lacks the proxy's answer", detail)
	}
	// The establishment's own certificate: valid, not revoked.
	if status, _, detail := r.step("identity", "identity.auth", "revocation"); status != "ok" {
		t.Errorf("ORG_AUTH_CLI revocation: %s %s", status, detail)
	}
	if status, summary, _ := r.step("identity", "identity.auth", "expiry"); status != "ok" || !strings.Contains(summary, "days") {
		t.Errorf("ORG_AUTH_CLI expiry: %s %s", status, summary)
	}
	// Every revocation URL, configured and from the bundles' and own
	// certificates, answered.
	urls := 0
	for _, c := range r.Checks {
		if c.Kind == "revocation_url" {
			urls++
			if c.Result != "ok" {
				t.Errorf("revocation URL %s: %s %+v", c.Target, c.Result, c.Steps)
			}
		}
	}
	if urls < 3 {
		t.Errorf("%d revocation URLs checked, want the CRLs of ac-serveur, osi-root, acr-el, aci-el-org and the OCSP responder", urls)
	}
	// One progress line per partner on stderr.
	for _, route := range []string{"good", "unknown-ca", "no-dns", "proxy-refuses"} {
		if !strings.Contains(progress, "route "+route+" ") {
			t.Errorf("no progress line for route %s:\n%s", route, progress)
		}
	}
	assertNoSecret(t, "doctor --json", []byte(out))
	assertNoSecret(t, "doctor progress", []byte(progress))
}

// All good: exit status 0, one table on stdout, what the proxy was asked.
func TestDoctorAllGood(t *testing.T) {
	w := newDoctorWorld(t)
	path := w.config(t, w.route("good", "idb", testpki.IDBHost, "")+
		w.route("annuaire", "annuaire", testpki.AnnuaireHost, "")+
		fmt.Sprintf(`  - {name: dyn, path_prefix: /dyn/, dynamic: {hosts: [%s, "*.amc.test"]}, trust: [osi]%s}
`, testpki.AnnuaireHost, w.viaProxy()))
	_, out, progress, err := runDoctor(t, "--config", path, "--partner", "dyn="+testpki.IDBHost)
	if err != nil {
		t.Fatalf("doctor: %v\n%s\n%s", err, out, progress)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.HasPrefix(lines[0], "CHECK") || !strings.Contains(lines[0], "CLIENT CERT") {
		t.Errorf("no table header:\n%s", out)
	}
	for _, want := range []string{"route good", "route annuaire", "route dyn", testpki.AnnuaireHost + ":443", testpki.IDBHost + ":443", "*.amc.test", "identity.auth", "revocation"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "--partner dyn=HOST") {
		t.Errorf("the wildcard of a dynamic route is not explained:\n%s", out)
	}
	if got := w.proxy.Targets(); len(got) != 2 {
		t.Errorf("the proxy was asked %v, want the two partners of the dynamic route", got)
	}
	assertNoSecret(t, "doctor table", []byte(out))
}

func TestDoctorUsage(t *testing.T) {
	w := newDoctorWorld(t)
	path := w.config(t, w.route("good", "idb", testpki.IDBHost, ""))
	for _, args := range [][]string{
		{},
		{"--config"},
		{"--config", path, "--timeout", "soon"},
		{"--config", path, "--partner", "nosuchroute=a.amc.test"},
		{"--config", path, "--partner", "good=a.amc.test"}, // not a dynamic route
		{"--config", path, "extra-argument"},
	} {
		if _, _, _, err := runDoctor(t, args...); !errors.Is(err, ErrUsage) {
			t.Errorf("doctor %v: %v, want a usage error (exit 2)", args, err)
		}
	}
	if _, out, _, err := runDoctor(t, "--help"); err != nil || !strings.Contains(out, "Usage: roc-proxy doctor") {
		t.Errorf("doctor --help: %v %q", err, out)
	}
}

// Through the hospital's proxy, where only the proxy resolves the
// partners' and the revocation servers' names: the partner and every
// revocation URL are checked through it (CRLs in absolute form), and its
// password shows nowhere.
func TestDoctorThroughProxy(t *testing.T) {
	rs, err := sim.StartRevocation(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	pki, err := testpki.New(testpki.Options{RevocationBaseURL: "http://revocation.test", ServerNames: []string{testpki.IDBHost}})
	if err != nil {
		t.Fatal(err)
	}
	rs.PublishFor(pki)
	w := newProxyWorldWith(t, pki, map[string]string{"revocation.test:80": strings.TrimPrefix(rs.URL, "http://")})
	w.config(t, fmt.Sprintf(`  - {name: idb, path_prefix: /idb/, upstream: "https://%s/ws", trust: [osi], revocation: {policy: hard}}
`, testpki.IDBHost))
	r, out, progress, err := runDoctor(t, "--config", filepath.Join(w.e.dir, "roc-proxy.yaml"), "--json")
	if err != nil {
		t.Fatalf("doctor through the proxy: %v\n%s\n%s", err, out, progress)
	}
	if r.result("partner", "idb") != "ok" {
		t.Errorf("partner through the proxy: %+v", r.Checks)
	}
	urls := 0
	for _, c := range r.Checks {
		if c.Kind != "revocation_url" {
			continue
		}
		urls++
		if c.Result != "ok" || !strings.HasPrefix(c.Via, w.proxy.URL) || c.Steps[0].Summary != "by the proxy" {
			t.Errorf("revocation URL %s: %s via %q %+v", c.Target, c.Result, c.Via, c.Steps)
		}
	}
	if urls == 0 || w.proxy.Forwarded.Load() == 0 {
		t.Errorf("%d revocation URLs, %d fetches forwarded by the proxy", urls, w.proxy.Forwarded.Load())
	}
	assertNoSecret(t, "doctor --json", []byte(out))
	assertNoSecret(t, "doctor progress", []byte(progress))
}
