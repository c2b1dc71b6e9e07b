package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// hostileSubject is what an impostor (or the hospital's TLS-inspecting
// proxy) may write in the subject of the certificate it presents: terminal
// escapes (clear the line, set the window title), a carriage return and a
// line feed that forge a table row, a C1 control (CSI) and a bidi override.
const hostileSubject = "evil\x1b[2K\x1b]0;owned\x07\r\nroute forged  idb.amc.test:443  OK\u009b31m\u202e"

// selfSigned is a certificate for name with subject CN cn, signed by its
// own key (no authority the routes trust).
func selfSigned(t *testing.T, name, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn, Organization: []string{cn}},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// A partner, or anything between, that presents a certificate whose
// subject holds control characters does not write them on the operator's
// terminal: doctor's table, its problems and its progress lines show them
// escaped, and no line can be forged.
func TestDoctorEscapesHostileCertificateText(t *testing.T) {
	w := newDoctorWorld(t)
	evil := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	evil.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t, testpki.IDBHost, hostileSubject)}}
	evil.Config.ErrorLog = log.New(io.Discard, "", 0)
	evil.StartTLS()
	t.Cleanup(evil.Close)
	w.servers["evil"] = evil.URL
	path := w.config(t, w.route("impostor", "evil", testpki.IDBHost, ""))
	_, out, progress, err := runDoctor(t, "--config", path, "--timeout", "20s")
	if err == nil {
		t.Fatalf("doctor accepted an impostor:\n%s", out)
	}
	if !strings.Contains(out, "unknown_authority") || !strings.Contains(out, `evil\x1b[2K`) {
		t.Errorf("the impostor's refusal is not shown, with its subject escaped:\n%s", out)
	}
	for where, text := range map[string]string{"table": out, "progress": progress} {
		for _, bad := range []string{"\x1b", "\x07", "\r", "\u009b", "\u202e"} {
			if strings.Contains(text, bad) {
				t.Errorf("doctor's %s writes %q to the terminal:\n%q", where, bad, text)
				break
			}
		}
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, "route forged") {
				t.Errorf("doctor's %s has a line forged by the partner: %q", where, line)
			}
		}
	}
}
