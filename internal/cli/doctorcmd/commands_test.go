package doctorcmd

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/roc-proxy/roc-proxy/internal/cli/cmdline"
	"github.com/roc-proxy/roc-proxy/internal/sim"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// ErrUsage is the usage error (exit status 2).
var ErrUsage = cmdline.ErrUsage

// Run runs a roc-proxy command line through the same dispatch as the
// program's, with this package's command only.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	p := cmdline.Program{Name: "roc-proxy", Commands: []cmdline.Command{Command}}
	return p.Run(ctx, args, stdout, stderr)
}

const testPassword = "Tr0ub4dor&3-test"

// The hospital's forward proxy password in these tests: it must appear in
// no doctor output.
const proxyPassword = "Pr0xy-S3cret-7c1e"

func newPool(certs ...*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool
}

func assertNoSecret(t *testing.T, where string, text []byte) {
	t.Helper()
	basic := base64.StdEncoding.EncodeToString([]byte("roc-proxy:" + proxyPassword))
	for _, s := range []string{proxyPassword, basic} {
		if bytes.Contains(text, []byte(s)) {
			t.Errorf("%s shows the proxy credentials (%q)", where, s)
		}
	}
}

// proxyWorld is a partner (the simulated AMC service, idb.amc.test) that
// only a forward proxy can reach by name, the proxy requiring Basic
// credentials and resolving hosts too, and a configuration whose routes
// go through it.
type proxyWorld struct {
	e      struct{ dir string }
	files  *testpki.Files
	proxy  *sim.ForwardProxy
	pwFile string
}

func newProxyWorldWith(t *testing.T, pki *testpki.PKI, hosts map[string]string) *proxyWorld {
	t.Helper()
	w := &proxyWorld{}
	w.e.dir = t.TempDir()
	var err error
	if w.files, err = pki.WriteFiles(w.e.dir, testPassword, ""); err != nil {
		t.Fatal(err)
	}
	partner, err := sim.StartAMCService(sim.Options{Certificate: pki.Servers[testpki.IDBHost].TLSCertificate(), ClientCAs: newPool(pki.SanteRoot.Cert)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { partner.Close() })
	resolve := map[string]string{testpki.IDBHost + ":443": partner.Addr}
	for k, v := range hosts {
		resolve[k] = v
	}
	if w.proxy, err = sim.StartForwardProxy(sim.ForwardProxyOptions{Username: "roc-proxy", Password: proxyPassword, Hosts: resolve}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.proxy.Close() })
	w.pwFile = filepath.Join(w.e.dir, "proxy-password")
	if err := os.WriteFile(w.pwFile, []byte(proxyPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return w
}

// config writes roc-proxy.yaml with the global outbound proxy and the
// given routes (YAML list items).
func (w *proxyWorld) config(t *testing.T, routes string) {
	t.Helper()
	text := fmt.Sprintf(`identity: {auth: {pkcs12: %s, password_file: %s}}
trust_bundles: {osi: {paths: [%s]}, sante: {paths: [%s]}}
outbound_proxy:
  url: %s
  username: roc-proxy
  password_file: %s
  no_proxy: [.hopital.example, 10.0.0.0/8]
routes:
%s`, w.files.AuthP12, w.files.PasswordFile, w.files.OSIBundle, w.files.SanteBundle, w.proxy.URL, w.pwFile, routes)
	if err := os.WriteFile(filepath.Join(w.e.dir, "roc-proxy.yaml"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
