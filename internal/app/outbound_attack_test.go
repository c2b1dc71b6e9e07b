package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // OCSP CertIDs name issuers by SHA-1
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ocsp"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/logging"
	"github.com/roc-proxy/roc-proxy/internal/sim"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// forgingRevocationServer is what a hostile forward proxy puts in place of
// the authorities' CRL server and OCSP responder: CRLs that list nothing,
// under each real authority's name but signed by a key of its own, and
// OCSP answers "good" for whatever is asked, signed by a responder
// certificate of its own making. The other authorities' answers (the
// establishment's own hierarchy) are fetched from genuine.
func forgingRevocationServer(t *testing.T, real map[string]*testpki.Cert, genuine string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	impostors := map[string]*testpki.Cert{}
	for name, ca := range real {
		imp, err := testpki.NewRoot(testpki.Template{Subject: ca.Cert.Subject, KeyBits: 1024})
		if err != nil {
			t.Fatal(err)
		}
		impostors[name] = imp
	}
	responder, err := impostors["ac-serveur"].Issue(testpki.Template{Subject: pkix.Name{CommonName: "OCSP " + real["ac-serveur"].Cert.Subject.CommonName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, KeyUsage: x509.KeyUsageDigitalSignature, KeyBits: 1024})
	if err != nil {
		t.Fatal(err)
	}
	var served atomic.Int64
	relay := func(w http.ResponseWriter, resp *http.Response, err error) {
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		if name, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/crl/"), ".crl"); ok {
			if impostors[name] == nil {
				resp, err := http.Get(genuine + r.URL.Path)
				relay(w, resp, err)
				return
			}
			served.Add(1)
			der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(99),
				ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)}, impostors[name].Cert, impostors[name].Key)
			if err == nil {
				w.Write(der)
			}
			return
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		req, err := ocsp.ParseRequest(body)
		if err != nil {
			http.Error(w, "no", http.StatusBadRequest)
			return
		}
		for _, ca := range real {
			if !bytes.Equal(spkiHash(ca.Cert), req.IssuerKeyHash) {
				continue
			}
			served.Add(1)
			der, err := ocsp.CreateResponse(ca.Cert, responder.Cert, ocsp.Response{Status: ocsp.Good, SerialNumber: req.SerialNumber,
				ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour), Certificate: responder.Cert}, responder.Key)
			if err == nil {
				w.Header().Set("Content-Type", "application/ocsp-response")
				w.Write(der)
			}
			return
		}
		resp, err := http.Post(genuine+"/ocsp", "application/ocsp-request", bytes.NewReader(body))
		relay(w, resp, err)
	}))
	t.Cleanup(srv.Close)
	return srv, &served
}

func spkiHash(c *x509.Certificate) []byte {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	asn1.Unmarshal(c.RawSubjectPublicKeyInfo, &spki)
	h := sha1.Sum(spki.PublicKey.RightAlign()) //nolint:gosec // see import
	return h[:]
}

// The revocation fetches go through the hospital's proxy in clear
// (http:// in absolute form): a hostile proxy answers them itself. The
// partner is revoked; the proxy says every certificate is good, with CRLs
// and OCSP answers signed by keys of its own under the authorities' names.
// Signatures are checked against the issuer of the verified chain: the
// forgeries are refused, and the hard route does not reach the partner.
func TestProxyForgedRevocationAnswersRefused(t *testing.T) {
	pki, err := testpki.New(testpki.Options{RevocationBaseURL: "http://revocation.test", ServerNames: []string{testpki.IDBHost}})
	if err != nil {
		t.Fatal(err)
	}
	// The genuine authority says the partner is revoked: the proxy hides it.
	rs, err := sim.StartRevocation(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	rs.PublishFor(pki)
	rs.Revoke("ac-serveur", pki.Servers[testpki.IDBHost].Cert.SerialNumber)
	forger, served := forgingRevocationServer(t, map[string]*testpki.Cert{"ac-serveur": pki.OSIServeur, "osi-root": pki.OSIRoot}, rs.URL)
	w := newProxyWorldWith(t, pki, map[string]string{"revocation.test:80": strings.TrimPrefix(forger.URL, "http://")})

	for _, sources := range []string{"[ocsp]", "[crl]", "[ocsp, crl]"} {
		t.Run(sources, func(t *testing.T) {
			cfg := w.config(t, yamlf(`  - {name: idb, path_prefix: /idb/, upstream: %s, trust: [osi], revocation: {policy: hard, sources: %s}}
`, "https://"+testpki.IDBHost+"/ws", rawYAML(sources)))
			before := served.Load()
			sih := w.startUnready(t, cfg)
			a := postIDB(t, sih+"/idb/")
			if a.code == http.StatusOK {
				t.Fatalf("the partner was reached on the proxy's forged revocation answers: %d %s", a.code, a.body)
			}
			if served.Load() == before {
				t.Fatalf("the forger was never asked (%d %s): the test proves nothing", a.code, a.body)
			}
			if a.problem["reason"] != "revocation_unavailable" {
				t.Errorf("refused with %d %s, want reason revocation_unavailable", a.code, a.body)
			}
		})
	}
}

// startUnready is start without waiting for readiness: with the
// authorities' answers forged, the proxy never becomes ready (its
// revocation cache stays cold), and that is right; the SIH's request is
// played anyway, as a client that ignores readiness would.
func (w *proxyWorld) startUnready(t *testing.T, cfg *config.Config) string {
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
	sihLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, sihLn, adminLn) }()
	t.Cleanup(func() {
		stop()
		<-served
		http.DefaultClient.CloseIdleConnections()
	})
	return "http://" + sihLn.Addr().String()
}

