package app

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
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
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/reload"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// replaceFile swaps a file's content atomically, as a Secret update does.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := swapFile(path, data); err != nil {
		t.Fatal(err)
	}
}

func TestRenewalUnderLoad(t *testing.T) {
	e := newTestEnv(t)
	// Work on a copy: the shared files stay as they are for other tests.
	auth := filepath.Join(e.dir, "renewable.p12")
	data, _ := os.ReadFile(e.files.AuthP12)
	os.WriteFile(auth, data, 0o600)
	up := partner(t, e.pki, testpki.IDBHost, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.TLS.PeerCertificates[0].SerialNumber.Text(16))
	})
	cfgPath := e.config(t, up.URL, identity(e.source(auth), map[string]any{"reload_interval": "20ms"}))
	p := buildFile(t, cfgPath)
	sih, _ := serve(t, p)
	url := sih + "/idb/"

	var mu sync.Mutex
	seen := map[string]bool{}
	var failures, calls atomic.Int64
	halt := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000; i++ { // bounded
				select {
				case <-halt:
					return
				default:
				}
				resp, err := client.Post(url, "text/xml", strings.NewReader("<x/>"))
				calls.Add(1)
				if err != nil {
					failures.Add(1)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
					continue
				}
				mu.Lock()
				seen[string(b)] = true
				mu.Unlock()
			}
		}()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("traffic", func() bool { return calls.Load() > 50 })

	renewed, err := e.pki.SanteOrg.Issue(testpki.Template{Subject: testpki.OrgName(testpki.AuthCliCN),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatal(err)
	}
	p12, err := renewed.PKCS12(pkcs12.Modern, testPassword, true)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, auth, p12)
	newSerial := renewed.Cert.SerialNumber.Text(16)
	waitFor("the partner to see the renewed certificate", func() bool { mu.Lock(); defer mu.Unlock(); return seen[newSerial] })

	// A corrupt replacement: refused, the renewed certificate stays.
	replaceFile(t, auth, []byte("not a PKCS#12 file"))
	waitFor("the corrupt file to be refused", func() bool {
		return testutil.ToFloat64(p.metrics.CertificateReloads.WithLabelValues("identity.auth", "error")) == 1
	})
	before := calls.Load()
	waitFor("more traffic", func() bool { return calls.Load() > before+50 })
	close(halt)
	wg.Wait()
	client.CloseIdleConnections()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed across the renewal", n, calls.Load())
	}
	if p.current.auth.Load().Leaf.SerialNumber.Text(16) != newSerial {
		t.Fatal("the corrupt file replaced the renewed certificate")
	}
	t.Logf("%d requests across a renewal and a corrupt replacement, none failed", calls.Load())
}

func TestConfigReload(t *testing.T) {
	e := newTestEnv(t)
	up := partner(t, e.pki, testpki.IDBHost, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
	cfgPath := e.config(t, up.URL, "")
	p := buildFile(t, cfgPath)
	sih, _ := serve(t, p)
	status := func(path string) int { return postStatus(t, http.DefaultClient, sih+path) }
	if status("/idb2/") != 404 {
		t.Fatal("route served before it was configured")
	}
	original, _ := os.ReadFile(cfgPath)
	added := strings.Replace(string(original), "routes:\n", "routes:\n"+idb2Route(up.URL), 1)
	// With a section only a restart applies, nothing of the file is
	// applied, and the error says why.
	restart := strings.Replace(added, "server: {shutdown_timeout: 5s}", "server: {shutdown_timeout: 6s}", 1)
	replaceFile(t, cfgPath, []byte(restart))
	reloadCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var re *reload.RestartError
	if err := p.ReloadConfig(reloadCtx, cfgPath); !errors.As(err, &re) || len(re.Restart) != 1 || re.Restart[0] != "server" {
		t.Fatalf("reload changing server: %v", err)
	}
	if status("/idb2/") != 404 {
		t.Fatal("a refused file's route is served")
	}
	replaceFile(t, cfgPath, []byte(added))
	if err := p.ReloadConfig(reloadCtx, cfgPath); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if status("/idb2/") != 200 || status("/idb/") != 200 {
		t.Fatal("reloaded routes not served")
	}
	for _, bad := range []string{
		added + "unknown_key: 1\n",
		strings.Replace(added, e.files.OSIBundle, filepath.Join(e.dir, "absent.pem"), 1),
	} {
		replaceFile(t, cfgPath, []byte(bad))
		if err := p.ReloadConfig(reloadCtx, cfgPath); err == nil {
			t.Fatal("invalid configuration accepted")
		}
		if status("/idb2/") != 200 {
			t.Fatal("a refused reload changed the running configuration")
		}
	}
	if testutil.ToFloat64(p.metrics.ConfigReloads.WithLabelValues("ok")) != 1 || testutil.ToFloat64(p.metrics.ConfigReloads.WithLabelValues("error")) != 3 {
		t.Error("reload metrics")
	}
}

// A trust bundle's file changes: the configuration is reloaded by itself
// and the partner's new authority is trusted without a restart. With a one
// hour periodic check, only the file notification can find the Kubernetes
// style symlink swap in time.
func TestBundleChangeReloads(t *testing.T) {
	for _, tc := range []struct {
		name, interval string
		kubernetes     bool
	}{
		{"periodic check", "20ms", false},
		{"notification of a Kubernetes secret swap", "1h", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			up := partner(t, e.pki, testpki.IDBHost, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
			// At first the "osi" bundle lacks the IGC OSI (it holds the
			// IGC-Santé authorities): the partner is refused.
			osi, _ := os.ReadFile(e.files.OSIBundle)
			sante, _ := os.ReadFile(e.files.SanteBundle)
			install := func(data []byte) { replaceFile(t, e.files.OSIBundle, data) }
			if tc.kubernetes {
				mount := filepath.Join(e.dir, "bundles")
				install = kubernetesSecret(t, mount, "igc-osi.pem")
				e.files.OSIBundle = filepath.Join(mount, "igc-osi.pem")
			}
			install(sante)
			cfgPath := e.config(t, up.URL, identity(e.source(e.files.AuthP12), map[string]any{"reload_interval": tc.interval}))
			cfg, err := config.Load(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Build(cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()})
			if err != nil {
				t.Fatal(err)
			}
			sih, _ := serve(t, p)
			status := func() int { return postStatus(t, http.DefaultClient, sih+"/idb/") }
			if got := status(); got != http.StatusBadGateway {
				t.Fatalf("partner outside the bundle: status %d, want 502", got)
			}
			install(osi) // the GIE's bundle is installed
			for deadline := time.Now().Add(10 * time.Second); testutil.ToFloat64(p.metrics.ConfigReloads.WithLabelValues("ok")) != 1; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the bundle change did not reload the configuration")
				}
			}
			if got := status(); got != http.StatusOK {
				t.Fatalf("after the bundle change: status %d, want 200", got)
			}
		})
	}
}

