package app

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/reload"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// renewedAuth is a second ORG_AUTH_CLI of the shared PKI, made once per
// package run (RSA key generation is slow under the race detector).
var renewedAuth = sync.OnceValues(func() (*testpki.Cert, error) {
	p, err := testpki.Shared()
	if err != nil {
		return nil, err
	}
	return p.SanteOrg.Issue(testpki.Template{Subject: testpki.OrgName(testpki.AuthCliCN),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
})

// Shutdown while every kind of reload keeps coming: configuration reloads
// (what SIGHUP asks for) back to back, ORG_AUTH_CLI renewed and a trust
// bundle rewritten every few milliseconds, SIH traffic. Serve must stop
// the reloader before it reads what the reloader owns (the race detector
// is the referee: run with -race), shut down within its bound, and a
// reload asked for once it has stopped must say so at once instead of
// waiting for its caller's deadline.
func TestReloadsDuringShutdown(t *testing.T) {
	e := newTestEnv(t)
	renewed, err := renewedAuth()
	if err != nil {
		t.Fatal(err)
	}
	renewedP12, err := renewed.PKCS12(pkcs12.Modern, testPassword, true)
	if err != nil {
		t.Fatal(err)
	}
	originalP12, _ := os.ReadFile(e.files.AuthP12)
	osi, _ := os.ReadFile(e.files.OSIBundle)
	sante, _ := os.ReadFile(e.files.SanteBundle)
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<ok/>")) })
	cfgPath := e.config(t, up.URL, identity(e.source(e.files.AuthP12), map[string]any{"reload_interval": "10ms"}))
	base, _ := os.ReadFile(cfgPath)
	withSecondRoute := withRoute(string(base), fmt.Sprintf("  - {name: idb2, path_prefix: /idb2/, upstream: %q, server_name: %s, trust: [osi], revocation: {policy: off}}\n", up.URL, testpki.IDBHost))
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(cfg, Deps{Logger: zap.NewNop(), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	sihLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, sihLn, adminLn) }()
	waitReady(t, "http://"+adminLn.Addr().String())

	halt := make(chan struct{})
	var wg sync.WaitGroup
	problems := make(chan error, 16)
	// Configuration reloads, back to back, until the reloader says it
	// has stopped.
	stoppedSeen := make(chan time.Time, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
		defer rcancel()
		for i := 0; i < 10000; i++ { // bounded; ends at ErrStopped
			text := string(base)
			if i%2 == 0 {
				text = withSecondRoute
			}
			if err := swapFile(cfgPath, []byte(text)); err != nil {
				problems <- err
				return
			}
			switch err := p.ReloadConfig(rctx, cfgPath); {
			case errors.Is(err, reload.ErrStopped):
				stoppedSeen <- time.Now()
				return
			case err != nil:
				problems <- fmt.Errorf("configuration reload %d: %w", i, err)
				return
			}
		}
		problems <- errors.New("the reloader never said it had stopped")
	}()
	// Renewals of ORG_AUTH_CLI and changes of a trust bundle, found by the
	// file watch and the 10 ms periodic check.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 20000; i++ { // bounded; ends at halt
			select {
			case <-halt:
				return
			case <-time.After(3 * time.Millisecond):
			}
			auth, bundle := originalP12, osi
			if i%2 == 0 {
				auth, bundle = renewedP12, append(append([]byte(nil), osi...), sante...)
			}
			if err := errors.Join(swapFile(e.files.AuthP12, auth), swapFile(e.files.OSIBundle, bundle)); err != nil {
				problems <- err
				return
			}
		}
	}()
	// SIH traffic (its failures during shutdown are expected).
	wg.Add(1)
	go func() {
		defer wg.Done()
		client := &http.Client{Timeout: 2 * time.Second}
		defer client.CloseIdleConnections()
		for i := 0; i < 100000; i++ { // bounded; ends at halt
			select {
			case <-halt:
				return
			default:
			}
			if resp, err := client.Post("http://"+sihLn.Addr().String()+"/idb/", "text/xml", strings.NewReader("<x/>")); err == nil {
				resp.Body.Close()
			}
		}
	}()
	defer func() {
		close(halt)
		wg.Wait()
	}()

	// Shut down once every kind of reload has happened while serving.
	waitUntil(t, "configuration reloads, renewals and bundle reloads while serving", func() bool {
		return testutil.ToFloat64(p.metrics.ConfigReloads.WithLabelValues("ok")) >= 6 &&
			testutil.ToFloat64(p.metrics.CertificateReloads.WithLabelValues("identity.auth", "ok")) >= 2
	})
	cancel()
	var serveErr error
	select {
	case serveErr = <-served:
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return")
	}
	returned := time.Now()
	if serveErr != nil {
		t.Fatalf("Serve: %v", serveErr)
	}
	select {
	case at := <-stoppedSeen:
		t.Logf("the reloader said it had stopped %v after Serve returned", at.Sub(returned).Round(time.Millisecond))
	case err := <-problems:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("a configuration reload asked for after shutdown still waits")
	}
	select {
	case err := <-problems:
		t.Fatal(err)
	default:
	}
	if got := testutil.ToFloat64(p.metrics.ConfigReloads.WithLabelValues("error")); got != 0 {
		t.Errorf("%v configuration reloads refused (every file written was valid)", got)
	}
}

// swapFile is replaceFile for a goroutine: it returns its error.
func swapFile(path string, data []byte) error {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
