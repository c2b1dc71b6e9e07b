package app

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/reload"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

const soapEnvelope = `<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><x/></S:Body></S:Envelope>`

// tokenRoute is a signing route to upstream, as a YAML list item.
func tokenRoute(upstream string) string {
	return routeEntry(map[string]any{"name": "dmp", "path_prefix": "/dmp/", "upstream": upstream, "server_name": testpki.IDBHost,
		"trust": []string{"osi"}, "revocation": map[string]any{"policy": "off"}, "token": map[string]any{"profile": "roc"}})
}

// withSign adds identity.sign to a configuration written by e.config.
func (e *testEnv) withSign(text string) string {
	return strings.Replace(text, "identity:\n", "identity:\n  sign: "+yamlFlow(e.source(e.files.SignP12))+"\n", 1)
}

func (e *testEnv) withAudit(text string) string {
	return text + "audit: " + yamlFlow(map[string]any{"dir": filepath.Join(e.dir, "audit"), "chain_id": "reload"}) + "\n"
}

func withRoute(text, route string) string {
	return strings.Replace(text, "routes:\n", "routes:\n"+route, 1)
}

// A reload applies all of a valid file or nothing. A file that adds a
// signing route together with the signer and the audit log it needs
// (sections only a restart applies) is refused whole, with the sections
// named: the process neither crashes building the route nor serves a
// route whose audit log does not exist. The trust-bundle change path
// reloads the running configuration's bundles, whatever the file says
// meanwhile.
func TestReloadNeverHalfApplies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		initial func(e *testEnv, text string) string
		next    func(e *testEnv, text, upstream string) string
		// bundleChange: the file is edited but not reloaded; a bundle
		// file changes instead.
		bundleChange bool
		restart      string
	}{
		{"SIGHUP adds a token route with identity.sign and audit",
			func(e *testEnv, text string) string { return text },
			func(e *testEnv, text, up string) string {
				return e.withAudit(e.withSign(withRoute(text, tokenRoute(up))))
			},
			false, "audit, identity"},
		{"identity.sign was there and SIGHUP adds audit and a token route",
			func(e *testEnv, text string) string { return e.withSign(text) },
			func(e *testEnv, text, up string) string { return e.withAudit(withRoute(text, tokenRoute(up))) },
			false, "audit"},
		{"the file adds a token route then a trust bundle changes",
			func(e *testEnv, text string) string { return text },
			func(e *testEnv, text, up string) string {
				return e.withAudit(e.withSign(withRoute(text, tokenRoute(up))))
			},
			true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			up := partner(t, e.pki, testpki.IDBHost, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
			cfgPath := e.config(t, up.URL, identity(e.source(e.files.AuthP12), map[string]any{"reload_interval": "20ms"}))
			text, _ := os.ReadFile(cfgPath)
			initial := tc.initial(e, string(text))
			replaceFile(t, cfgPath, []byte(initial))
			cfg, err := config.Load(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Build(cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()})
			if err != nil {
				t.Fatal(err)
			}
			sih, _ := serve(t, p)
			replaceFile(t, cfgPath, []byte(tc.next(e, initial, up.URL)))
			if tc.bundleChange {
				osi, _ := os.ReadFile(e.files.OSIBundle)
				sante, _ := os.ReadFile(e.files.SanteBundle)
				replaceFile(t, e.files.OSIBundle, append(osi, sante...))
				for deadline := time.Now().Add(10 * time.Second); testutil.ToFloat64(p.metrics.ConfigReloads.WithLabelValues("ok")) != 1; time.Sleep(20 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("the bundle change was not applied")
					}
				}
				if got := p.routes.Load().store.Bundle("osi"); len(got.Anchors) != 2 {
					t.Errorf("the changed bundle has %d anchors, want 2", len(got.Anchors))
				}
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				err := p.ReloadConfig(ctx, cfgPath)
				var re *reload.RestartError
				if !errors.As(err, &re) || strings.Join(re.Restart, ", ") != tc.restart {
					t.Fatalf("reload: %v, want a refusal naming %s", err, tc.restart)
				}
				if !strings.Contains(err.Error(), "nothing was applied") || !strings.Contains(err.Error(), tc.restart) {
					t.Errorf("message %q", err)
				}
			}
			if got := postStatus(t, http.DefaultClient, sih+"/idb/"); got != 200 {
				t.Fatalf("running route: %d", got)
			}
			resp, err := http.Post(sih+"/dmp/", "text/xml", strings.NewReader(soapEnvelope))
			if err != nil {
				t.Fatalf("the refused route dropped the connection: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("the signing route of a refused file answers %d", resp.StatusCode)
			}
		})
	}
}

