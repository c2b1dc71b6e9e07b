package reload

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
	"go.yaml.in/yaml/v3"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/expiry"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// runtime records what the reloader asks of the proxy.
type runtime struct {
	mu      sync.Mutex
	check   func(path string) (*config.Config, *trust.Store, error)
	applied []*config.Config
	renewed []string
}

func (r *runtime) Check(path string) (*config.Config, *trust.Store, error) { return r.check(path) }
func (r *runtime) ApplyRoutes(cfg *config.Config, _ *trust.Store) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied = append(r.applied, cfg)
	return nil
}
func (r *runtime) Prefetch(context.Context, *config.Config, *trust.Store) {}
func (r *runtime) Renewed(_ context.Context, source string, _ *mtls.Identity) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.renewed = append(r.renewed, source)
}
func (r *runtime) ListenerRenewed(*tls.Certificate) {}

// world is a configuration on the shared test PKI's files, written as
// typed configuration and loaded as roc-proxy loads it.
type world struct {
	dir   string
	files *testpki.Files
	cfg   *config.Config
	store *trust.Store
	auth  *mtls.Identity
}

func newWorld(t *testing.T, edit func(*config.Config)) *world {
	t.Helper()
	pki := testpki.MustShared(t)
	dir := t.TempDir()
	files, err := pki.WriteFiles(dir, "Tr0ub4dor&3-test", "")
	if err != nil {
		t.Fatal(err)
	}
	c := &config.Config{
		Listen: config.Listen{SIH: "127.0.0.1:0", Admin: "127.0.0.1:0"},
		Identity: config.Identity{Auth: &config.CertSource{PKCS12: files.AuthP12, PasswordFile: files.PasswordFile},
			ReloadInterval: 10 * time.Millisecond},
		TrustBundles: map[string]*config.TrustBundle{"osi": {Paths: []string{files.OSIBundle}}, "sante": {Paths: []string{files.SanteBundle}}},
		Routes: []*config.Route{{Name: "idb", PathPrefix: "/idb/", Upstream: "https://127.0.0.1:1/idb", ServerName: testpki.IDBHost,
			Trust: []string{"osi"}, Revocation: config.RouteRevocation{Policy: "off"}}},
	}
	if edit != nil {
		edit(c)
	}
	text, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(text, dir)
	if err != nil {
		t.Fatal(err)
	}
	store, err := trust.LoadStore(cfg.TrustBundles)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := mtls.LoadIdentity(cfg.Identity.Auth, mtls.LoadOptions{Path: "identity.auth", Role: mtls.RoleAuthClient, Store: store, Now: time.Now, Getenv: os.Getenv})
	if err != nil {
		t.Fatal(err)
	}
	return &world{dir: dir, files: files, cfg: cfg, store: store, auth: auth}
}

func (w *world) reloader(t *testing.T, rt Runtime) (*Reloader, *metrics.Metrics) {
	t.Helper()
	m, err := metrics.New(prometheus.NewRegistry(), metrics.BuildInfo{})
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	return New(Options{Config: w.cfg, Store: w.store, Auth: w.auth, Runtime: rt, Expiry: expiry.New(m.CertificateNotAfter, log),
		Metrics: m, Logger: log, Now: time.Now, Getenv: os.Getenv}), m
}

