package app

import (
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// TestExpiringCertificateWarned runs the proxy with an ORG_AUTH_CLI that
// ends in ten days, as one does whose renewal was forgotten: it still
// serves, /healthz warns of its expiry (and of no other: the trust bundles
// end in years), roc_proxy_certificate_not_after_timestamp_seconds carries its
// end to the second, and the log says it once at start.
func TestExpiringCertificateWarned(t *testing.T) {
	e := newTestEnv(t)
	notAfter := time.Now().Add(10*24*time.Hour + time.Hour).Truncate(time.Second)
	auth, err := e.pki.SanteOrg.Issue(testpki.Template{Subject: testpki.OrgName(testpki.AuthCliCN),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotAfter:    notAfter})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(e.dir, "auth-expiring.pem"), filepath.Join(e.dir, "auth-expiring.key")
	key, _ := auth.KeyPEM()
	if err := os.WriteFile(certFile, testpki.PEM(auth.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
	p, logs, flushLog := buildLogged(t, e.config(t, up.URL, identity(map[string]any{"cert": certFile, "key": keyFile}, nil)))
	sih, admin := serve(t, p)

	if code := postStatus(t, http.DefaultClient, sih+"/idb/"); code != http.StatusOK {
		t.Fatalf("a certificate ten days from its end no longer serves: %d", code)
	}
	code, health := getJSON(t, admin+"/healthz")
	want := fmt.Sprintf("identity.auth: certificate %s expires on %s (10 days left)", trust.SubjectDN(auth.Cert), notAfter.UTC().Format(time.DateOnly))
	var expiring []any // beside them: this PKI publishes no revocation status
	warnings, _ := health["warnings"].([]any)
	for _, w := range warnings {
		if strings.Contains(fmt.Sprint(w), "expire") {
			expiring = append(expiring, w)
		}
	}
	if code != http.StatusOK || len(expiring) != 1 || expiring[0] != want {
		t.Errorf("/healthz: %d %v\nwant the one expiry warning %q", code, health, want)
	}
	families := scrape(t, admin)
	v, ok := sample(families, "roc_proxy_certificate_not_after_timestamp_seconds",
		map[string]string{"source": "identity.auth", "subject": trust.SubjectDN(auth.Cert), "serial": auth.Cert.SerialNumber.Text(16)})
	if !ok || v != float64(notAfter.Unix()) {
		t.Errorf("roc_proxy_certificate_not_after_timestamp_seconds{source=identity.auth} = %v (present %v), want %d", v, ok, notAfter.Unix())
	}
	var auths int
	for _, m := range families["roc_proxy_certificate_not_after_timestamp_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "source" && l.GetValue() == "identity.auth" {
				auths++
			}
		}
	}
	if auths != 1 {
		t.Errorf("%d identity.auth series, want 1", auths)
	}
	flushLog()
	if n := strings.Count(logs.String(), `"msg":"certificate expires soon"`); n != 1 || !strings.Contains(logs.String(), `"days_left":10`) {
		t.Errorf("%d expiry warnings logged, want 1 with days_left 10:\n%s", n, grepLines([]byte(logs.String()), "expires"))
	}
}
