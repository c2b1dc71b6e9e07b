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
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// signingConfig writes a configuration with one signing route to
// upstreamURL, ORG_SIGN from signP12, the audit log in auditDir; extra is
// added under audit.
func (e *testEnv) signingConfig(t *testing.T, upstreamURL, signP12, auditDir, extra string) string {
	t.Helper()
	text := yamlf(`listen: {sih: "127.0.0.1:0", admin: "127.0.0.1:0"}
server: {shutdown_timeout: 5s}
identity:
  auth: {pkcs12: %s, password_file: %s}
  sign: {pkcs12: %s, password_file: %s}
  reload_interval: 20ms
trust_bundles:
  osi: {paths: [%s]}
  sante: {paths: [%s]}
audit:
  dir: %s
  chain_id: renewal
%sroutes:
  - name: idb
    path_prefix: /idb/
    upstream: %s
    server_name: %s
    trust: [osi]
    revocation: {policy: off}
    token: {profile: roc}
`, e.files.AuthP12, e.files.PasswordFile, signP12, e.files.PasswordFile, e.files.OSIBundle, e.files.SanteBundle, auditDir, rawYAML(extra), upstreamURL, testpki.IDBHost)
	path := filepath.Join(e.dir, "roc-proxy.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// serveUntil runs p on loopback; stop ends it (the audit log is closed with
// a final checkpoint) and waits.
func serveUntil(t *testing.T, p *Proxy) (sih string, stop func()) {
	t.Helper()
	sihLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, sihLn, adminLn) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-served
			http.DefaultClient.CloseIdleConnections()
		}
	}
	t.Cleanup(stop)
	waitReady(t, "http://"+adminLn.Addr().String())
	return "http://" + sihLn.Addr().String(), stop
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// After a hot swap of the ORG_SIGN files, the next checkpoint is signed by
// the renewed certificate, and verify accepts the chain whose checkpoints
// change signer at the renewal.
func TestCheckpointSignerFollowsTheRenewedORGSIGN(t *testing.T) {
	e := newTestEnv(t)
	signP12 := filepath.Join(e.dir, "renewable-sign.p12")
	data, _ := os.ReadFile(e.files.SignP12)
	os.WriteFile(signP12, data, 0o600)
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
	auditDir := filepath.Join(e.dir, "audit")
	p := buildFile(t, e.signingConfig(t, up.URL, signP12, auditDir, ""))
	sih, stop := serveUntil(t, p)
	post := func() {
		t.Helper()
		resp, err := http.Post(sih+"/idb/", "text/xml", strings.NewReader(`<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><x/></S:Body></S:Envelope>`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("signed call: %d", resp.StatusCode)
		}
	}
	post()
	renewed, err := e.pki.SanteOrg.Issue(testpki.Template{Subject: testpki.OrgName(testpki.SignCN),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}})
	if err != nil {
		t.Fatal(err)
	}
	p12, err := renewed.PKCS12(pkcs12.Modern, testPassword, true)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, signP12, p12)
	waitUntil(t, "the renewed ORG_SIGN", func() bool {
		return testutil.ToFloat64(p.metrics.CertificateReloads.WithLabelValues("identity.sign", "ok")) == 1
	})
	post()
	stop() // final checkpoint

	files, err := audit.ChainFiles(auditDir, "renewal")
	if err != nil {
		t.Fatal(err)
	}
	cps, err := audit.Select(files, audit.Filter{Types: []string{audit.TypeCheckpoint}})
	if err != nil || len(cps) == 0 {
		t.Fatalf("no checkpoint: %v", err)
	}
	last := cps[len(cps)-1]
	if string(last.Cert) != string(renewed.Cert.Raw) {
		c, _ := x509.ParseCertificate(last.Cert)
		t.Fatalf("the checkpoint after the renewal is signed by serial %s, not by the renewed certificate %s",
			c.SerialNumber.Text(16), renewed.Cert.SerialNumber.Text(16))
	}
	// verify accepts the change of signer at the renewal: both anchored,
	// both the establishment's, and says who signed what.
	out, err := runAudit(t, verifyArgs(t, auditDir)...)
	if err != nil || !strings.Contains(out, `chain "renewal": OK`) ||
		!strings.Contains(out, "serial "+e.pki.Sign.Cert.SerialNumber.Text(16)) || !strings.Contains(out, "serial "+renewed.Cert.SerialNumber.Text(16)) {
		t.Fatalf("verify across the renewal: %v\n%s", err, out)
	}
	t.Log(out)
}