// config check and the reload run the same checks on a file: what one
// refuses the other refuses, with the same message.
func TestReloadAgreesWithConfigCheck(t *testing.T) {
	e := newTestEnv(t)
	up := partner(t, e.pki, testpki.IDBHost, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
	cfgPath := e.config(t, up.URL, "")
	good, _ := os.ReadFile(cfgPath)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry(), Getenv: os.Getenv})
	if err != nil {
		t.Fatal(err)
	}
	sih, _ := serve(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	absent := filepath.Join(e.dir, "absent.p12")
	for name, text := range map[string]string{
		"unknown key":                    string(good) + "unknown_key: 1\n",
		"unreadable bundle":              strings.Replace(string(good), e.files.OSIBundle, filepath.Join(e.dir, "absent.pem"), 1),
		"unreadable checkpoint key":      string(good) + "audit: " + yamlFlow(map[string]any{"checkpoint_key": e.source(absent)}) + "\n",
		"unreadable signing certificate": e.withSign(strings.Replace(string(good), "identity:\n", "identity:\n  sign: "+yamlFlow(e.source(absent))+"\n", 1)),
	} {
		t.Run(name, func(t *testing.T) {
			replaceFile(t, cfgPath, []byte(text))
			checkErr := Run(ctx, []string{"config", "check", cfgPath}, io.Discard, io.Discard)
			reloadErr := p.ReloadConfig(ctx, cfgPath)
			if checkErr == nil || reloadErr == nil {
				t.Fatalf("config check: %v; reload: %v", checkErr, reloadErr)
			}
			if checkErr.Error() != reloadErr.Error() {
				t.Errorf("config check says\n  %v\nthe reload says\n  %v", checkErr, reloadErr)
			}
			if got := postStatus(t, http.DefaultClient, sih+"/idb/"); got != 200 {
				t.Fatalf("running route after a refused reload: %d", got)
			}
		})
	}
}

// A reload is the only thing between a signing route and a missing signer
// or audit log; buildRoutes refuses such a route itself as well.
func TestSigningRouteNeedsItsSignerAndAuditLog(t *testing.T) {
	e := newTestEnv(t)
	cfgPath := e.config(t, "https://127.0.0.1:1/x", "")
	p := buildFile(t, cfgPath)
	text, _ := os.ReadFile(cfgPath)
	next := filepath.Join(e.dir, "next.yaml")
	os.WriteFile(next, []byte(e.withAudit(e.withSign(withRoute(string(text), tokenRoute("https://127.0.0.1:1/x"))))), 0o600)
	ncfg, err := config.Load(next)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.buildRoutes(ncfg, p.routes.Load().store)
	if err == nil || !strings.Contains(err.Error(), "routes[0].token") {
		t.Fatalf("a signing route without signer and audit log was built: %v", err)
	}
}

