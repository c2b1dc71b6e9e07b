package app

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// scrape reads the admin port's /metrics as Prometheus would.
func scrape(t *testing.T, admin string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return families
}

// sample is the value of the series of family name whose labels include
// labels, and whether there is one.
func sample(families map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// seriesProxy serves a proxy with a signing route (audit log on), a route
// checking the partner's response signatures, and HTTPS towards the SIH,
// and returns its admin base URL and audit folder.
func seriesProxy(t *testing.T, signing bool, auditExtra ...string) (admin, auditDir string) {
	t.Helper()
	e := newTestEnv(t)
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) {})
	p := e.pki
	listener, err := p.IssueServer(p.OSIServeur, "roc-proxy.hospital.test", testpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := listener.KeyPEM()
	crt, keyPath := filepath.Join(e.dir, "sih.crt"), filepath.Join(e.dir, "sih.key")
	os.WriteFile(crt, testpki.PEM(listener.Chain()...), 0o600)
	os.WriteFile(keyPath, key, 0o600)
	auditDir = filepath.Join(e.dir, "audit")
	sign, token := "", ""
	if signing {
		sign = "  sign: " + yamlFlow(e.source(e.files.SignP12)) + "\n"
		token = ", token: {profile: roc}"
	}
	text := yamlf(`listen: {sih: "127.0.0.1:0", admin: "127.0.0.1:0", tls: {cert: %s, key: %s}}
identity:
  auth: {pkcs12: %s, password_file: %s}
%strust_bundles: {osi: {paths: [%s]}, sante: {paths: [%s]}}
audit: {dir: %s, chain_id: test%s}
routes:
  - {name: idb, path_prefix: /idb/, upstream: %s, server_name: %s, trust: [osi], revocation: {policy: "off"}%s}
  - {name: signed-answers, path_prefix: /sa/, upstream: %s, server_name: %s, trust: [osi], revocation: {policy: "off"},
     response_signature: {policy: log, trust: [osi]}}
`, crt, keyPath, e.files.AuthP12, e.files.PasswordFile, rawYAML(sign), e.files.OSIBundle, e.files.SanteBundle, auditDir, rawYAML(strings.Join(auditExtra, "")), up.URL, testpki.IDBHost, rawYAML(token), up.URL, testpki.IDBHost)
	path := filepath.Join(e.dir, "roc-proxy.yaml")
	os.WriteFile(path, []byte(text), 0o600)
	px := buildFile(t, path)
	_, admin = serve(t, px)
	return admin, auditDir
}

// The failure counters ops alert on exist at 0 from the start. Prometheus
// sees a series that appears at 1 with no earlier sample: increase() over
// it is 0, and the first audit failure or refused reload (then recovery)
// would never alert. Plays a fresh pod scraped before anything failed.
func TestFailureSeriesStartAtZero(t *testing.T) {
	admin, _ := seriesProxy(t, true)
	families := scrape(t, admin)
	want := []struct {
		name   string
		labels map[string]string
	}{
		{"roc_proxy_config_reloads_total", map[string]string{"result": "error"}},
		{"roc_proxy_config_reloads_total", map[string]string{"result": "ok"}},
		{"roc_proxy_certificate_reloads_total", map[string]string{"source": "identity.auth", "result": "error"}},
		{"roc_proxy_certificate_reloads_total", map[string]string{"source": "identity.sign", "result": "error"}},
		{"roc_proxy_certificate_reloads_total", map[string]string{"source": "listen.tls", "result": "error"}},
		{"roc_proxy_certificate_reloads_total", map[string]string{"source": "identity.auth", "result": "ok"}},
		{"roc_proxy_audit_failures_total", map[string]string{"stage": "open"}},
		{"roc_proxy_audit_failures_total", map[string]string{"stage": "write"}},
		{"roc_proxy_audit_failures_total", map[string]string{"stage": "sync"}},
		{"roc_proxy_audit_records_lost_total", map[string]string{"type": "result"}},
		{"roc_proxy_upstream_response_signatures_total", map[string]string{"route": "signed-answers", "result": "invalid"}},
	}
	for _, w := range want {
		v, ok := sample(families, w.name, w.labels)
		if !ok || v != 0 {
			t.Errorf("%s%v: present %v, value %v; want a series at 0 before any failure", w.name, w.labels, ok, v)
		}
	}
	// Nothing was written yet, and nothing failed: the audit log is not
	// reported unhealthy (the alert on roc_proxy_audit_healthy == 0 would
	// fire on every fresh pod).
	if v, ok := sample(families, "roc_proxy_audit_healthy", nil); !ok || v != 1 {
		t.Errorf("roc_proxy_audit_healthy: present %v, value %v; want 1 once the audit log is open", ok, v)
	}
	// A route without a response signature policy gets no series.
	if _, ok := sample(families, "roc_proxy_upstream_response_signatures_total", map[string]string{"route": "idb"}); ok {
		t.Error("response signature series for a route that checks none")
	}
}

