package reload

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/expiry"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// orgName is an IGC-Santé ORG subject for structure ou.
func orgName(ou, cn string) pkix.Name {
	return pkix.Name{Country: []string{"FR"}, Organization: []string{"CENTRE HOSPITALIER VOISIN"}, OrganizationalUnit: []string{ou}, CommonName: cn}
}

var (
	authUsage = testpki.Template{KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	signUsage = testpki.Template{KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}
)

// renewal is a PKCS#12 (the world's password) of a certificate issued by
// the shared test PKI's IGC-Santé ORGANISATIONS authority.
func renewal(t *testing.T, usage testpki.Template, subject pkix.Name, notBefore, notAfter time.Time) []byte {
	t.Helper()
	usage.Subject, usage.NotBefore, usage.NotAfter = subject, notBefore, notAfter
	c, err := testpki.MustShared(t).SanteOrg.Issue(usage)
	if err != nil {
		t.Fatal(err)
	}
	p12, err := c.PKCS12(pkcs12.Modern, "Tr0ub4dor&3-test", true)
	if err != nil {
		t.Fatal(err)
	}
	return p12
}

// Renewals an ops mistake (or someone who can write the mounted Secret)
// puts in place of the establishment's certificates, each a valid
// certificate of the trusted IGC-Santé authority: another establishment's
// ORG_AUTH_CLI or ORG_SIGN (a GHT's ops team renewing several hospitals,
// the neighbour's .p12 copied), an expired or not-yet-valid one, an
// ORG_SIGN renewed to a TLS-client-only certificate. Every one must be
// refused, the certificate in service kept, roc_proxy_certificate_refused
// at 1; before, another establishment's certificate was put in service:
// the partners then saw another hospital's identity, tokens claimed its
// structure (Identifiant_Structure defaults to the signing certificate's
// OU) and the audit checkpoints were signed by it.
func TestRenewalToAnotherEstablishmentIsRefused(t *testing.T) {
	now := time.Now()
	other := "1990000027"
	for _, tc := range []struct {
		name   string
		source string
		p12    func(t *testing.T) []byte
		want   string
	}{
		{"ORG_AUTH_CLI of another establishment", "identity.auth", func(t *testing.T) []byte {
			return renewal(t, authUsage, orgName(other, testpki.AuthCliCN), now.Add(-time.Hour), now.AddDate(3, 0, 0))
		}, "structure"},
		{"ORG_SIGN of another establishment", "identity.sign", func(t *testing.T) []byte {
			return renewal(t, signUsage, orgName(other, testpki.SignCN), now.Add(-time.Hour), now.AddDate(3, 0, 0))
		}, "structure"},
		{"ORG_SIGN without a structure", "identity.sign", func(t *testing.T) []byte {
			return renewal(t, signUsage, pkix.Name{Country: []string{"FR"}, CommonName: testpki.SignCN}, now.Add(-time.Hour), now.AddDate(3, 0, 0))
		}, "structure"},
		{"expired ORG_AUTH_CLI", "identity.auth", func(t *testing.T) []byte {
			return renewal(t, authUsage, testpki.OrgName(testpki.AuthCliCN), now.AddDate(-3, 0, 0), now.Add(-time.Hour))
		}, "expired"},
		{"not yet valid ORG_SIGN", "identity.sign", func(t *testing.T) []byte {
			return renewal(t, signUsage, testpki.OrgName(testpki.SignCN), now.Add(time.Hour), now.AddDate(3, 0, 0))
		}, "not valid before"},
		{"ORG_SIGN renewed to a TLS-only certificate", "identity.sign", func(t *testing.T) []byte {
			return renewal(t, authUsage, testpki.OrgName(testpki.SignCN), now.Add(-time.Hour), now.AddDate(3, 0, 0))
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, func(c *config.Config) {})
			signSrc := &config.CertSource{PKCS12: w.files.SignP12, PasswordFile: w.files.PasswordFile}
			w.cfg.Identity.Sign = signSrc
			sign, err := mtls.LoadIdentity(signSrc, mtls.LoadOptions{Path: "identity.sign", Role: mtls.RoleSign, Store: w.store, Now: time.Now, Getenv: os.Getenv})
			if err != nil {
				t.Fatal(err)
			}
			rt := &runtime{}
			r, m, logs := w.reloaderWithSign(t, rt, sign)
			runReloader(t, r)
			path := w.files.AuthP12
			if tc.source == "identity.sign" {
				path = w.files.SignP12
			}
			swap(t, path, tc.p12(t))
			wait(t, "the renewal to be judged", func() bool {
				return testutil.ToFloat64(m.CertificateReloads.WithLabelValues(tc.source, "error"))+
					testutil.ToFloat64(m.CertificateReloads.WithLabelValues(tc.source, "ok")) > 0
			})
			rt.mu.Lock()
			renewed := slices.Clone(rt.renewed)
			rt.mu.Unlock()
			if len(renewed) != 0 {
				t.Fatalf("put in service: %q", renewed)
			}
			if testutil.ToFloat64(m.CertificateRefused.WithLabelValues(tc.source)) != 1 {
				t.Error("roc_proxy_certificate_refused is not 1")
			}
			if !strings.Contains(logs.String(), tc.want) {
				t.Errorf("the refusal does not say why (%q):\n%s", tc.want, logs.String())
			}
		})
	}
}

