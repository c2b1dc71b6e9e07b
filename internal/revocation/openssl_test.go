package revocation

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/referee"
)

// The independent referee: a PKI, its CRLs and its OCSP answers are all
// made by the openssl CLI (openssl req, openssl ca, openssl ca -gencrl,
// openssl ocsp as the responder); the checker's verdicts must agree with
// openssl verify -crl_check and openssl ocsp -resp_text on the same
// certificates. The responder is openssl ocsp itself, one process per
// request (-reqin/-respout) behind a listener the test owns on 127.0.0.1.

type opensslPKI struct {
	t   *testing.T
	dir string
	// files served by the CRL server, by path.
	mu    sync.Mutex
	files map[string][]byte
	// mode of the responder: signer certificate and key, or a recorded
	// answer to replay.
	signer, signerKey string
	replay            []byte
	lastAnswer        []byte
	crlURL, ocspURL   string
	rootCRLURL        string
}

func (o *opensslPKI) run(args ...string) string {
	o.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", args...)
	cmd.Dir = o.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		o.t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// try runs openssl and returns its output whatever its exit status (a
// verification that fails exits non-zero).
func (o *opensslPKI) try(args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", args...)
	cmd.Dir = o.dir
	out, _ := cmd.CombinedOutput()
	return string(out)
}

func (o *opensslPKI) path(name string) string { return filepath.Join(o.dir, name) }

func (o *opensslPKI) cert(name string) *x509.Certificate {
	o.t.Helper()
	b, err := os.ReadFile(o.path(name))
	if err != nil {
		o.t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		o.t.Fatalf("%s: no PEM", name)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		o.t.Fatal(err)
	}
	return c
}

// caConfig writes the openssl ca configuration of the CA in folder name.
func (o *opensslPKI) caConfig(name string) string {
	dir := o.path(name)
	for _, d := range []string{dir, filepath.Join(dir, "newcerts")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			o.t.Fatal(err)
		}
	}
	for f, content := range map[string]string{"index.txt": "", "serial": "1000\n", "crlnumber": "1000\n"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o600); err != nil {
			o.t.Fatal(err)
		}
	}
	cnf := fmt.Sprintf(`[ca]
default_ca = ca_default
[ca_default]
dir = %[1]s
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 365
default_crl_days = 7
policy = policy_any
unique_subject = no
[policy_any]
commonName = supplied
organizationName = optional
countryName = optional
[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
crlDistributionPoints = URI:%[2]s
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
crlDistributionPoints = URI:%[3]s
authorityInfoAccess = OCSP;URI:%[4]s
[ocsp]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,OCSPSigning
`, dir, o.rootCRLURL, o.crlURL, o.ocspURL)
	p := filepath.Join(dir, "ca.cnf")
	if err := os.WriteFile(p, []byte(cnf), 0o600); err != nil {
		o.t.Fatal(err)
	}
	return p
}

// publishCRL makes the CA in folder name issue a CRL (with the given
// openssl ca -gencrl options) and serves it, in DER, at path.
func (o *opensslPKI) publishCRL(name, path string, opts ...string) {
	o.t.Helper()
	pemFile := o.path(name + "/crl.pem")
	o.run(append([]string{"ca", "-batch", "-config", o.path(name + "/ca.cnf"), "-gencrl", "-keyfile", o.path(name + ".key"), "-cert", o.path(name + ".pem"), "-out", pemFile}, opts...)...)
	o.run("crl", "-in", pemFile, "-outform", "DER", "-out", o.path(name+"/crl.der"))
	der, err := os.ReadFile(o.path(name + "/crl.der"))
	if err != nil {
		o.t.Fatal(err)
	}
	o.mu.Lock()
	o.files[path] = der
	o.mu.Unlock()
}

