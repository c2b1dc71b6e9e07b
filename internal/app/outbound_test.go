package app

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/logging"
	"github.com/roc-proxy/roc-proxy/internal/reload"
	"github.com/roc-proxy/roc-proxy/internal/sim"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// The hospital's forward proxy password in these tests: it must appear in
// no log line, error body, metric or doctor output.
const proxyPassword = "Pr0xy-S3cret-7c1e"

// proxyWorld is a partner (the simulated AMC service, idb.amc.test) that
// only a forward proxy can reach by name, the proxy requiring Basic
// credentials, and a configuration whose routes go through it.
type proxyWorld struct {
	e       *testEnv
	partner *sim.Server
	proxy   *sim.ForwardProxy
	pwFile  string
	logs    *syncBuffer
}

func newProxyWorld(t *testing.T) *proxyWorld {
	t.Helper()
	return newProxyWorldWith(t, testpki.MustShared(t), nil)
}

// newProxyWorldWith is newProxyWorld on pki, the proxy resolving hosts
// too.
func newProxyWorldWith(t *testing.T, pki *testpki.PKI, hosts map[string]string) *proxyWorld {
	t.Helper()
	dir := t.TempDir()
	files, err := pki.WriteFiles(dir, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{dir: dir, files: files, pki: pki}
	partner, err := sim.StartAMCService(sim.Options{Certificate: pki.Servers[testpki.IDBHost].TLSCertificate(), ClientCAs: newPool(pki.SanteRoot.Cert)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { partner.Close() })
	rogue, err := pki.IssueServer(pki.RogueRoot, testpki.IDBHost, testpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	resolve := map[string]string{testpki.IDBHost + ":443": partner.Addr}
	for k, v := range hosts {
		resolve[k] = v
	}
	proxy, err := sim.StartForwardProxy(sim.ForwardProxyOptions{
		Username: "roc-proxy", Password: proxyPassword,
		// Only the proxy resolves the partner's name: roc-proxy must not.
		Hosts:           resolve,
		MITMCertificate: rogue.TLSCertificate(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	pw := filepath.Join(e.dir, "proxy-password")
	if err := os.WriteFile(pw, []byte(proxyPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &proxyWorld{e: e, partner: partner, proxy: proxy, pwFile: pw, logs: &syncBuffer{}}
}

// config writes a configuration with the global outbound proxy and the
// given routes (YAML list items).
func (w *proxyWorld) config(t *testing.T, routes string) *config.Config {
	t.Helper()
	text := yamlf(`listen: {sih: "127.0.0.1:0", admin: "127.0.0.1:0"}
server: {shutdown_timeout: 5s}
log: {flush_interval: 0s} # the tests read each line as it is written
identity: {auth: {pkcs12: %s, password_file: %s}}
trust_bundles: {osi: {paths: [%s]}, sante: {paths: [%s]}}
outbound_proxy:
  url: %s
  username: roc-proxy
  password_file: %s
  no_proxy: [.hopital.example, 10.0.0.0/8]
routes:
%s`, w.e.files.AuthP12, w.e.files.PasswordFile, w.e.files.OSIBundle, w.e.files.SanteBundle, w.proxy.URL, w.pwFile, rawYAML(routes))
	path := filepath.Join(w.e.dir, "roc-proxy.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (w *proxyWorld) start(t *testing.T, cfg *config.Config) (sih, admin string) {
	t.Helper()
	log, flushLog, err := logging.New(cfg.Log, w.logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(flushLog)
	p, err := Build(cfg, Deps{Logger: log, Registry: prometheus.NewRegistry(), Getenv: os.Getenv})
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, p)
}

type sihAnswer struct {
	code    int
	header  http.Header
	body    []byte
	problem map[string]any
}

func postIDB(t *testing.T, url string) sihAnswer {
	t.Helper()
	resp, err := http.Post(url, "text/xml", bytes.NewReader(sim.IDBRequest("12345678", "MEMBRE-SECRET-4242")))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := sihAnswer{code: resp.StatusCode, header: resp.Header, body: b}
	json.Unmarshal(b, &a.problem)
	return a
}

// assertNoSecret fails when the proxy password, or the Basic credentials
// made from it, show anywhere in what ops and the SIH can see.
func assertNoSecret(t *testing.T, where string, text []byte) {
	t.Helper()
	basic := base64.StdEncoding.EncodeToString([]byte("roc-proxy:" + proxyPassword))
	for _, s := range []string{proxyPassword, basic} {
		if bytes.Contains(text, []byte(s)) {
			t.Errorf("%s shows the proxy credentials (%q)", where, s)
		}
	}
}

// Through the hospital's forward proxy, mutual TLS and the partner's
// verification are end to end: the partner sees the establishment's
// ORG_AUTH_CLI certificate, the proxy relays only TLS records (neither the
// SOAP request nor the answer shows in what it relayed), roc-proxy never
// resolves the partner's name (only the proxy can), and the proxy got the
// configured Basic credentials. Both transport paths are played: revocation
// off (net/http's handshake) and hard (roc-proxy's own dial, see
// TestRevocationFetchesThroughProxy).
func TestRouteThroughProxyIsEndToEnd(t *testing.T) {
	w := newProxyWorld(t)
	cfg := w.config(t, yamlf(`  - {name: idb, path_prefix: /idb/, upstream: %s, trust: [osi], revocation: {policy: off}}
  - {name: idb-direct, path_prefix: /direct/, upstream: %s, server_name: %s, trust: [osi], revocation: {policy: off}, outbound_proxy: {direct: true}}
`, "https://"+testpki.IDBHost+"/ws", w.partner.URL+"/ws", testpki.IDBHost))
	sih, admin := w.start(t, cfg)

	a := postIDB(t, sih+"/idb/")
	if a.code != 200 || !bytes.Contains(a.body, []byte("reponseDroits")) {
		t.Fatalf("through the proxy: %d %s", a.code, a.body)
	}
	if got := a.header.Get(sim.HeaderClientSubject); !strings.Contains(got, "CN="+testpki.AuthCliCN) {
		t.Errorf("the partner saw client certificate %q, not ORG_AUTH_CLI", got)
	}
	if got := w.proxy.Targets(); len(got) != 1 || got[0] != testpki.IDBHost+":443" {
		t.Errorf("CONNECT targets %v, want [%s:443]", got, testpki.IDBHost)
	}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("roc-proxy:"+proxyPassword))
	if got := w.proxy.Authorizations(); len(got) != 1 || got[0] != want {
		t.Errorf("the proxy got Proxy-Authorization %q", got)
	}
	relayed := w.proxy.Relayed()
	if len(relayed) == 0 || relayed[0] != 0x16 {
		t.Fatalf("the proxy relayed no TLS handshake record (%d bytes)", len(relayed))
	}
	for _, clear := range []string{"MEMBRE-SECRET-4242", "demandeDroits", "reponseDroits", "POST /ws"} {
		if bytes.Contains(relayed, []byte(clear)) {
			t.Errorf("the proxy saw %q in clear", clear)
		}
	}

	// A route that says direct never touches the proxy.
	if a := postIDB(t, sih+"/direct/"); a.code != 200 {
		t.Fatalf("direct route: %d %s", a.code, a.body)
	}
	if n := w.proxy.Connects.Load(); n != 1 {
		t.Errorf("%d CONNECTs, want 1 (the direct route must not use the proxy)", n)
	}

	assertNoSecret(t, "the log", []byte(w.logs.String()))
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assertNoSecret(t, "/metrics", m)
	for _, want := range []string{
		`roc_proxy_outbound_proxy_connects_total{result="ok",route="idb"} 1`,
		`roc_proxy_outbound_proxy_connects_total{result="proxy_auth",route="idb"} 0`, // from the start: a first failure is an increase
		`roc_proxy_outbound_proxy_connects_total{result="proxy_timeout",route="revocation"} 0`,
	} {
		if !bytes.Contains(m, []byte(want)) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(m, "outbound_proxy"))
		}
	}
	if strings.Contains(grepLines(m, "outbound_proxy"), `route="idb-direct"`) {
		t.Errorf("a direct route has proxy series:\n%s", grepLines(m, "outbound_proxy"))
	}
}

func grepLines(b []byte, s string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The proxy misbehaving, as hospitals' proxies do: each failure comes back
// to the SIH with its own error class and reason, within the route's
// connect timeout, the proxy's answer in the access log's cause, and the
// credentials nowhere. A TLS-inspecting proxy that answers with its own
// certificate is refused: the partner's chain is verified end to end.
func TestProxyFailuresAreClassified(t *testing.T) {
	w := newProxyWorld(t)
	badPw := filepath.Join(w.e.dir, "wrong-password")
	os.WriteFile(badPw, []byte("not-the-password"), 0o600)
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "http://" + down.Addr().String()
	down.Close() // nothing listens there any more: connection refused
	route := func(name, extra string) string {
		return fmt.Sprintf("  - {name: %s, path_prefix: /%s/, upstream: \"https://%s/ws\", trust: [osi], revocation: {policy: off}, timeouts: {connect: 500ms}%s}\n",
			name, name, testpki.IDBHost, extra)
	}
	cfg := w.config(t, route("idb", "")+
		route("wrongpw", fmt.Sprintf(", outbound_proxy: {url: %s, username: roc-proxy, password_file: %s}", w.proxy.URL, badPw))+
		route("proxydown", fmt.Sprintf(", outbound_proxy: {url: %s}", downURL))+
		route("noauth", fmt.Sprintf(", outbound_proxy: {url: %s}", w.proxy.URL)))
	sih, admin := w.start(t, cfg)

	cases := []struct {
		name      string
		path      string
		behaviour sim.ProxyBehaviour
		status    int
		code      string
		reason    string
		cause     string // in the access log's cause
	}{
		{"refused by policy", "/idb/", sim.ProxyRefuse, 502, "upstream_unavailable", "proxy_refused", `"403 Forbidden"`},
		{"wrong password", "/wrongpw/", sim.ProxyTunnel, 502, "upstream_unavailable", "proxy_auth", `"407 Proxy Authentication Required"`},
		{"no credentials", "/noauth/", sim.ProxyTunnel, 502, "upstream_unavailable", "proxy_auth", `"407 Proxy Authentication Required"`},
		{"proxy cannot reach the partner", "/idb/", sim.ProxyUnreachablePartner, 502, "upstream_unavailable", "proxy_upstream", `"503 Service Unavailable"`},
		{"hangs", "/idb/", sim.ProxyHang, 504, "upstream_timeout", "proxy_timeout", "no answer to CONNECT"},
		{"closes before answering", "/idb/", sim.ProxyCloseBeforeAnswer, 502, "upstream_unavailable", "proxy_protocol", "closed the connection"},
		{"answers garbage", "/idb/", sim.ProxyGarbage, 502, "upstream_unavailable", "proxy_protocol", "malformed answer"},
		{"down", "/proxydown/", sim.ProxyTunnel, 502, "upstream_unavailable", "proxy_unreachable", "connection refused"},
		{"inspects TLS with its own certificate", "/idb/", sim.ProxyMITM, 502, "upstream_tls", "unknown_authority", "refused (unknown_authority)"},
		{"closes mid-handshake", "/idb/", sim.ProxyCloseMidHandshake, 502, "upstream_unavailable", "proxy_tunnel_closed", "the tunnel closed before the partner sent anything"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w.proxy.SetBehaviour(c.behaviour)
			start := time.Now()
			a := postIDB(t, sih+c.path)
			if took := time.Since(start); took > 20*time.Second {
				t.Errorf("took %s", took)
			}
			if a.code != c.status || (c.code != "" && (a.problem["error"] != c.code || a.problem["reason"] != c.reason)) {
				t.Fatalf("got %d %s, want %d %s/%s", a.code, a.body, c.status, c.code, c.reason)
			}
			assertNoSecret(t, "the error body", a.body)
			line := lastAccessLine(t, w.logs.String(), a.header.Get("X-Request-Id"))
			if cause, _ := line["cause"].(string); !strings.Contains(cause, c.cause) {
				t.Errorf("access log cause %q does not contain %q", cause, c.cause)
			}
		})
	}
	w.proxy.SetBehaviour(sim.ProxyTunnel)
	if a := postIDB(t, sih+"/idb/"); a.code != 200 {
		t.Fatalf("the proxy tunnels again: %d %s", a.code, a.body)
	}
	assertNoSecret(t, "the log", []byte(w.logs.String()))
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assertNoSecret(t, "/metrics", m)
	for _, want := range []string{`result="proxy_auth",route="wrongpw"`, `result="proxy_timeout",route="idb"`, `result="proxy_unreachable",route="proxydown"`} {
		if !bytes.Contains(m, []byte(want)) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(m, "outbound_proxy"))
		}
	}
}

// lastAccessLine finds the access log line of a request id.
func lastAccessLine(t *testing.T, logs, requestID string) map[string]any {
	t.Helper()
	var found map[string]any
	for _, l := range strings.Split(logs, "\n") {
		if !strings.Contains(l, `"msg":"request"`) || !strings.Contains(l, requestID) {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["request_id"] == requestID {
			found = m
		}
	}
	if found == nil {
		t.Fatalf("no access log line for %s", requestID)
	}
	return found
}

func newPool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// Revocation fetches go through the proxy too: the certificates point at
// revocation.test, which only the proxy can resolve; http:// URLs are sent
// to it in absolute form (GET http://revocation.test/crl/...), as forward
// proxies expect, with the credentials. The route is hard, so the
// connection is roc-proxy's own dial (the per-connection standing check):
// the tunnel fits inside it.
func TestRevocationFetchesThroughProxy(t *testing.T) {
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
	cfg := w.config(t, yamlf(`  - {name: idb, path_prefix: /idb/, upstream: %s, trust: [osi], revocation: {policy: hard}}
`, "https://"+testpki.IDBHost+"/ws"))
	cfg.Revocation.Issuers = []*config.RevocationIssuer{{Subject: trust.SubjectDN(pki.OSIServeur.Cert), CRLURLs: []string{"http://revocation.test/crl/ac-serveur.crl"}}}
	sih, _ := w.start(t, cfg)
	if a := postIDB(t, sih+"/idb/"); a.code != 200 {
		t.Fatalf("hard route through the proxy: %d %s", a.code, a.body)
	}
	if w.proxy.Forwarded.Load() == 0 || rs.CRLRequests.Load() == 0 {
		t.Fatalf("no revocation fetch through the proxy (forwarded %d, CRL requests %d)", w.proxy.Forwarded.Load(), rs.CRLRequests.Load())
	}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("roc-proxy:"+proxyPassword))
	for _, a := range w.proxy.Authorizations() {
		if a != want {
			t.Errorf("the proxy got Proxy-Authorization %q", a)
		}
	}
	assertNoSecret(t, "the log", []byte(w.logs.String()))
}

// A configured file:// CRL is read from disk, never asked of the proxy,
// even when the proxy refuses everything.
func TestFileCRLNeverThroughProxy(t *testing.T) {
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
	w := newProxyWorldWith(t, pki, nil)
	w.proxy.SetBehaviour(sim.ProxyRefuse)
	files := map[string]string{}
	for _, name := range []string{"ac-serveur", "osi-root"} {
		der, err := rs.CRL(name, false, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		files[name] = filepath.Join(w.e.dir, name+".crl")
		os.WriteFile(files[name], der, 0o600)
	}
	cfg := w.config(t, yamlf(`  - {name: idb, path_prefix: /idb/, upstream: %s, server_name: %s, trust: [osi], revocation: {policy: hard, sources: [crl]}, outbound_proxy: {direct: true}}
`, w.partner.URL+"/ws", testpki.IDBHost))
	cfg.Revocation.Issuers = []*config.RevocationIssuer{
		{Subject: trust.SubjectDN(pki.OSIServeur.Cert), CRLURLs: []string{"file://" + files["ac-serveur"]}},
		{Subject: trust.SubjectDN(pki.OSIRoot.Cert), CRLURLs: []string{"file://" + files["osi-root"]}},
	}
	sih, _ := w.start(t, cfg)
	if a := postIDB(t, sih+"/idb/"); a.code != 200 {
		t.Fatalf("hard route with file CRLs: %d %s", a.code, a.body)
	}
}

// A reload applies a route's own outbound_proxy; a change of the global
// one needs a restart: the file is refused whole (nothing of it applies,
// the route change that comes with it neither), and the error says so.
func TestReloadAppliesRouteProxy(t *testing.T) {
	w := newProxyWorld(t)
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "http://" + down.Addr().String()
	down.Close()
	route := func(extra rawYAML) string {
		return yamlf(`  - {name: idb, path_prefix: /idb/, upstream: %s, trust: [osi], revocation: {policy: off}%s}
`, "https://"+testpki.IDBHost+"/ws", extra)
	}
	cfg := w.config(t, route(rawYAML(", outbound_proxy: {url: "+yamlFlow(downURL)+"}")))
	log, flushLog, err := logging.New(cfg.Log, w.logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(flushLog)
	p, err := Build(cfg, Deps{Logger: log, Registry: prometheus.NewRegistry(), Getenv: os.Getenv})
	if err != nil {
		t.Fatal(err)
	}
	sih, _ := serve(t, p)
	if a := postIDB(t, sih+"/idb/"); a.code != 502 || a.problem["reason"] != "proxy_unreachable" {
		t.Fatalf("through a proxy that is down: %d %s", a.code, a.body)
	}
	w.config(t, route("")) // the route now uses the global proxy
	path := filepath.Join(w.e.dir, "roc-proxy.yaml")
	if err := p.ReloadConfig(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	if a := postIDB(t, sih+"/idb/"); a.code != 200 {
		t.Fatalf("after the reload: %d %s", a.code, a.body)
	}
	w.config(t, route(rawYAML(", outbound_proxy: {url: "+yamlFlow(downURL)+"}"))) // back to the proxy that is down...
	text, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(text, []byte("10.0.0.0/8"), []byte("172.16.0.0/12"), 1), 0o600) // ...with the global one changed
	err = p.ReloadConfig(context.Background(), path)
	var re *reload.RestartError
	if !errors.As(err, &re) || !slices.Equal(re.Restart, []string{"outbound_proxy"}) {
		t.Fatalf("reload changing the global outbound_proxy: %v, want a refusal naming outbound_proxy", err)
	}
	if a := postIDB(t, sih+"/idb/"); a.code != 200 {
		t.Fatalf("after the refused reload: %d %s (part of the refused file was applied)", a.code, a.body)
	}
	if !strings.Contains(w.logs.String(), "configuration reload refused") {
		t.Errorf("the refusal is not logged:\n%s", grepLines([]byte(w.logs.String()), "reload"))
	}
}

// config check loads the proxies' credentials and says how each route
// leaves, without the password; a missing password file is an error that
// names the field.
func TestConfigCheckShowsProxies(t *testing.T) {
	w := newProxyWorld(t)
	w.config(t, yamlf(`  - {name: idb, path_prefix: /idb/, upstream: %s, trust: [osi]}
  - {name: local, path_prefix: /local/, upstream: "https://dpi.hopital.example/ws", trust: [osi]}
  - {name: amc, path_prefix: /amc/, dynamic: {hosts: ["*.amc.test"]}, trust: [osi], outbound_proxy: {direct: true}}
`, "https://"+testpki.IDBHost+"/ws"))
	path := filepath.Join(w.e.dir, "roc-proxy.yaml")
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"config", "check", path}, &out, &errOut); err != nil {
		t.Fatalf("config check: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{
		"route idb: /idb/ -> https://idb.amc.test/ws (trust [osi]; via " + w.proxy.URL + " (as roc-proxy))",
		"route local: /local/ -> https://dpi.hopital.example/ws (trust [osi]; direct (no_proxy))",
		"route amc: /amc/ -> dynamic [*.amc.test] (trust [osi]; direct)",
		"revocation fetches: via " + w.proxy.URL + " (as roc-proxy)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("config check output lacks %q:\n%s", want, out.String())
		}
	}
	assertNoSecret(t, "config check", out.Bytes())
	os.Remove(w.pwFile)
	out.Reset()
	err := Run(context.Background(), []string{"config", "check", path}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "outbound_proxy.password_file: open "+w.pwFile) {
		t.Errorf("missing password file: %v", err)
	}
}