// logBuffer collects log lines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *logBuffer) Sync() error    { return nil }
func (l *logBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// reloaderWithSign is reloader with identity.sign in service, its logs
// kept.
func (w *world) reloaderWithSign(t *testing.T, rt Runtime, sign *mtls.Identity) (*Reloader, *metrics.Metrics, *logBuffer) {
	t.Helper()
	m, err := metrics.New(prometheus.NewRegistry(), metrics.BuildInfo{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), logs, zap.DebugLevel))
	return New(Options{Config: w.cfg, Store: w.store, Auth: w.auth, Sign: sign, Runtime: rt, Expiry: expiry.New(m.CertificateNotAfter, log),
		Metrics: m, Logger: log, Now: time.Now, Getenv: os.Getenv}), m, logs
}

// A renewal whose PKCS#12 lands before its new password file (two Secret
// keys written one after the other, or by hand): the new .p12 with the old
// password is refused (the certificate in service stays), and once the
// password file follows, the pair is loaded: a refusal is not final for
// files that change again.
func TestRenewalWhosePasswordFollowsThePKCS12(t *testing.T) {
	w := newWorld(t, nil)
	rt := &runtime{}
	r, m := w.reloader(t, rt)
	runReloader(t, r)
	p12, err := testpki.MustShared(t).AuthCli.PKCS12(pkcs12.Modern, "n3w-p4ssw0rd-2029", true)
	if err != nil {
		t.Fatal(err)
	}
	swap(t, w.files.AuthP12, p12)
	wait(t, "the new .p12 with the old password to be refused", func() bool {
		return testutil.ToFloat64(m.CertificateReloads.WithLabelValues("identity.auth", "error")) == 1
	})
	rt.mu.Lock()
	n := len(rt.renewed)
	rt.mu.Unlock()
	if n != 0 {
		t.Fatal("a .p12 that does not open with the password in service was put in service")
	}
	swap(t, w.files.PasswordFile, []byte("n3w-p4ssw0rd-2029\n"))
	wait(t, "the pair to be loaded", func() bool {
		return testutil.ToFloat64(m.CertificateReloads.WithLabelValues("identity.auth", "ok")) == 1
	})
	if testutil.ToFloat64(m.CertificateRefused.WithLabelValues("identity.auth")) != 0 {
		t.Error("still refused after the password followed")
	}
}