// Pass-through routes only: there is no audit log, so nothing may say it
// is unhealthy (a permanent false alarm), and no audit failure series.
func TestNoAuditSeriesWithoutAudit(t *testing.T) {
	admin, _ := seriesProxy(t, false)
	families := scrape(t, admin)
	for _, name := range []string{"roc_proxy_audit_healthy", "roc_proxy_audit_failures_total", "roc_proxy_audit_volume_free_bytes"} {
		if families[name] != nil {
			t.Errorf("%s exported without an audit log: %v", name, families[name].GetMetric())
		}
	}
	if _, ok := sample(families, "roc_proxy_certificate_reloads_total", map[string]string{"source": "identity.sign"}); ok {
		t.Error("reload series of an identity.sign that is not configured")
	}
	if v, ok := sample(families, "roc_proxy_config_reloads_total", map[string]string{"result": "error"}); !ok || v != 0 {
		t.Errorf("config reload errors: present %v, value %v", ok, v)
	}
}

// The audit volume's free and total bytes are measured at scrape time,
// and agree with coreutils' stat -f on the same folder (an independent
// reading of statfs).
func TestAuditVolumeBytes(t *testing.T) {
	admin, dir := seriesProxy(t, true)
	families := scrape(t, admin)
	free, okFree := sample(families, "roc_proxy_audit_volume_free_bytes", nil)
	size, okSize := sample(families, "roc_proxy_audit_volume_size_bytes", nil)
	if !okFree || !okSize || free <= 0 || size < free {
		t.Fatalf("audit volume: free %v (%v), size %v (%v)", free, okFree, size, okSize)
	}
	out, err := exec.Command("stat", "-f", "-c", "%a %b %S", dir).Output()
	if err != nil {
		t.Skipf("coreutils stat unavailable: %v", err)
	}
	fields := strings.Fields(string(out))
	avail, _ := strconv.ParseFloat(fields[0], 64)
	blocks, _ := strconv.ParseFloat(fields[1], 64)
	bsize, _ := strconv.ParseFloat(fields[2], 64)
	if size != blocks*bsize {
		t.Errorf("size %v bytes, stat -f says %v", size, blocks*bsize)
	}
	// Other processes write on this file system meanwhile: 256 MiB apart
	// at most.
	if d := free - avail*bsize; d > 256<<20 || d < -256<<20 {
		t.Errorf("free %v bytes, stat -f says %v", free, avail*bsize)
	}
}