// SIGHUP moves a route from the global proxy to another one and back
// while the SIH keeps sending: no request fails or races (under -race),
// and once a reload has applied, new exchanges leave through the proxy it
// names, not on a connection pooled through the previous one.
func TestReloadSwitchesRouteProxyUnderLoad(t *testing.T) {
	w := newProxyWorld(t)
	other, err := sim.StartForwardProxy(sim.ForwardProxyOptions{Hosts: map[string]string{testpki.IDBHost + ":443": w.partner.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	route := func(extra rawYAML) string {
		return yamlf(`  - {name: idb, path_prefix: /idb/, upstream: %s, trust: [osi], revocation: {policy: off}%s}
`, "https://"+testpki.IDBHost+"/ws", extra)
	}
	viaOther := rawYAML(", outbound_proxy: {url: " + yamlFlow(other.URL) + "}")
	cfg := w.config(t, route(""))
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
	path := filepath.Join(w.e.dir, "roc-proxy.yaml")

	const senders, perSender, reloads = 3, 15, 10
	var wg sync.WaitGroup
	failures := make(chan string, senders*perSender)
	for i := 0; i < senders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < perSender; j++ {
				resp, err := http.Post(sih+"/idb/", "text/xml", bytes.NewReader(sim.IDBRequest("12345678", "MEMBRE-SECRET-4242")))
				if err != nil {
					failures <- err.Error()
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures <- fmt.Sprintf("%d %s", resp.StatusCode, b)
				}
			}
		}()
	}
	for i := 0; i < reloads; i++ {
		extra := rawYAML("")
		if i%2 == 0 {
			extra = viaOther
		}
		w.config(t, route(extra))
		if err := p.ReloadConfig(context.Background(), path); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Errorf("request during the reloads: %s", f)
	}
	// The last reload put the route on the global proxy; now on the other.
	w.config(t, route(viaOther))
	if err := p.ReloadConfig(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	globalBefore, otherBefore := w.proxy.Connects.Load(), other.Connects.Load()
	if a := postIDB(t, sih+"/idb/"); a.code != 200 {
		t.Fatalf("after the reload: %d %s", a.code, a.body)
	}
	if w.proxy.Connects.Load() != globalBefore || other.Connects.Load() != otherBefore+1 {
		t.Errorf("after moving the route to the other proxy: %d new CONNECTs to the global one, %d to the other; want 0 and 1",
			w.proxy.Connects.Load()-globalBefore, other.Connects.Load()-otherBefore)
	}
}

// A dynamic route through the proxy: the proxy resolves names, so the
// route's destination rules must hold for the name written in CONNECT.
// Whatever the SIH writes (another domain, a trailing dot, an IP or
// localhost, escapes, a CRLF, user info, a port not allowed), nothing but
// an allowed name on an allowed port reaches the proxy.
func TestDynamicRouteThroughProxyConnectsOnlyAllowedNames(t *testing.T) {
	w := newProxyWorld(t)
	cfg := w.config(t, `  - {name: dyn, path_prefix: /dyn/, dynamic: {hosts: ["*.amc.test"]}, trust: [osi], revocation: {policy: off}}
`)
	sih, _ := w.start(t, cfg)
	for _, seg := range []string{
		"evil.example", "idb.amc.test.", "idb.amc.test.evil.example", "amc.test", "127.0.0.1", "localhost",
		"[::1]", "idb.amc.test:8443", "idb.amc.test%0d%0aX-Injected:%201", "idb.amc.test%20HTTP%2F1.0",
		"user@idb.amc.test", "idb.amc.test%2F..%2Fevil.example", "%69db.amc.test.", "idb%2eamc%2etest%2e",
	} {
		resp, err := http.Post(sih+"/dyn/"+seg+"/ws", "text/xml", bytes.NewReader(sim.IDBRequest("12345678", "MEMBRE-SECRET-4242")))
		if err != nil {
			t.Fatalf("%s: %v", seg, err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("%s: reached", seg)
		}
	}
	if got := w.proxy.Targets(); len(got) != 0 {
		t.Errorf("the proxy was asked %q", got)
	}
	if a := postIDB(t, sih+"/dyn/IDB.amc.test/ws"); a.code != 200 {
		t.Fatalf("allowed partner: %d %s", a.code, a.body)
	}
	if got := w.proxy.Targets(); len(got) != 1 || got[0] != testpki.IDBHost+":443" {
		t.Errorf("CONNECT targets %q, want [%s:443]", got, testpki.IDBHost)
	}
}