// Bundle expiry metrics and /healthz warnings follow reloads: an added
// bundle gets its series and warnings, a removed one loses them.
func TestBundleExpiryFollowsReload(t *testing.T) {
	e := newTestEnv(t)
	soon, err := testpki.NewRoot(testpki.Template{Subject: testpki.OrgName("AC EXPIRANT BIENTOT"), NotAfter: time.Now().Add(10 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	soonFile := filepath.Join(e.dir, "soon.pem")
	os.WriteFile(soonFile, testpki.PEM(soon.Cert), 0o644)
	up := partner(t, e.pki, testpki.IDBHost, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
	cfgPath := e.config(t, up.URL, "")
	original, _ := os.ReadFile(cfgPath)
	p := buildFile(t, cfgPath)
	_, admin := serve(t, p)
	series := func(source string) int {
		n := 0
		mfs, _ := p.registry.Gather()
		for _, mf := range mfs {
			if mf.GetName() != "roc_proxy_certificate_not_after_timestamp_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "source" && l.GetValue() == source {
						n++
					}
				}
			}
		}
		return n
	}
	healthz := func() string {
		resp, err := http.Get(admin + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if series("trust_bundles.sante") != 2 || series("trust_bundles.soon") != 0 {
		t.Fatalf("at start: sante %d, soon %d", series("trust_bundles.sante"), series("trust_bundles.soon"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// sante removed, soon added.
	next := strings.Replace(string(original), bundleEntry("sante", e.files.SanteBundle), bundleEntry("soon", soonFile), 1)
	replaceFile(t, cfgPath, []byte(next))
	if err := p.ReloadConfig(ctx, cfgPath); err != nil {
		t.Fatal(err)
	}
	if n := series("trust_bundles.sante"); n != 0 {
		t.Errorf("the removed bundle keeps %d series", n)
	}
	if n := series("trust_bundles.soon"); n != 1 {
		t.Errorf("the added bundle has %d series", n)
	}
	if h := healthz(); !strings.Contains(h, "trust_bundles.soon: certificate "+trust.SubjectDN(soon.Cert)) {
		t.Errorf("/healthz lacks the added bundle's warning: %s", h)
	}
	replaceFile(t, cfgPath, original)
	if err := p.ReloadConfig(ctx, cfgPath); err != nil {
		t.Fatal(err)
	}
	if n := series("trust_bundles.soon"); n != 0 {
		t.Errorf("the removed bundle keeps %d series", n)
	}
	if h := healthz(); strings.Contains(h, "soon") {
		t.Errorf("/healthz keeps the removed bundle's warning: %s", h)
	}
	if series("trust_bundles.sante") != 2 {
		t.Errorf("the bundle added back has %d series", series("trust_bundles.sante"))
	}
}

// hungDisk is an audit file on a disk that stops answering (a hard NFS
// mount whose server went away): once hung, writes and syncs block until
// the test ends.
type hungDisk struct {
	f       *os.File
	hung    *atomic.Bool
	release chan struct{}
}

func (d hungDisk) wait() {
	if d.hung.Load() {
		<-d.release
	}
}
func (d hungDisk) Write(b []byte) (int, error) { d.wait(); return d.f.Write(b) }
func (d hungDisk) Sync() error                 { d.wait(); return d.f.Sync() }
func (d hungDisk) Close() error                { return d.f.Close() }

// SIGTERM ends Serve within server.shutdown_timeout whatever is stuck:
// here the audit log's disk hangs, so that the last records and the
// closing checkpoint written after the drain never complete. (The case
// this test first played, a start-up revocation fetch blocked on a CRL
// "file" that is a named pipe, cannot happen any more: such a file is
// refused at once since issue 10's attack review.)
func TestShutdownIsBoundedWhateverIsStuck(t *testing.T) {
	e := newTestEnv(t)
	up := partner(t, e.pki, testpki.IDBHost, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
	cfgPath := e.config(t, up.URL, "")
	text, _ := os.ReadFile(cfgPath)
	text = []byte(e.withAudit(e.withSign(withRoute(string(text), tokenRoute(up.URL)))))
	text = []byte(strings.Replace(string(text), "server: {shutdown_timeout: 5s}", "server: {shutdown_timeout: 1s}", 1))
	os.WriteFile(cfgPath, text, 0o600)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var hung atomic.Bool
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // the goroutines behind the disk end
	openAudit := func(path string) (audit.File, error) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		return hungDisk{f, &hung, release}, err
	}
	// No test logger: what is stuck logs after the test ends.
	p, err := Build(cfg, Deps{Logger: zap.NewNop(), Registry: prometheus.NewRegistry(), AuditOpenFile: openAudit})
	if err != nil {
		t.Fatal(err)
	}
	sihLn, _ := net.Listen("tcp", "127.0.0.1:0")
	adminLn, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, sihLn, adminLn) }()
	admin := "http://" + adminLn.Addr().String()
	for deadline := time.Now().Add(10 * time.Second); get(t, admin+"/readyz") != 200; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not ready")
		}
	}
	resp, err := http.Post("http://"+sihLn.Addr().String()+"/dmp/", "text/xml", strings.NewReader(soapEnvelope))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != 200 {
		t.Fatalf("signed request: %d", resp.StatusCode)
	}
	hung.Store(true)
	stop() // SIGTERM
	select {
	case err := <-served:
		if !errors.Is(err, ErrShutdownTimeout) {
			t.Errorf("Serve returned %v, want %v", err, ErrShutdownTimeout)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve still running 15 s after SIGTERM with shutdown_timeout 1s")
	}
}

// The SIH listener holds at most server.max_connections (more wait for a
// free slot, counted); the admin listener closes idle and slow connections.
func TestListenerBounds(t *testing.T) {
	e := newTestEnv(t)
	up := partner(t, e.pki, testpki.IDBHost, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
	cfgPath := e.config(t, up.URL, "")
	text, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, []byte(strings.Replace(string(text), "server: {shutdown_timeout: 5s}",
		"server: {shutdown_timeout: 5s, max_connections: 3, read_header_timeout: 1s, admin: {read_timeout: 200ms, idle_timeout: 200ms}}", 1)), 0o600)
	p := buildFile(t, cfgPath)
	sih, admin := serve(t, p)
	dial := func(base string) net.Conn {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// Three slow clients take every slot, each with half a request line.
	for range 3 {
		io.WriteString(dial(sih), "POST /idb/ HTT")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	if got := postStatus(t, client, sih+"/idb/"); got != 200 {
		t.Fatalf("after the slow clients were cut: %d", got)
	}
	if n := testutil.ToFloat64(p.metrics.ConnectionsLimited); n < 1 {
		t.Errorf("connections_limited_total = %v: the fourth connection did not wait", n)
	}
	if n := testutil.ToFloat64(p.metrics.ConnectionsOpen); n > 3 {
		t.Errorf("connections_open = %v", n)
	}
	// Admin: an idle keep-alive connection and a slow request are closed.
	idle := dial(admin)
	io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	slow := dial(admin)
	io.WriteString(slow, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
	for name, c := range map[string]net.Conn{"idle": idle, "slow": slow} {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if err != nil {
			t.Errorf("%s admin connection still open after 3 s: %v", name, err)
		}
	}
}

// The audit log's result record carries the SIH's final status, not the
// partner's interim 103 Early Hints.
func TestTokenResultRecordsTheFinalStatus(t *testing.T) {
	e := newTestEnv(t)
	up := partner(t, e.pki, testpki.IDBHost, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</x>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "<ok/>")
	})
	cfgPath := e.config(t, up.URL, "")
	text, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, []byte(e.withAudit(e.withSign(withRoute(string(text), tokenRoute(up.URL))))), 0o600)
	p := buildFile(t, cfgPath)
	sih, _ := serve(t, p)
	resp, err := http.Post(sih+"/dmp/", "text/xml", strings.NewReader(soapEnvelope))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	files, _ := audit.ChainFiles(filepath.Join(e.dir, "audit"), "reload")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		recs, err := audit.Select(files, audit.Filter{Types: []string{audit.TypeResult}})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 1 {
			if recs[0].Status != 200 {
				t.Fatalf("audit result status %d, want 200", recs[0].Status)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d result records", len(recs))
		}
	}
}

// The collector runs at GOGC 400 under a soft limit of twice the body
// budget plus 64 MiB, unless the environment says otherwise.
func TestGCTuning(t *testing.T) {
	gcPct := func() int { p := debug.SetGCPercent(100); debug.SetGCPercent(p); return p }
	prevPct, prevLimit := gcPct(), debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(prevPct); debug.SetMemoryLimit(prevLimit) })
	cfg := &config.Config{Server: config.Server{MaxBodyMemory: 128 << 20}}
	tuneGC(cfg, func(string) string { return "" }, zaptest.NewLogger(t))
	if p, l := gcPct(), debug.SetMemoryLimit(-1); p != gcPercent || l != 320<<20 {
		t.Errorf("GOGC %d, memory limit %d", p, l)
	}
	debug.SetGCPercent(100)
	debug.SetMemoryLimit(math.MaxInt64)
	tuneGC(cfg, func(k string) string { return map[string]string{"GOGC": "50", "GOMEMLIMIT": "1GiB"}[k] }, zaptest.NewLogger(t))
	if p, l := gcPct(), debug.SetMemoryLimit(-1); p != 100 || l != math.MaxInt64 {
		t.Errorf("the environment's settings were overridden: GOGC %d, memory limit %d", p, l)
	}
}