// A trust bundle emptied by a botched update (its folder replaced by an
// empty one, its file truncated to nothing): the reload is refused whole,
// the routes keep the bundles in service, roc_proxy_config_refused is 1.
func TestEmptiedTrustBundleIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		empty func(t *testing.T, w *world) string // the bundle's path, emptied
	}{
		{"file truncated", func(t *testing.T, w *world) string {
			swap(t, w.files.OSIBundle, nil)
			return w.files.OSIBundle
		}},
		{"folder replaced by an empty folder", func(t *testing.T, w *world) string {
			dir := w.cfg.TrustBundles["osi"].Paths[0]
			os.RemoveAll(dir)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			folder := strings.Contains(tc.name, "folder")
			w := newWorld(t, func(c *config.Config) {})
			if folder {
				dir := w.dir + "/osi.d"
				os.Mkdir(dir, 0o755)
				data, _ := os.ReadFile(w.files.OSIBundle)
				os.WriteFile(dir+"/osi.pem", data, 0o644)
				w.cfg.TrustBundles["osi"].Paths = []string{dir}
			}
			rt := &runtime{}
			r, m := w.reloader(t, rt)
			runReloader(t, r)
			tc.empty(t, w)
			wait(t, "the emptied bundle to be judged", func() bool {
				return testutil.ToFloat64(m.ConfigReloads.WithLabelValues("error"))+testutil.ToFloat64(m.ConfigReloads.WithLabelValues("ok")) > 0
			})
			rt.mu.Lock()
			applied := len(rt.applied)
			rt.mu.Unlock()
			if applied != 0 || testutil.ToFloat64(m.ConfigRefused) != 1 {
				t.Fatalf("an emptied bundle: %d route sets applied, refused %v", applied, testutil.ToFloat64(m.ConfigRefused))
			}
		})
	}
}

// countingRuntime counts the listener certificates put in service.
type countingRuntime struct {
	runtime
	listener int
}

func (c *countingRuntime) ListenerRenewed(*tls.Certificate) { c.mu.Lock(); c.listener++; c.mu.Unlock() }

// writeListenerPair writes a SIH listener certificate (valid from
// notBefore to notAfter) and its key.
func writeListenerPair(t *testing.T, certPath, keyPath string, notBefore, notAfter time.Time) {
	t.Helper()
	c, err := testpki.MustShared(t).SanteOrg.Issue(testpki.Template{Subject: pkix.Name{CommonName: "roc-proxy.hopital.test"},
		DNSNames: []string{"roc-proxy.hopital.test"}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, NotBefore: notBefore, NotAfter: notAfter})
	if err != nil {
		t.Fatal(err)
	}
	key, err := c.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	swap(t, keyPath, key)
	swap(t, certPath, testpki.PEM(c.Cert))
}

// The SIH listener's certificate (listen.tls) renewed to an expired or a
// not-yet-valid certificate (the old one copied back by a script, a
// certificate issued with a clock in the future): it was put in service,
// and every SIH client's handshake failed from then on. It must be refused
// like an expired ORG certificate, the one in service kept.
func TestListenerRenewalOutOfItsValidityIsRefused(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name              string
		notBefore, notAft time.Time
		want              string
	}{
		{"expired", now.AddDate(-2, 0, 0), now.Add(-time.Hour), "expired"},
		{"not yet valid", now.Add(24 * time.Hour), now.AddDate(1, 0, 0), "not valid before"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			certPath, keyPath := dir+"/sih.pem", dir+"/sih.key"
			writeListenerPair(t, certPath, keyPath, now.Add(-time.Hour), now.AddDate(1, 0, 0))
			w := newWorld(t, func(c *config.Config) { c.Listen.TLS = &config.ListenTLS{Cert: certPath, Key: keyPath} })
			rt := &countingRuntime{}
			r, m, logs := w.reloaderWithSign(t, rt, nil)
			runReloader(t, r)
			writeListenerPair(t, certPath, keyPath, tc.notBefore, tc.notAft)
			// The certificate and the key land one after the other: the
			// reloader may first see the new certificate with the old key
			// (refused as a mismatch), then the pair, refused for its dates.
			wait(t, "the renewal to be judged whole", func() bool {
				return testutil.ToFloat64(m.CertificateReloads.WithLabelValues("listen.tls", "ok")) > 0 ||
					strings.Contains(logs.String(), tc.want)
			})
			rt.mu.Lock()
			n := rt.listener
			rt.mu.Unlock()
			if n != 0 {
				t.Fatalf("an %s listener certificate was put in service", tc.name)
			}
			if !strings.Contains(logs.String(), tc.want) {
				t.Errorf("the refusal does not say %q:\n%s", tc.want, logs.String())
			}
		})
	}
}

// runReloader runs r until the test ends.
func runReloader(t *testing.T, r *Reloader) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}