// respond answers one OCSP request with openssl ocsp.
func (o *opensslPKI) respond(w http.ResponseWriter, r *http.Request) {
	req, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.replay != nil {
		w.Write(o.replay)
		return
	}
	dir, err := os.MkdirTemp(o.dir, "ocsp-")
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	defer os.RemoveAll(dir)
	in, out := filepath.Join(dir, "req.der"), filepath.Join(dir, "resp.der")
	os.WriteFile(in, req, 0o600)
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", "ocsp", "-index", o.path("inter/index.txt"), "-CA", o.path("inter.pem"),
		"-rsigner", o.path(o.signer), "-rkey", o.path(o.signerKey), "-reqin", in, "-respout", out, "-ndays", "1")
	if b, err := cmd.CombinedOutput(); err != nil {
		http.Error(w, string(b), 500)
		return
	}
	der, _ := os.ReadFile(out)
	o.lastAnswer = der
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Write(der)
}

func newOpensslPKI(t *testing.T) *opensslPKI {
	referee.Path(t, "openssl", "Debian package openssl")
	o := &opensslPKI{t: t, dir: t.TempDir(), files: map[string][]byte{}, signer: "responder.pem", signerKey: "responder.key"}
	crls := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		b := o.files[r.URL.Path]
		o.mu.Unlock()
		if b == nil {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(crls.Close)
	responder := httptest.NewServer(http.HandlerFunc(o.respond))
	t.Cleanup(responder.Close)
	o.crlURL, o.rootCRLURL, o.ocspURL = crls.URL+"/inter.crl", crls.URL+"/root.crl", responder.URL+"/"

	o.caConfig("root")
	o.caConfig("inter")
	o.run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "root.key", "-out", "root.pem", "-days", "3650",
		"-subj", "/C=FR/O=OpenSSL Referee/CN=Referee Root CA", "-addext", "basicConstraints=critical,CA:TRUE",
		"-addext", "keyUsage=critical,keyCertSign,cRLSign")
	issue := func(ca, name, subject, ext string) {
		o.run("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", name+".key", "-out", name+".csr", "-subj", subject)
		o.run("ca", "-batch", "-config", o.path(ca+"/ca.cnf"), "-keyfile", ca+".key", "-cert", ca+".pem", "-extensions", ext,
			"-in", name+".csr", "-out", name+".pem", "-notext")
	}
	issue("root", "inter", "/C=FR/O=OpenSSL Referee/CN=Referee Issuing CA", "v3_ca")
	issue("inter", "good", "/C=FR/O=Partner/CN=good.partner.test", "leaf")
	issue("inter", "revoked", "/C=FR/O=Partner/CN=revoked.partner.test", "leaf")
	issue("inter", "replayed", "/C=FR/O=Partner/CN=replayed.partner.test", "leaf")
	issue("inter", "responder", "/C=FR/O=OpenSSL Referee/CN=Referee OCSP Responder", "ocsp")
	o.run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "foreign.key", "-out", "foreign.pem", "-days", "30",
		"-subj", "/C=FR/O=Elsewhere/CN=Foreign OCSP Responder", "-addext", "extendedKeyUsage=OCSPSigning")
	o.run("ca", "-batch", "-config", o.path("inter/ca.cnf"), "-keyfile", "inter.key", "-cert", "inter.pem", "-revoke", "revoked.pem", "-crl_reason", "keyCompromise")
	o.publishCRL("root", "/root.crl")
	o.publishCRL("inter", "/inter.crl")
	return o
}

// opensslVerdict is what openssl says of a certificate: good, revoked or
// unusable (no valid status).
func opensslCRLVerdict(out string) string {
	switch {
	case strings.Contains(out, "certificate revoked"):
		return "revoked"
	case strings.Contains(out, ": OK"):
		return "good"
	}
	return "unusable"
}

var ocspStatusLine = regexp.MustCompile(`(?m)^\s*Cert Status: (\w+)`)

func opensslOCSPVerdict(out string) string {
	if !strings.Contains(out, "Response verify OK") {
		return "unusable"
	}
	m := ocspStatusLine.FindStringSubmatch(out)
	if m == nil {
		return "unusable"
	}
	return m[1]
}

func proxyVerdict(err error) string {
	if err == nil {
		return "good"
	}
	if re, ok := err.(*Error); ok && re.Status == StatusRevoked {
		return "revoked"
	}
	return "unusable"
}

