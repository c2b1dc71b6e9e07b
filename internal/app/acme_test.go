package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// startPebble runs a real ACME server (pebble) in the test; challenges are
// taken as valid (PEBBLE_VA_ALWAYS_VALID): the names do not resolve here.
// A non-empty addr starts it on that address (a restarted server).
func startPebble(t *testing.T, addr string) (directory, caBundle string, stop func()) {
	t.Setenv("PEBBLE_VA_ALWAYS_VALID", "1")
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	logger := log.New(io.Discard, "", 0)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	validator := va.New(logger, 0, 0, false, "", store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	srv := httptest.NewUnstartedServer(front.Handler())
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	bundle := filepath.Join(t.TempDir(), "acme-ca.pem")
	if err := os.WriteFile(bundle, testpki.PEM(srv.Certificate()), 0o644); err != nil {
		t.Fatal(err)
	}
	return srv.URL + wfe.DirectoryPath, bundle, srv.Close
}

func TestSIHListenerACME(t *testing.T) {
	e := newTestEnv(t)
	directory, bundle, stopPebble := startPebble(t, "")
	up := partner(t, e.pki, testpki.IDBHost, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
	storage := filepath.Join(e.dir, "acme")
	alpn, _ := net.Listen("tcp", "127.0.0.1:0") // a free port for the TLS-ALPN solver
	alpnPort := alpn.Addr().(*net.TCPAddr).Port
	alpn.Close()
	write := func(dir string) *config.Config {
		text := yamlf(`listen:
  sih: "127.0.0.1:0"
  admin: "127.0.0.1:0"
  tls:
    acme: {directory: %s, ca_bundle: %s, email: dsi@hospital.test, domains: [roc-proxy.hospital.test], storage: %s, alt_tls_alpn_port: %s}
identity: {auth: {pkcs12: %s, password_file: %s}}
trust_bundles: {osi: {paths: [%s]}}
routes:
  - {name: idb, path_prefix: /idb/, upstream: %s, server_name: %s, trust: [osi], revocation: {policy: off}}
`, dir, bundle, storage, alpnPort, e.files.AuthP12, e.files.PasswordFile, e.files.OSIBundle, up.URL, testpki.IDBHost)
		path := filepath.Join(e.dir, "acme.yaml")
		os.WriteFile(path, []byte(text), 0o600)
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	call := func(base string) string {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "roc-proxy.hospital.test"}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Post(strings.Replace(base, "http://", "https://", 1)+"/idb/", "text/xml", strings.NewReader("<x/>"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		leaf := resp.TLS.PeerCertificates[0]
		if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "roc-proxy.hospital.test" || !strings.Contains(leaf.Issuer.CommonName, "Pebble") {
			t.Fatalf("served certificate %v from %s", leaf.DNSNames, leaf.Issuer)
		}
		return leaf.SerialNumber.String()
	}

	// First start: the certificate comes from the ACME server.
	first := call(startProxy(t, write(directory), Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()}))
	if first == "" {
		t.Fatal("no certificate")
	}

	// The ACME server is down: the stored certificate is still served.
	stopPebble()
	down := write(directory)
	base := startProxy(t, down, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()})
	if again := call(base); again != first {
		t.Errorf("served %s after a restart, want the stored %s", again, first)
	}

	// No server and nothing stored: a clear error, not ready, and new
	// attempts until the server is back.
	os.RemoveAll(storage)
	core, logs := observer.New(zap.InfoLevel)
	p, err := Build(down, Deps{Logger: zap.New(core), Registry: prometheus.NewRegistry(), ACMERetry: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sihLn, _ := net.Listen("tcp", "127.0.0.1:0")
	adminLn, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, sihLn, adminLn) }()
	defer func() { cancel(); <-served }()
	for deadline := time.Now().Add(20 * time.Second); logs.FilterMessage("no SIH listener certificate yet: the SIH port opens once one is obtained").Len() < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no retried ACME error logged")
		}
	}
	failure := logs.FilterMessage("no SIH listener certificate yet: the SIH port opens once one is obtained").All()[0]
	if msg := fmt.Sprint(failure.ContextMap()["error"]); !strings.Contains(msg, "listen.tls.acme: no certificate for [roc-proxy.hospital.test]") {
		t.Errorf("logged error %q does not say what is missing", msg)
	}
	admin := "http://" + adminLn.Addr().String()
	for _, probe := range []struct {
		path string
		want int
	}{{"/healthz", 200}, {"/readyz", 503}} {
		if got := get(t, admin+probe.path); got != probe.want {
			t.Errorf("%s while waiting for the ACME server: %d, want %d", probe.path, got, probe.want)
		}
	}
	// The ACME server comes back on the same address.
	u, _ := url.Parse(directory)
	startPebble(t, u.Host)
	waitReady(t, admin)
	if serial := call("http://" + sihLn.Addr().String()); serial == first {
		t.Error("a new certificate was expected once the storage was emptied")
	}
	http.DefaultClient.CloseIdleConnections()
}