// kubernetesSecret lays out dir as the kubelet mounts a Secret (name ->
// ..data/name, ..data -> a timestamped folder) and returns a function that
// updates the file the kubelet's way: a new folder, then an atomic swap of
// the ..data symlink. The file itself is never written.
func kubernetesSecret(t *testing.T, dir, name string) func([]byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	version := 0
	return func(data []byte) {
		t.Helper()
		version++
		ts := fmt.Sprintf("..2026_11_23_09_%02d_00.%d", version, version)
		if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ts, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(ts, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSIGHUPReloads sends a real SIGHUP to a running roc-proxy process after
// adding a route to its configuration file, then a broken file, then a file
// that needs a restart: the route appears, the other two change nothing,
// the last is refused as needing a restart (log and metrics), and neither
// stops the process. Each refusal is awaited on the reload counter, not on
// a delay.
func TestSIGHUPReloads(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	e := newTestEnv(t)
	bin := buildRocProxy(t, e.dir)
	up := partner(t, e.pki, testpki.IDBHost, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
	cfgPath := e.config(t, up.URL, "")
	cmd, base, admin, logs := launchRocProxyLogged(t, bin, cfgPath, nil)
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	status := func(path string) int { return postStatus(t, client, base+path) }
	reloads := func(result string) float64 {
		v, _ := sample(scrape(t, admin), "roc_proxy_config_reloads_total", map[string]string{"result": result})
		return v
	}
	// hup sends SIGHUP and waits until the reload it asks for is counted
	// with result.
	hup := func(result string) {
		t.Helper()
		want := reloads(result) + 1
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); reloads(result) < want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no reload counted with result %q 10 s after SIGHUP", result)
			}
		}
	}
	if status("/idb2/") != http.StatusNotFound {
		t.Fatal("route served before it was configured")
	}
	original, _ := os.ReadFile(cfgPath)
	added := strings.Replace(string(original), "routes:\n", "routes:\n"+idb2Route(up.URL), 1)
	replaceFile(t, cfgPath, []byte(added))
	hup("ok")
	if status("/idb2/") != http.StatusOK {
		t.Fatal("SIGHUP did not apply the new route")
	}
	replaceFile(t, cfgPath, []byte(added+"routes_typo: 1\n"))
	hup("error")
	if status("/idb2/") != http.StatusOK || status("/idb/") != http.StatusOK {
		t.Fatal("a refused reload changed the running configuration")
	}
	// A valid file adding a signing route with the signer and audit log
	// it needs (sections only a restart applies): refused whole as needing
	// a restart, and the process lives on (it used to die of a nil
	// pointer).
	replaceFile(t, cfgPath, []byte(e.withAudit(e.withSign(withRoute(added, tokenRoute(up.URL))))))
	hup("error")
	if status("/idb2/") != http.StatusOK || status("/dmp/") != http.StatusNotFound {
		t.Fatal("the refused file was applied, in part or whole")
	}
	// The log line comes through a pipe: it may reach the test after the
	// counter does.
	refusals := func() (n int, last string) {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "configuration reload refused") {
				n, last = n+1, line
			}
		}
		return n, last
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if n, _ := refusals(); n >= 2 || time.Now().After(deadline) {
			break
		}
	}
	n, refusal := refusals()
	if want := cfgPath + ": audit, identity changed: only a restart applies these sections"; n != 2 || !strings.Contains(refusal, want) {
		t.Errorf("%d refusals logged; the last, of the file needing a restart, does not say so (want %q):\n%s", n, want, refusal)
	}
	if v, _ := sample(scrape(t, admin), "roc_proxy_config_refused", nil); v != 1 {
		t.Errorf("roc_proxy_config_refused = %v after the refusals, want 1", v)
	}
}