func TestAgreesWithOpenSSL(t *testing.T) {
	o := newOpensslPKI(t)
	root, inter := o.cert("root.pem"), o.cert("inter.pem")
	chainOf := func(name string) []*x509.Certificate { return []*x509.Certificate{o.cert(name + ".pem"), inter, root} }
	// leafOf is the link the OCSP cases check: the leaf against the
	// issuing CA (whose own status comes from the root's CRL).
	leafOf := func(name string) []*x509.Certificate { return []*x509.Certificate{o.cert(name + ".pem"), inter} }
	newProxy := func(t *testing.T, sources ...string) (*Checker, Policy) {
		cfg := testConfig()
		is := &config.RevocationIssuer{Subject: "C=FR, O=OpenSSL Referee, CN=Referee Issuing CA"}
		if sources[0] == SourceCRL {
			is.CRLURLs = []string{o.crlURL}
		}
		cfg.Issuers = []*config.RevocationIssuer{is}
		c, _ := newChecker(t, cfg, nil)
		c.Prefetch(context.Background(), []*x509.Certificate{inter, root}, nil)
		return c, hard(sources...)
	}
	verifyCRL := func(name string) string {
		return opensslCRLVerdict(o.try("verify", "-crl_check", "-CAfile", "root.pem", "-untrusted", "inter.pem", "-CRLfile", "inter/crl.pem", name+".pem"))
	}
	ocspText := func(name string) (string, string) {
		out := o.try("ocsp", "-issuer", "inter.pem", "-cert", name+".pem", "-url", o.ocspURL, "-CAfile", "root.pem", "-resp_text", "-no_nonce")
		return opensslOCSPVerdict(out), out
	}

	t.Run("CRL: good and revoked", func(t *testing.T) {
		c, p := newProxy(t, SourceCRL)
		for _, name := range []string{"good", "revoked"} {
			want := verifyCRL(name)
			if got := proxyVerdict(c.Check(context.Background(), chainOf(name), p)); got != want {
				t.Errorf("%s: openssl verify -crl_check says %s, the proxy %s", name, want, got)
			}
		}
		if verifyCRL("revoked") != "revoked" || verifyCRL("good") != "good" {
			t.Fatal("the referee itself disagrees with the setting")
		}
	})

	t.Run("OCSP from a delegated responder: good and revoked", func(t *testing.T) {
		c, p := newProxy(t, SourceOCSP)
		for _, name := range []string{"good", "revoked"} {
			want, out := ocspText(name)
			if want == "unusable" {
				t.Fatalf("referee: %s", out)
			}
			if got := proxyVerdict(c.Check(context.Background(), leafOf(name), p)); got != want {
				t.Errorf("%s: openssl ocsp says %s, the proxy %s", name, want, got)
			}
		}
	})

	t.Run("OCSP signed by the CA itself, carrying its certificate", func(t *testing.T) {
		o.mu.Lock()
		o.signer, o.signerKey = "inter.pem", "inter.key"
		o.mu.Unlock()
		defer func() { o.mu.Lock(); o.signer, o.signerKey = "responder.pem", "responder.key"; o.mu.Unlock() }()
		c, p := newProxy(t, SourceOCSP)
		for _, name := range []string{"good", "revoked"} {
			want, out := ocspText(name)
			if want == "unusable" {
				t.Fatalf("referee refuses the CA-signed answer: %s", out)
			}
			if got := proxyVerdict(c.Check(context.Background(), leafOf(name), p)); got != want {
				t.Errorf("%s: openssl ocsp says %s, the proxy %s", name, want, got)
			}
		}
	})

	t.Run("OCSP signed by a foreign responder", func(t *testing.T) {
		o.mu.Lock()
		o.signer, o.signerKey = "foreign.pem", "foreign.key"
		o.mu.Unlock()
		defer func() { o.mu.Lock(); o.signer, o.signerKey = "responder.pem", "responder.key"; o.mu.Unlock() }()
		c, p := newProxy(t, SourceOCSP)
		want, _ := ocspText("good")
		if got := proxyVerdict(c.Check(context.Background(), leafOf("good"), p)); got != want || want != "unusable" {
			t.Errorf("openssl ocsp says %s, the proxy %s; both must refuse", want, got)
		}
	})

	t.Run("stale CRL", func(t *testing.T) {
		now := time.Now().UTC()
		o.publishCRL("inter", "/inter.crl", "-crl_lastupdate", now.Add(-72*time.Hour).Format("20060102150405Z"),
			"-crl_nextupdate", now.Add(-30*time.Minute).Format("20060102150405Z"))
		defer o.publishCRL("inter", "/inter.crl")
		c, p := newProxy(t, SourceCRL)
		for _, name := range []string{"good", "revoked"} {
			out := o.try("verify", "-crl_check", "-CAfile", "root.pem", "-untrusted", "inter.pem", "-CRLfile", "inter/crl.pem", name+".pem")
			if !strings.Contains(out, "CRL has expired") {
				t.Fatalf("referee: %s", out)
			}
			got := proxyVerdict(c.Check(context.Background(), chainOf(name), p))
			// openssl refuses both (its first error is the expired CRL);
			// the proxy refuses both too, and still tells the revoked one
			// by the CA's signed revocation (rule 1).
			want := map[string]string{"good": "unusable", "revoked": "revoked"}[name]
			if got != want {
				t.Errorf("%s with a stale CRL: openssl refuses (%q), the proxy says %s, want %s", name, strings.TrimSpace(out), got, want)
			}
		}
	})

	t.Run("replayed OCSP answer", func(t *testing.T) {
		c, p := newProxy(t, SourceOCSP)
		chain := leafOf("replayed")
		if got := proxyVerdict(c.Check(context.Background(), chain, p)); got != "good" {
			t.Fatalf("before the revocation: %s", got)
		}
		o.mu.Lock()
		old := o.lastAnswer
		o.mu.Unlock()
		time.Sleep(1100 * time.Millisecond) // OCSP times have a one-second resolution
		o.run("ca", "-batch", "-config", o.path("inter/ca.cnf"), "-keyfile", "inter.key", "-cert", "inter.pem", "-revoke", "replayed.pem", "-crl_reason", "keyCompromise")
		if err := c.fetchOCSP(context.Background(), chain[0], inter, false); err != nil {
			t.Fatal(err)
		}
		want, out := ocspText("replayed")
		if want != "revoked" {
			t.Fatalf("referee after the revocation: %s", out)
		}
		o.mu.Lock()
		current := o.lastAnswer
		o.replay = old
		o.mu.Unlock()
		defer func() { o.mu.Lock(); o.replay = nil; o.mu.Unlock() }()
		if err := c.fetchOCSP(context.Background(), chain[0], inter, false); err == nil {
			t.Error("the replayed answer was accepted")
		}
		if got := proxyVerdict(c.Check(context.Background(), chain, p)); got != "revoked" {
			t.Errorf("after the replay: openssl says %s of the current answer, the proxy %s", want, got)
		}
		// The referee reads both answers: the replay is validly signed,
		// says good, and is older than the current one.
		thisUpdate := regexp.MustCompile(`This Update: (.+)`)
		times := map[string]string{}
		for label, der := range map[string][]byte{"replayed": old, "current": current} {
			f := o.path(label + ".der")
			os.WriteFile(f, der, 0o600)
			out := o.try("ocsp", "-respin", f, "-issuer", "inter.pem", "-cert", "replayed.pem", "-CAfile", "root.pem", "-resp_text")
			m := thisUpdate.FindStringSubmatch(out)
			if m == nil || !strings.Contains(out, "Response verify OK") {
				t.Fatalf("referee on the %s answer: %s", label, out)
			}
			times[label] = m[1]
			if label == "replayed" && opensslOCSPVerdict(out) != "good" {
				t.Fatalf("the replayed answer should say good: %s", out)
			}
		}
		tr, _ := time.Parse("Jan _2 15:04:05 2006 MST", times["replayed"])
		tc, _ := time.Parse("Jan _2 15:04:05 2006 MST", times["current"])
		if !tr.Before(tc) {
			t.Errorf("openssl reads thisUpdate %s for the replay and %s for the current answer", times["replayed"], times["current"])
		}
	})
}