// With audit.checkpoint_key set, checkpoints stay with that key across an
// ORG_SIGN renewal, and follow a renewal of its own files.
func TestCheckpointKeyFollowsItsOwnFiles(t *testing.T) {
	e := newTestEnv(t)
	signP12 := filepath.Join(e.dir, "renewable-sign.p12")
	data, _ := os.ReadFile(e.files.SignP12)
	os.WriteFile(signP12, data, 0o600)
	issue := func() *testpki.Cert {
		c, err := e.pki.SanteOrg.Issue(testpki.Template{Subject: testpki.OrgName("Cachet journal audit"),
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cpCert, cpKey := filepath.Join(e.dir, "checkpoint.pem"), filepath.Join(e.dir, "checkpoint.key")
	write := func(c *testpki.Cert) {
		k, err := c.KeyPEM()
		if err != nil {
			t.Fatal(err)
		}
		replaceFile(t, cpKey, k)
		replaceFile(t, cpCert, testpki.PEM(c.Cert))
	}
	first := issue()
	write(first)
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
	auditDir := filepath.Join(e.dir, "audit")
	p := buildFile(t, e.signingConfig(t, up.URL, signP12, auditDir, fmt.Sprintf("  checkpoint_key: {cert: %s, key: %s}\n", cpCert, cpKey)))
	sih, stop := serveUntil(t, p)
	post := func() {
		t.Helper()
		resp, err := http.Post(sih+"/idb/", "text/xml", strings.NewReader(`<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><x/></S:Body></S:Envelope>`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("signed call: %d", resp.StatusCode)
		}
	}
	lastSigner := func() *x509.Certificate {
		t.Helper()
		_, c := p.checkpointSigner()
		return c
	}
	// ORG_SIGN renewed: the checkpoint key stays.
	renewed, _ := e.pki.SanteOrg.Issue(testpki.Template{Subject: testpki.OrgName(testpki.SignCN),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}})
	p12, _ := renewed.PKCS12(pkcs12.Modern, testPassword, true)
	replaceFile(t, signP12, p12)
	waitUntil(t, "the renewed ORG_SIGN", func() bool {
		return testutil.ToFloat64(p.metrics.CertificateReloads.WithLabelValues("identity.sign", "ok")) == 1
	})
	if !lastSigner().Equal(first.Cert) {
		t.Fatal("an ORG_SIGN renewal replaced audit.checkpoint_key")
	}
	// The checkpoint key renewed: the next checkpoint is signed by it.
	second := issue()
	write(second)
	waitUntil(t, "the renewed checkpoint key", func() bool {
		return testutil.ToFloat64(p.metrics.CertificateReloads.WithLabelValues("audit.checkpoint_key", "ok")) >= 1 && lastSigner().Equal(second.Cert)
	})
	post()
	stop()
	files, _ := audit.ChainFiles(auditDir, "renewal")
	cps, _ := audit.Select(files, audit.Filter{Types: []string{audit.TypeCheckpoint}})
	if len(cps) == 0 || string(cps[len(cps)-1].Cert) != string(second.Cert.Raw) {
		t.Fatal("the final checkpoint is not signed by the renewed checkpoint key")
	}
	if out, err := runAudit(t, verifyArgs(t, auditDir)...); err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
}
