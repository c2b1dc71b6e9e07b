package app

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/logging"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// TestMain looks for leaked goroutines, but for two that belong to
// libraries: pebble's validation worker (it never stops; the ACME test's
// server is in-process) and certmagic's lock-file refresher (it ends at its
// next tick, seconds after the lock is released), and certmagic's per-CA
// rate limiter (kept in a package-level map for the process's life).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/letsencrypt/pebble/v2/va.VAImpl.processTasks"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).permit"))
}

const testPassword = "Tr0ub4dor&3-test"

type testEnv struct {
	dir   string
	files *testpki.Files
	pki   *testpki.PKI
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	p, err := testpki.Shared()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files, err := p.WriteFiles(dir, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{dir: dir, files: files, pki: p}
}

// upstream starts a TLS partner with the shared PKI's IDB certificate.
func (e *testEnv) upstream(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	return partner(t, e.pki, testpki.IDBHost, h)
}

// partner is a mutual-TLS AMC with the named server certificate of pki,
// accepting IGC-Santé clients.
func partner(t *testing.T, pki *testpki.PKI, name string, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(pki.SanteRoot.Cert)
	s := httptest.NewUnstartedServer(h)
	s.TLS = mtls.ServerConfig(mtls.ServerOptions{Certificate: pki.Servers[name].TLSCertificate(), ClientCAs: pool})
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // refusals show as handshake errors
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// config writes a configuration with one route to upstreamURL; identity
// (see identity()) overrides the body of the identity section. Tests edit
// the text it writes: its anchors ("identity:\n", "routes:\n", "server:
// {shutdown_timeout: 5s}", "    trust: [osi]\n", bundleEntry lines) are
// part of its contract.
func (e *testEnv) config(t *testing.T, upstreamURL, ident string) string {
	t.Helper()
	if ident == "" {
		ident = identity(e.source(e.files.AuthP12), nil)
	}
	text := `listen: {sih: "127.0.0.1:0", admin: "127.0.0.1:0"}
server: {shutdown_timeout: 5s}
identity:
` + ident + `
trust_bundles:
` + bundleEntry("osi", e.files.OSIBundle) + bundleEntry("sante", e.files.SanteBundle) + `routes:
  - name: idb
    path_prefix: /idb/
    upstream: ` + yamlFlow(upstreamURL) + `
    server_name: ` + yamlFlow(testpki.IDBHost) + `
    trust: [osi]
    revocation: {policy: off}   # this PKI publishes no revocation status
`
	path := filepath.Join(e.dir, "roc-proxy.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDemo(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"demo"}, &out, &errOut); err != nil {
		t.Fatalf("demo failed: %v\n%s%s", err, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "11 of 11 steps as expected") {
		t.Fatalf("unexpected demo output:\n%s", out.String())
	}
}

// syncBuffer is a log sink safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeDrainsInFlightRequests: SIGTERM while a request is at the
// partner. The partner answers only once the shutdown has begun (the SIH
// listener refuses new connections): the request in flight must still get
// its answer, and be logged.
func TestServeDrainsInFlightRequests(t *testing.T) {
	e := newTestEnv(t)
	entered, shutdownBegun := make(chan struct{}), make(chan struct{})
	var begun sync.Once
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		select {
		case <-shutdownBegun:
		case <-time.After(20 * time.Second): // the test has failed already
		}
		io.WriteString(w, "<ok/>")
	})
	t.Cleanup(func() { begun.Do(func() { close(shutdownBegun) }) }) // before the partner closes
	p, logs, flushLog := buildLogged(t, e.config(t, up.URL, ""))
	sihLn, _ := net.Listen("tcp", "127.0.0.1:0")
	adminLn, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, sihLn, adminLn) }()
	admin := "http://" + adminLn.Addr().String()
	waitReady(t, admin)

	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+sihLn.Addr().String()+"/idb/check", strings.NewReader("<soap>secret-body</soap>"))
		req.Header.Set("X-Request-Id", "drain-test-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{code: resp.StatusCode, body: string(b)}
	}()
	select {
	case <-entered:
	case r := <-done:
		t.Fatalf("request finished before reaching the partner: %+v", r)
	case <-time.After(10 * time.Second):
		t.Fatal("request never reached the partner")
	}
	stop() // SIGTERM while the request is at the partner
	// The shutdown has begun once the SIH listener is closed: only then
	// does the partner answer.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", sihLn.Addr().String(), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the SIH listener still accepts 10 s after SIGTERM")
		}
	}
	select {
	case r := <-done:
		t.Fatalf("the request ended before its partner answered: %+v", r)
	default:
	}
	begun.Do(func() { close(shutdownBegun) })
	r := <-done
	if r.err != nil || r.code != 200 || r.body != "<ok/>" {
		t.Fatalf("in-flight request not drained: status %d, body %q, error %v", r.code, r.body, r.err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	flushLog()
	http.DefaultClient.CloseIdleConnections()

	// One access-log line with the fields ops need, and no body.
	var line map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"msg":"request"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	for k, want := range map[string]any{"request_id": "drain-test-1", "route": "idb", "status": float64(200), "bytes_out": float64(5), "method": "POST", "path": "/idb/check"} {
		if line[k] != want {
			t.Errorf("access log %s = %v, want %v (line %v)", k, line[k], want, line)
		}
	}
	if _, ok := line["duration"]; !ok {
		t.Error("access log lacks duration")
	}
	if strings.Contains(logs.String(), "secret-body") || strings.Contains(logs.String(), testPassword) {
		t.Error("log contains a body or the password")
	}
}

// buildFile builds the proxy of the configuration file at cfgPath, logging
// to the test.
func buildFile(t *testing.T, cfgPath string) *Proxy {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// buildLogged builds the proxy of the configuration file at cfgPath,
// logging as roc-proxy serve does (JSON lines, batched) into logs;
// flushLog writes out what the batch holds.
func buildLogged(t *testing.T, cfgPath string) (p *Proxy, logs *syncBuffer, flushLog func()) {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	logs = &syncBuffer{}
	log, flushLog, err := logging.New(cfg.Log, logs)
	if err != nil {
		t.Fatal(err)
	}
	p, err = Build(cfg, Deps{Logger: log, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return p, logs, flushLog
}

// waitReady polls /readyz as a kubelet would: the proxy is ready once its
// revocation cache is warm.
func waitReady(t *testing.T, admin string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if get(t, admin+"/readyz") == 200 {
			return
		}
	}
	t.Fatal("not ready after 10 s")
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// postStatus posts a small XML body with client and returns the status.
func postStatus(t *testing.T, client *http.Client, url string) int {
	t.Helper()
	resp, err := client.Post(url, "text/xml", strings.NewReader("<x/>"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestServeRefusesBadMaterial(t *testing.T) {
	e := newTestEnv(t)
	wrongPw := filepath.Join(e.dir, "wrong-password")
	os.WriteFile(wrongPw, []byte("not-it\n"), 0o600)
	expired, err := e.pki.SanteOrg.Issue(testpki.Template{Subject: testpki.OrgName(testpki.AuthCliCN),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore:   time.Now().AddDate(-3, -1, 0), NotAfter: time.Now().AddDate(0, -1, 0)})
	if err != nil {
		t.Fatal(err)
	}
	expiredPEM := filepath.Join(e.dir, "expired.pem")
	os.WriteFile(expiredPEM, testpki.PEM(expired.Cert), 0o644)
	keyPEM, _ := expired.KeyPEM()
	expiredKey := filepath.Join(e.dir, "expired.key")
	os.WriteFile(expiredKey, keyPEM, 0o600)

	tests := []struct {
		name, identity string
		want           []string
	}{
		{"wrong password", identity(map[string]any{"pkcs12": e.files.AuthP12, "password_file": wrongPw}, nil),
			[]string{"identity.auth.pkcs12: " + e.files.AuthP12 + ": wrong password (read from password_file " + wrongPw + ")"}},
		{"missing file", identity(e.source(e.dir+"/absent.p12"), nil),
			[]string{"identity.auth.pkcs12: open " + e.dir + "/absent.p12: no such file or directory"}},
		{"signing certificate as TLS client", identity(e.source(e.files.SignP12), nil),
			[]string{"identity.auth (" + e.files.SignP12 + "): certificate CN=Client_ROC_WebServices_AMC", "is a signing certificate"}},
		{"expired", identity(map[string]any{"cert": expiredPEM, "key": expiredKey}, nil),
			[]string{"identity.auth (" + expiredPEM + "): certificate CN=Client_ROC_Annuaire_AMC", "expired on"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := e.config(t, "https://127.0.0.1:1", tc.identity)
			var out, errOut bytes.Buffer
			err := Run(context.Background(), []string{"serve", "--config", path}, &out, &errOut)
			if err == nil {
				t.Fatal("serve started")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, path+": ") {
				t.Errorf("error does not name the configuration file: %s", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error\n got: %s\nwant: %s", msg, w)
				}
			}
			if strings.Contains(msg+out.String()+errOut.String(), testPassword) {
				t.Error("the password appears in the output")
			}
			// config check reports the same.
			if err := Run(context.Background(), []string{"config", "check", path}, &out, &errOut); err == nil || err.Error() != msg {
				t.Errorf("config check: %v", err)
			}
		})
	}
}

func TestConfigCheck(t *testing.T) {
	e := newTestEnv(t)
	path := e.config(t, "https://127.0.0.1:1/x", "")
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"config", "check", path}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{path + ": configuration OK", "identity.auth: CN=Client_ROC_Annuaire_AMC,OU=1990000019", "trust_bundles.osi: 1 root(s), 2 intermediate(s)", "route idb: /idb/ -> https://127.0.0.1:1/x"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	err := Run(context.Background(), []string{"config", "check", "../../config/testdata/invalid-many.yaml"}, io.Discard, io.Discard)
	var fe *config.FileError
	if !errors.As(err, &fe) || strings.Count(err.Error(), "\n") != 12 {
		t.Errorf("invalid config: %v", err)
	}
}

func TestCommandLine(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}, {"config", "check", "--help"}, {"demo", "-h"}, {"config", "--help"}} {
		var out bytes.Buffer
		if err := Run(context.Background(), args, &out, io.Discard); err != nil || !strings.Contains(out.String(), "Usage") {
			t.Errorf("%v: err %v, output %q", args, err, out.String())
		}
	}
	for _, args := range [][]string{nil, {"bogus"}, {"serve"}, {"serve", "--nope"}, {"config"}, {"config", "check"}, {"demo", "extra"}} {
		if err := Run(context.Background(), args, io.Discard, io.Discard); !errors.Is(err, ErrUsage) {
			t.Errorf("%v: err %v, want usage error", args, err)
		}
	}
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"version"}, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "roc-proxy ") {
		t.Errorf("version: %v %q", err, out.String())
	}
}
