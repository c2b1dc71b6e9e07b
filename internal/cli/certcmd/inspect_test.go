package certcmd

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/certinfo"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// writeLeaf issues a certificate from ca with the given names and
// validity, and writes it as PEM.
func writeLeaf(t *testing.T, dir string, ca *testpki.Cert, tmpl *x509.Certificate) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, tmpl.Subject.CommonName+".pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// A server certificate: its names are the first thing ops look for.
func TestCertInspectSubjectAltNames(t *testing.T) {
	p := testpki.MustShared(t)
	u, _ := url.Parse("spiffe://hospital.test/roc-proxy")
	path := writeLeaf(t, t.TempDir(), p.OSIServeur, &x509.Certificate{
		Subject:   pkix.Name{CommonName: "roc-proxy.hospital.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"roc-proxy.hospital.test", "roc.hospital.test"},
		IPAddresses: []net.IP{net.ParseIP("10.20.0.5"), net.ParseIP("fd00::5")},
		URIs:        []*url.URL{u}, EmailAddresses: []string{"dsi@hospital.test"},
	})
	var out bytes.Buffer
	if err := Run(t.Context(), []string{"cert", "inspect", path}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"DNS names:       roc-proxy.hospital.test, roc.hospital.test",
		"IP addresses:    10.20.0.5, fd00::5",
		"URIs:            spiffe://hospital.test/roc-proxy",
		"e-mail:          dsi@hospital.test",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := Run(t.Context(), []string{"cert", "inspect", path, "--json"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var r certinfo.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if strings.Join(r.DNSNames, ",") != "roc-proxy.hospital.test,roc.hospital.test" || strings.Join(r.IPAddresses, ",") != "10.20.0.5,fd00::5" ||
		strings.Join(r.URIs, ",") != "spiffe://hospital.test/roc-proxy" || strings.Join(r.EmailAddresses, ",") != "dsi@hospital.test" {
		t.Errorf("JSON names: %+v", r)
	}
	// A certificate without alternative names says so.
	out.Reset()
	e := newTestEnv(t)
	if err := Run(t.Context(), []string{"cert", "inspect", e.files.AuthCertPEM}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "alt names:       none") {
		t.Errorf("no alternative names, not said:\n%s", out.String())
	}
}

// An expired certificate is described, and the command fails saying why:
// a script that checks a renewal must not see success.
func TestCertInspectExpiredFails(t *testing.T) {
	p := testpki.MustShared(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name      string
		from, to  time.Time
		wantError string
	}{
		{"expired", time.Now().Add(-400 * 24 * time.Hour), time.Now().Add(-24 * time.Hour), "expired on " + time.Now().Add(-24*time.Hour).UTC().Format(time.DateOnly)},
		{"future", time.Now().Add(24 * time.Hour), time.Now().Add(400 * 24 * time.Hour), "not valid before " + time.Now().Add(24*time.Hour).UTC().Format(time.DateOnly)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeLeaf(t, dir, p.OSIServeur, &x509.Certificate{
				Subject: pkix.Name{CommonName: tc.name + ".hospital.test"}, NotBefore: tc.from, NotAfter: tc.to,
				KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			for _, extra := range [][]string{nil, {"--json"}} {
				var out bytes.Buffer
				err := Run(t.Context(), append([]string{"cert", "inspect", path}, extra...), &out, io.Discard)
				if err == nil || errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.wantError) {
					t.Errorf("%v: err %v, want a failure saying %q", extra, err, tc.wantError)
				}
				if !strings.Contains(out.String(), tc.name+".hospital.test") {
					t.Errorf("%v: the report was not printed:\n%s", extra, out.String())
				}
			}
		})
	}
}