func TestRestartSections(t *testing.T) {
	w := newWorld(t, nil)
	for _, tc := range []struct {
		name string
		edit func(*config.Config)
		want []string
	}{
		{"routes and bundles only", func(c *config.Config) { c.Routes = c.Routes[:0]; c.TrustBundles = nil }, nil},
		{"listener", func(c *config.Config) { c.Listen.SIH = "127.0.0.1:1" }, []string{"listen"}},
		{"identity and server", func(c *config.Config) {
			c.Identity.ReloadInterval = time.Hour
			c.Server.MaxConnections++
		}, []string{"identity", "server"}},
		{"global outbound proxy", func(c *config.Config) { c.OutboundProxy = &config.OutboundProxy{URL: "http://127.0.0.1:3128"} }, []string{"outbound_proxy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := *w.cfg
			tc.edit(&next)
			if got := restartSections(w.cfg, &next); !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// A reload asked for before Run waits for it (a SIGHUP during start-up is
// applied once serving); once Run has returned, ReloadConfig says so at
// once and applies nothing.
func TestReloadConfigBeforeAndAfterRun(t *testing.T) {
	w := newWorld(t, nil)
	rt := &runtime{check: func(string) (*config.Config, *trust.Store, error) { return w.cfg, w.store, nil }}
	r, m := w.reloader(t, rt)
	early := make(chan error, 1)
	go func() { early <- r.ReloadConfig(context.Background(), "roc-proxy.yaml") }()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { r.Run(ctx); close(ran) }()
	select {
	case err := <-early:
		if err != nil {
			t.Fatalf("the reload asked for before Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the reload asked for before Run was never applied")
	}
	if got := testutil.ToFloat64(m.ConfigReloads.WithLabelValues("ok")); got != 1 {
		t.Fatalf("%v reloads applied, want 1", got)
	}
	cancel()
	<-ran
	done := make(chan error, 1)
	go func() { done <- r.ReloadConfig(context.Background(), "roc-proxy.yaml") }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrStopped) {
			t.Fatalf("after Run: %v, want ErrStopped", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a reload asked for after Run returned waits")
	}
	if len(rt.applied) != 1 {
		t.Fatalf("%d route sets applied, want 1", len(rt.applied))
	}
}

// A file that changes a restart-only section is refused whole, names the
// section, and leaves roc_proxy_config_refused at 1 until a good file.
func TestReloadRefusesRestartSections(t *testing.T) {
	w := newWorld(t, nil)
	next := *w.cfg
	next.Server.ShutdownTimeout = time.Minute
	rt := &runtime{check: func(string) (*config.Config, *trust.Store, error) { return &next, w.store, nil }}
	r, m := w.reloader(t, rt)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	err := r.ReloadConfig(ctx, "next.yaml")
	var re *RestartError
	if !errors.As(err, &re) || !slices.Equal(re.Restart, []string{"server"}) || !strings.Contains(err.Error(), "nothing was applied") {
		t.Fatalf("got %v", err)
	}
	if len(rt.applied) != 0 || testutil.ToFloat64(m.ConfigRefused) != 1 {
		t.Fatalf("applied %d, refused %v", len(rt.applied), testutil.ToFloat64(m.ConfigRefused))
	}
}

// A renewal is put in service; a broken replacement is refused (metric,
// nothing renewed) and not retried until the files change again.
func TestRenewalAndBrokenFile(t *testing.T) {
	w := newWorld(t, nil)
	rt := &runtime{}
	r, m := w.reloader(t, rt)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	renewed := func() []string { rt.mu.Lock(); defer rt.mu.Unlock(); return slices.Clone(rt.renewed) }
	data, err := os.ReadFile(w.files.SignP12) // another valid PKCS#12 with the same password, refused by role
	if err != nil {
		t.Fatal(err)
	}
	swap(t, w.files.AuthP12, data)
	wait(t, "the wrong role to be refused", func() bool {
		return testutil.ToFloat64(m.CertificateReloads.WithLabelValues("identity.auth", "error")) == 1
	})
	if len(renewed()) != 0 || testutil.ToFloat64(m.CertificateRefused.WithLabelValues("identity.auth")) != 1 {
		t.Fatalf("renewed %q", renewed())
	}
	p12, err := testpki.MustShared(t).AuthCli.PKCS12(pkcs12.Modern, "Tr0ub4dor&3-test", true)
	if err != nil {
		t.Fatal(err)
	}
	swap(t, w.files.AuthP12, p12)
	wait(t, "the renewal", func() bool { return slices.Equal(renewed(), []string{"identity.auth"}) })
	if testutil.ToFloat64(m.CertificateRefused.WithLabelValues("identity.auth")) != 0 {
		t.Fatal("still refused after a good file")
	}
}

func TestRelevantFiles(t *testing.T) {
	w := newWorld(t, nil)
	fw := &fileWatch{}
	fw.follow(w.cfg)
	for name, want := range map[string]bool{
		w.files.AuthP12:                       true,
		w.files.OSIBundle:                     true,
		filepath.Join(w.dir, "..data"):        true, // the kubelet's swap of a mounted Secret
		filepath.Join(w.dir, "roc-proxy.log"): false,
	} {
		if got := fw.relevant(filepath.Clean(name)); got != want {
			t.Errorf("relevant(%s) = %v, want %v", name, got, want)
		}
	}
	if dirs := watchedDirs(w.cfg); !slices.Equal(dirs, []string{w.dir}) {
		t.Errorf("watched %q, want %q", dirs, w.dir)
	}
}

func swap(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path+".new", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

func wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