// A renewed ORG_AUTH_CLI replaces the expiry series of the certificate it
// renews: the old one (expiring soon: the reason for the renewal) would
// keep RocProxyCertificateExpiringSoon firing after the renewal, until a
// restart.
func TestRenewalReplacesExpirySeries(t *testing.T) {
	e := newTestEnv(t)
	auth := filepath.Join(e.dir, "renewable.p12")
	data, _ := os.ReadFile(e.files.AuthP12)
	os.WriteFile(auth, data, 0o600)
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) {})
	cfgPath := e.config(t, up.URL, identity(e.source(auth), map[string]any{"reload_interval": "20ms"}))
	p := buildFile(t, cfgPath)
	_, admin := serve(t, p)
	oldSerial := e.pki.AuthCli.Cert.SerialNumber.Text(16)
	if _, ok := sample(scrape(t, admin), "roc_proxy_certificate_not_after_timestamp_seconds", map[string]string{"source": "identity.auth", "serial": oldSerial}); !ok {
		t.Fatal("no expiry series for the configured ORG_AUTH_CLI")
	}
	renewed, err := e.pki.SanteOrg.Issue(testpki.Template{Subject: testpki.OrgName(testpki.AuthCliCN),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatal(err)
	}
	p12, err := renewed.PKCS12(pkcs12.Modern, testPassword, true)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, auth, p12)
	newSerial := renewed.Cert.SerialNumber.Text(16)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, ok := sample(scrape(t, admin), "roc_proxy_certificate_not_after_timestamp_seconds", map[string]string{"source": "identity.auth", "serial": newSerial}); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate's expiry is not exported")
		}
	}
	f := scrape(t, admin)["roc_proxy_certificate_not_after_timestamp_seconds"]
	n := 0
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "source" && l.GetValue() == "identity.auth" {
				n++
			}
		}
	}
	if n != 1 {
		t.Errorf("%d expiry series for identity.auth after the renewal, want 1 (the renewed certificate's)", n)
	}
}

// audit.checkpoint_key is a certificate roc-proxy reloads like ORG_SIGN:
// a refused renewal of it must be an increase Prometheus sees (its error
// series at 0 from the start), and its expiry must be exported from the
// start, not only after a first renewal (RocProxyCertificateExpiringSoon
// would stay blind to the certificate that signs the audit checkpoints).
// Plays a fresh pod with a separate checkpoint key.
func TestCheckpointKeySeries(t *testing.T) {
	e := newTestEnv(t)
	admin, _ := seriesProxy(t, true, fmt.Sprintf(", checkpoint_key: {pkcs12: %s, password_file: %s}", e.files.SignP12, e.files.PasswordFile))
	families := scrape(t, admin)
	if v, ok := sample(families, "roc_proxy_certificate_reloads_total", map[string]string{"source": "audit.checkpoint_key", "result": "error"}); !ok || v != 0 {
		t.Errorf("reload errors of audit.checkpoint_key: present %v, value %v; want a series at 0 before any renewal", ok, v)
	}
	if _, ok := sample(families, "roc_proxy_certificate_not_after_timestamp_seconds", map[string]string{"source": "audit.checkpoint_key"}); !ok {
		t.Error("no expiry series for audit.checkpoint_key: its expiry is not alerted")
	}
}

