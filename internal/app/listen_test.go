package app

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// The SIH listener over TLS, with SIH client certificates and a per-route
// list of allowed subjects.
func TestSIHListenerTLSAndClientCertificates(t *testing.T) {
	e := newTestEnv(t)
	p := e.pki
	up := partner(t, p, testpki.IDBHost, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
	server, err := p.IssueServer(p.OSIServeur, "127.0.0.1", testpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sihClient := func(cn string, ca *testpki.Cert) *testpki.Cert {
		c, err := ca.Issue(testpki.Template{Subject: pkix.Name{CommonName: cn, Organization: []string{"SIH"}},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	allowed, other, stranger := sihClient("sih-prod", p.SanteOrg), sihClient("sih-test", p.SanteOrg), sihClient("sih-prod", p.RogueRoot)
	certFile, keyFile, caFile := filepath.Join(e.dir, "listen.pem"), filepath.Join(e.dir, "listen.key"), filepath.Join(e.dir, "sih-ca.pem")
	key, _ := server.KeyPEM()
	os.WriteFile(certFile, testpki.PEM(server.Chain()...), 0o644)
	os.WriteFile(keyFile, key, 0o600)
	os.WriteFile(caFile, testpki.PEM(p.SanteRoot.Cert, p.SanteOrg.Cert), 0o644)
	text := yamlf(`listen: {sih: "127.0.0.1:0", admin: "127.0.0.1:0", tls: {cert: %s, key: %s, client_ca: %s}}
identity: {auth: {pkcs12: %s, password_file: %s}}
trust_bundles: {osi: {paths: [%s]}}
routes:
  - {name: idb, path_prefix: /idb/, upstream: %s, server_name: %s, trust: [osi], revocation: {policy: off},
     allowed_clients: [%s]}
`, certFile, keyFile, caFile, e.files.AuthP12, e.files.PasswordFile, e.files.OSIBundle, up.URL, testpki.IDBHost, trust.SubjectDN(allowed.Cert))
	cfgPath := filepath.Join(e.dir, "tls.yaml")
	os.WriteFile(cfgPath, []byte(text), 0o600)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	base := strings.Replace(startProxy(t, cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()}), "http://", "https://", 1)

	roots := x509.NewCertPool()
	roots.AddCert(p.OSIRoot.Cert)
	call := func(client *testpki.Cert) (int, error) {
		cfg := &tls.Config{RootCAs: roots}
		if client != nil {
			cfg.Certificates = []tls.Certificate{*client.TLSCertificate()}
		}
		tr := &http.Transport{TLSClientConfig: cfg}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Post(base+"/idb/", "text/xml", strings.NewReader("<x/>"))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		var body struct{ Error, Reason string }
		if resp.StatusCode == 403 {
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Reason != "client_certificate" {
				t.Errorf("403 body: reason %q (%v)", body.Reason, err)
			}
		}
		return resp.StatusCode, nil
	}
	if code, err := call(allowed); err != nil || code != 200 {
		t.Fatalf("allowed SIH: %d %v", code, err)
	}
	if code, err := call(other); err != nil || code != 403 {
		t.Fatalf("SIH certificate not allowed on the route: %d %v", code, err)
	}
	serverOnly, err := p.SanteOrg.Issue(testpki.Template{Subject: pkix.Name{CommonName: "sih-prod", Organization: []string{"SIH"}},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*testpki.Cert{"no client certificate": nil, "certificate of another CA": stranger, "certificate without clientAuth": serverOnly} {
		for range 2 { // the second answer comes from the verdict cache
			if code, err := call(c); err != nil || code != 403 {
				t.Errorf("%s: %d %v, want 403", name, code, err)
			}
		}
	}
	if code, err := call(allowed); err != nil || code != 200 {
		t.Fatalf("allowed SIH after refusals: %d %v", code, err)
	}
}
