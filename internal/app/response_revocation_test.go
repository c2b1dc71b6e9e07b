package app

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/saml/samltest"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// TestRevokedAnswerSigner plays a partner whose answer-signing certificate
// is revoked (lost key, mis-issued certificate), its status published by
// the simulated CRL server and OCSP responder of AC-SERVICES-APPLICATIFS:
// under enforce the SIH gets 502, under log the answer goes through, logged
// and counted as invalid; warm answers of a good signer cost no network
// call; and a signer revoked while the proxy runs is refused once the
// background refresh has seen it.
func TestRevokedAnswerSigner(t *testing.T) {
	w := newRevocationWorld(t, testpki.IDBHost)
	o := testpki.Options{RevocationBaseURL: w.rs.URL}
	good, err := w.pki.IssueAnswerSigner(w.pki.OSIServicesApplicatifs, "ac-services-applicatifs", "AMC SIGNATURE", o)
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := w.pki.IssueAnswerSigner(w.pki.OSIServicesApplicatifs, "ac-services-applicatifs", "AMC SIGNATURE PERDUE", o)
	if err != nil {
		t.Fatal(err)
	}
	w.rs.Revoke("ac-services-applicatifs", revoked.Cert.SerialNumber)
	answers := map[string][]byte{"good": samltest.SignDetached(t, good), "revoked": samltest.SignDetached(t, revoked)}
	up := partner(t, w.pki, testpki.IDBHost, func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/xml; charset=utf-8")
		rw.Write(answers[filepath.Base(r.URL.Path)])
	})
	route := func(name, revocation, policy string) string {
		return fmt.Sprintf("  - {name: %s, path_prefix: /%s/, upstream: %q, server_name: %s, trust: [osi], revocation: {policy: %s},\n"+
			"     response_signature: {policy: %s, trust: [osi]}}\n", name, name, up.URL, testpki.IDBHost, revocation, policy)
	}
	cfg := w.load(t, "  check_interval: 50ms\n  max_status_age: 1h",
		route("hard", "hard", "enforce")+route("soft", "soft", "enforce")+route("log", "soft", "log"))
	core, logs := observer.New(zap.WarnLevel)
	reg := prometheus.NewRegistry()
	p, err := Build(cfg, Deps{Logger: zap.New(core), Registry: reg, Now: w.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	sih, _ := serve(t, p)
	client := &http.Client{}
	call := func(path string) (int, []byte) {
		t.Helper()
		resp, err := client.Post(sih+path, "text/xml", strings.NewReader(`<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body/></S:Envelope>`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for _, r := range []string{"hard", "soft", "log"} {
		if code, body := call("/" + r + "/good"); code != 200 || !bytes.Equal(body, answers["good"]) {
			t.Fatalf("%s route, good signer: %d\n%s", r, code, body)
		}
	}
	for _, r := range []string{"hard", "soft"} {
		if code, body := call("/" + r + "/revoked"); code != http.StatusBadGateway || !bytes.Contains(body, []byte(`"response_signature"`)) {
			t.Fatalf("%s route under enforce, revoked signer: %d\n%s", r, code, body)
		}
	}
	if code, body := call("/log/revoked"); code != 200 || !bytes.Equal(body, answers["revoked"]) {
		t.Fatalf("log route, revoked signer: %d\n%s", code, body)
	}
	m := p.metrics
	if n := testutil.ToFloat64(m.ResponseSignatures.WithLabelValues("log", "invalid")); n != 1 {
		t.Errorf("log route: %v invalid answers counted, want 1", n)
	}
	if l := logs.FilterMessage("partner response signature does not verify").FilterField(zap.String("route", "log")).All(); len(l) != 1 ||
		!strings.Contains(fmt.Sprint(l[0].ContextMap()["error"]), "revoked") {
		t.Errorf("log route: the revoked signer was not logged as such: %v", l)
	}

	// Warm: the signer's status comes from the cache.
	before := w.rs.OCSPRequests.Load() + w.rs.CRLRequests.Load()
	for i := range 20 {
		if code, _ := call("/hard/good"); code != 200 {
			t.Fatalf("warm call %d: %d", i, code)
		}
	}
	if n := w.rs.OCSPRequests.Load() + w.rs.CRLRequests.Load() - before; n != 0 {
		t.Fatalf("%d revocation requests on the network for 20 warm answers", n)
	}

	// The good signer's key is lost: revoked while the proxy runs.
	w.rs.Revoke("ac-services-applicatifs", good.Cert.SerialNumber)
	w.clk.Add(2 * time.Hour) // past max_status_age: the next refresh asks again
	code, served := 0, 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if code, _ = call("/hard/good"); code != 200 {
			break
		}
		served++
	}
	if code != http.StatusBadGateway {
		t.Fatalf("signer revoked while running: %d after %d answers served", code, served)
	}
}

// TestAnswerSigningAuthorityPrefetched: a hard route's signing bundle
// (response_signature.trust), apart from its TLS bundle, is warmed and
// waited for like the TLS one: readiness needs the status of
// AC-SERVICES-APPLICATIFS, so that the first answer does not find the
// cache cold.
func TestAnswerSigningAuthorityPrefetched(t *testing.T) {
	w := newRevocationWorld(t, testpki.IDBHost)
	tlsBundle := filepath.Join(w.dir, "osi-tls.pem")
	sigBundle := filepath.Join(w.dir, "osi-signature.pem")
	if err := os.WriteFile(tlsBundle, testpki.PEM(w.pki.OSIRoot.Cert, w.pki.OSIServeur.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sigBundle, testpki.PEM(w.pki.OSIRoot.Cert, w.pki.OSIServicesApplicatifs.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	text := yamlf(`listen: {sih: "127.0.0.1:0", admin: "127.0.0.1:0"}
identity: {auth: {pkcs12: %s, password_file: %s}}
trust_bundles: {osi-tls: {paths: [%s]}, osi-signature: {paths: [%s]}}
routes:
  - {name: idb, path_prefix: /idb/, upstream: %s, trust: [osi-tls], revocation: {policy: hard},
     response_signature: {policy: enforce, trust: [osi-signature]}}
`, w.files.AuthP12, w.files.PasswordFile, tlsBundle, sigBundle, "https://"+testpki.IDBHost)
	path := filepath.Join(w.dir, "roc-proxy.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(cfg, Deps{Logger: zap.NewNop(), Registry: prometheus.NewRegistry(), Now: w.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	start := p.routes.Load()
	cas, chains := requiredAuthorities(start.cfg, start.store)
	has := func(certs []*x509.Certificate) bool {
		return slices.ContainsFunc(certs, func(c *x509.Certificate) bool { return c.Equal(w.pki.OSIServicesApplicatifs.Cert) })
	}
	if !has(cas) {
		t.Error("readiness does not wait for the CRLs of the signing authority")
	}
	if !slices.ContainsFunc(chains, has) {
		t.Error("readiness does not wait for the status of the signing authority")
	}
}