// An authority replaced in a trust bundle (the old one removed, its
// successor added: what RocProxyAuthority* alerts ask ops to do) and the
// configuration reloaded without a restart: the expiry series follow the
// bundle. Otherwise the removed authority keeps its alert firing until a
// restart, and the new one is not watched at all. Plays the bundle's
// ConfigMap updated by ops, then the reload.
func TestBundleReloadReplacesExpirySeries(t *testing.T) {
	e := newTestEnv(t)
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) {})
	bundle := filepath.Join(e.dir, "renewable-osi.pem")
	sante, _ := os.ReadFile(e.files.SanteBundle)
	osi, _ := os.ReadFile(e.files.OSIBundle)
	os.WriteFile(bundle, sante, 0o600)
	e.files.OSIBundle = bundle
	cfgPath := e.config(t, up.URL, "")
	p := buildFile(t, cfgPath)
	_, admin := serve(t, p)
	serials := func() map[string]bool {
		out := map[string]bool{}
		for _, m := range scrape(t, admin)["roc_proxy_certificate_not_after_timestamp_seconds"].GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			if have["source"] == "trust_bundles.osi" {
				out[have["serial"]] = true
			}
		}
		return out
	}
	santeRoot, osiRoot := e.pki.SanteRoot.Cert.SerialNumber.Text(16), e.pki.OSIRoot.Cert.SerialNumber.Text(16)
	if got := serials(); !got[santeRoot] || got[osiRoot] {
		t.Fatalf("before the reload, trust_bundles.osi series %v: want the authorities the file holds", got)
	}
	replaceFile(t, bundle, osi)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.ReloadConfig(ctx, cfgPath); err != nil {
		t.Fatal(err)
	}
	if got := serials(); got[santeRoot] || !got[osiRoot] {
		t.Errorf("after the reload, trust_bundles.osi series %v: want the new authorities (%s) and not the removed ones (%s)", got, osiRoot, santeRoot)
	}
	for _, w := range p.expiry.Warnings() {
		if strings.Contains(w, trust.SubjectDN(e.pki.SanteRoot.Cert)) && strings.HasPrefix(w, "trust_bundles.osi") {
			t.Errorf("/healthz still warns of a removed authority: %s", w)
		}
	}
}

// A renewed Secret that is refused stays refused until someone fixes it:
// the pod runs on the previous certificate, and its next restart (a node
// drain, a rollout) fails on the files it refused. The refusal counter
// only tells of the moment; roc_proxy_certificate_refused says it is
// still so (1 until files it accepts replace them), and
// roc_proxy_config_refused the same of a refused configuration or trust
// bundle. Plays a bad renewal left in place, then fixed.
func TestRefusedFilesStayVisible(t *testing.T) {
	e := newTestEnv(t)
	auth := filepath.Join(e.dir, "renewable.p12")
	data, _ := os.ReadFile(e.files.AuthP12)
	os.WriteFile(auth, data, 0o600)
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) {})
	cfgPath := e.config(t, up.URL, identity(e.source(auth), map[string]any{"reload_interval": "20ms"}))
	p := buildFile(t, cfgPath)
	_, admin := serve(t, p)
	value := func(name string, labels map[string]string) (float64, bool) {
		return sample(scrape(t, admin), name, labels)
	}
	authLabels := map[string]string{"source": "identity.auth"}
	waitValue := func(name string, labels map[string]string, want float64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if v, ok := value(name, labels); ok && v == want {
				return
			}
			if time.Now().After(deadline) {
				v, ok := value(name, labels)
				t.Fatalf("%s%v: present %v, value %v; want %v", name, labels, ok, v, want)
			}
		}
	}
	waitValue("roc_proxy_certificate_refused", authLabels, 0)
	waitValue("roc_proxy_config_refused", nil, 0)

	replaceFile(t, auth, []byte("not a PKCS#12 file"))
	waitValue("roc_proxy_certificate_refused", authLabels, 1)
	// Still so later: nothing fixed it.
	time.Sleep(100 * time.Millisecond)
	waitValue("roc_proxy_certificate_refused", authLabels, 1)
	renewed, err := e.pki.SanteOrg.Issue(testpki.Template{Subject: testpki.OrgName(testpki.AuthCliCN),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatal(err)
	}
	p12, err := renewed.PKCS12(pkcs12.Modern, testPassword, true)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, auth, p12)
	waitValue("roc_proxy_certificate_refused", authLabels, 0)

	original, _ := os.ReadFile(cfgPath)
	replaceFile(t, cfgPath, append(append([]byte(nil), original...), []byte("unknown_key: 1\n")...))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.ReloadConfig(ctx, cfgPath); err == nil {
		t.Fatal("invalid configuration accepted")
	}
	waitValue("roc_proxy_config_refused", nil, 1)
	replaceFile(t, cfgPath, original)
	if err := p.ReloadConfig(ctx, cfgPath); err != nil {
		t.Fatal(err)
	}
	waitValue("roc_proxy_config_refused", nil, 0)
}
