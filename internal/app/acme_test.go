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
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// startPebble runs a real ACME server (pebble) in the test; challenges are
// taken as valid (PEBBLE_VA_ALWAYS_VALID): the names do not resolve here.
func startPebble(t *testing.T) (directory, caBundle string, stop func()) {
	t.Setenv("PEBBLE_VA_ALWAYS_VALID", "1")
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	logger := log.New(io.Discard, "", 0)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	validator := va.New(logger, 0, 0, false, "", store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	srv := httptest.NewTLSServer(front.Handler())
	t.Cleanup(srv.Close)
	bundle := filepath.Join(t.TempDir(), "acme-ca.pem")
	if err := os.WriteFile(bundle, testpki.PEM(srv.Certificate()), 0o644); err != nil {
		t.Fatal(err)
	}
	return srv.URL + wfe.DirectoryPath, bundle, srv.Close
}

func TestSIHListenerACME(t *testing.T) {
	e := newTestEnv(t)
	directory, bundle, stopPebble := startPebble(t)
	up := partner(t, e.pki, testpki.IDBHost, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
	storage := filepath.Join(e.dir, "acme")
	alpn, _ := net.Listen("tcp", "127.0.0.1:0") // a free port for the TLS-ALPN solver
	alpnPort := alpn.Addr().(*net.TCPAddr).Port
	alpn.Close()
	write := func(dir string) *config.Config {
		text := fmt.Sprintf(`listen:
  sih: "127.0.0.1:0"
  admin: "127.0.0.1:0"
  tls:
    acme: {directory: "%s", ca_bundle: %s, email: dsi@hospital.test, domains: [roc-proxy.hospital.test], storage: %s, alt_tls_alpn_port: %d}
identity: {auth: {pkcs12: %s, password_file: %s}}
trust_bundles: {osi: {paths: [%s]}}
routes:
  - {name: idb, path_prefix: /idb/, upstream: "%s", server_name: %s, trust: [osi], revocation: {policy: off}}
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

	// No server and nothing stored: a clear start-up error.
	os.RemoveAll(storage)
	p, err := Build(down, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	sihLn, _ := net.Listen("tcp", "127.0.0.1:0")
	adminLn, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 30e9)
	defer cancel()
	err = p.Serve(ctx, sihLn, adminLn)
	if err == nil || !strings.Contains(err.Error(), "listen.tls.acme: no certificate for [roc-proxy.hospital.test]") {
		t.Fatalf("start without ACME server nor stored certificate: %v", err)
	}
}
