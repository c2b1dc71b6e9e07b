package app

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// replaceFile swaps a file's content atomically, as a Secret update does.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
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
	cfgPath := e.config(t, up.URL, fmt.Sprintf("  auth: {pkcs12: %s, password_file: %s}\n  reload_interval: 20ms\n", auth, e.files.PasswordFile))
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	sihLn, _ := net.Listen("tcp", "127.0.0.1:0")
	adminLn, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, sihLn, adminLn) }()
	defer func() { stop(); <-served; http.DefaultClient.CloseIdleConnections() }()
	waitReady(t, "http://"+adminLn.Addr().String())
	url := "http://" + sihLn.Addr().String() + "/idb/"

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
	if p.authCert.Load().Leaf.SerialNumber.Text(16) != newSerial {
		t.Fatal("the corrupt file replaced the renewed certificate")
	}
	t.Logf("%d requests across a renewal and a corrupt replacement, none failed", calls.Load())
}
