package helm_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/roc-proxy/roc-proxy/internal/referee"
)

// promtool is Prometheus' rule checker (Debian package prometheus; .ci/run
// installs it).
func promtool(t *testing.T) string {
	t.Helper()
	return referee.Path(t, "promtool", "Debian package prometheus; alert unit tests need it")
}

// ruleGroups renders the chart's PrometheusRule with args and returns its
// groups, as a Prometheus rule file's content holds them.
func ruleGroups(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	out, err := render(t, append([]string{"--show-only", "templates/prometheusrule.yaml", "--set", "prometheusRule.enabled=true"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Spec struct {
			Groups []map[string]any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(bytes.TrimPrefix(bytes.TrimSpace(out), []byte("---")), &rule); err != nil {
		t.Fatalf("PrometheusRule: %v\n%s", err, out)
	}
	if len(rule.Spec.Groups) == 0 {
		t.Fatalf("no rule group rendered:\n%s", out)
	}
	return rule.Spec.Groups
}

// alertRules lists the rules of groups.
func alertRules(groups []map[string]any) []map[string]any {
	var rules []map[string]any
	for _, g := range groups {
		for _, r := range g["rules"].([]any) {
			rules = append(rules, r.(map[string]any))
		}
	}
	return rules
}

func writeYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// promtoolTestFile copies a promtool test file into dir, with its anchors
// and merge keys resolved and its x- keys (anchor holders) dropped, and
// returns its content.
func promtoolTestFile(t *testing.T, dir, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for k := range doc {
		if strings.HasPrefix(k, "x-") {
			delete(doc, k)
		}
	}
	writeYAML(t, filepath.Join(dir, name), doc)
	return doc
}

func runPromtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// The rendered alerts pass promtool check rules, and promtool unit tests
// with synthetic series prove each one: it fires when it must (proxy down
// or not scraped, not ready, a CRL never fetched, stale revocation data,
// a failure counter's first increase, refused reloads, the audit volume
// filling, two expiry levels...) and stays silent when it must.
func TestAlertsUnderPromtool(t *testing.T) {
	promtool(t)
	groups := ruleGroups(t, "-f", "testdata/pass-through.yaml")
	dir := t.TempDir()
	writeYAML(t, filepath.Join(dir, "rules.yaml"), map[string]any{"groups": groups})
	runPromtool(t, dir, "check", "rules", "rules.yaml")
	// The firing logic is tested without annotations (promtool compares
	// them whole); the annotations have their own tests.
	var bare []map[string]any
	for _, g := range groups {
		g2 := map[string]any{}
		for k, v := range g {
			g2[k] = v
		}
		var rules []any
		for _, r := range g["rules"].([]any) {
			r2 := map[string]any{}
			for k, v := range r.(map[string]any) {
				if k != "annotations" {
					r2[k] = v
				}
			}
			rules = append(rules, r2)
		}
		g2["rules"] = rules
		bare = append(bare, g2)
	}
	writeYAML(t, filepath.Join(dir, "rules-bare.yaml"), map[string]any{"groups": bare})
	logic := promtoolTestFile(t, dir, "alerts.test.yaml")
	annotations := promtoolTestFile(t, dir, "alert-annotations.test.yaml")
	runPromtool(t, dir, "test", "rules", "alerts.test.yaml", "alert-annotations.test.yaml")

	// Every alert has a case where it fires and one where it must not.
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, doc := range []map[string]any{logic, annotations} {
		for _, tc := range doc["tests"].([]any) {
			for _, a := range tc.(map[string]any)["alert_rule_test"].([]any) {
				a := a.(map[string]any)
				name := a["alertname"].(string)
				if exp, _ := a["exp_alerts"].([]any); len(exp) > 0 {
					fires[name] = true
				} else {
					silent[name] = true
				}
			}
		}
	}
	var names []string
	for _, r := range alertRules(groups) {
		name := r["alert"].(string)
		names = append(names, name)
		if !fires[name] {
			t.Errorf("%s: no promtool test where it fires", name)
		}
		if !silent[name] {
			t.Errorf("%s: no promtool test where it stays silent", name)
		}
	}
	// A test of a name no rule has passes vacuously when it expects
	// silence (promtool compares two empty lists).
	for _, set := range []map[string]bool{fires, silent} {
		for name := range set {
			if !slices.Contains(names, name) {
				t.Errorf("promtool tests of %s, an alert the chart does not render", name)
			}
		}
	}
	sort.Strings(names)
	t.Logf("%d alerts proved by promtool: %s", len(names), strings.Join(names, ", "))
}

// Values reach the rules: the target selector, the thresholds, the
// revocation status age derived from roc-proxy's own configuration.
func TestAlertValues(t *testing.T) {
	exprs := func(args ...string) map[string]string {
		out := map[string]string{}
		for _, r := range alertRules(ruleGroups(t, append([]string{"-f", "testdata/pass-through.yaml"}, args...)...)) {
			out[r["alert"].(string)] = r["expr"].(string)
		}
		return out
	}
	def := exprs()
	for name, e := range def {
		if strings.Contains(e, "[[") {
			t.Errorf("%s: placeholder left: %s", name, e)
		}
		if name != "RocProxyRestarting" && !strings.Contains(e, `{job="rel-roc-proxy",namespace="roc"`) {
			t.Errorf("%s does not select roc-proxy's targets: %s", name, e)
		}
	}
	if !strings.Contains(def["RocProxyRevocationStatusTooOld"], "> 3660") {
		t.Errorf("default status age threshold (max_status_age 1h + check_interval 1m): %s", def["RocProxyRevocationStatusTooOld"])
	}
	got := exprs("--set", "config.revocation.max_status_age=2h30m", "--set", "config.revocation.check_interval=30s",
		"--set", "prometheusRule.targetSelector=job=\"roc\"", "--set", "prometheusRule.certificateCriticalDays=10",
		"--set", "prometheusRule.auditVolumeMinFreeMiB=1024")
	for name, want := range map[string]string{
		"RocProxyRevocationStatusTooOld":    `roc_proxy_revocation_status_age_seconds{job="roc"} > 9030`,
		"RocProxyCertificateExpiryImminent": `< 10`,
		"RocProxyAuditVolumeAlmostFull":     `< 1073741824`,
	} {
		if !strings.Contains(got[name], want) {
			t.Errorf("%s: %s, want it to contain %s", name, got[name], want)
		}
	}
	if e := exprs("--set", "prometheusRule.revocationStatusAge=90m")["RocProxyRevocationStatusTooOld"]; !strings.HasSuffix(e, "> 5400") {
		t.Errorf("prometheusRule.revocationStatusAge=90m: %s", e)
	}
	js, _ := json.Marshal(def)
	if strings.Contains(string(js), "RocProxyHigh5xxRate\":\"\"") {
		t.Error("empty expression")
	}
}

// The alerts' rate windows are 5 minutes: a scrape interval over 2m30s
// leaves one sample in them now and then, rate() returns nothing, and
// RocProxyUpstreamTLSErrors and RocProxyHigh5xxRate never last their
// "for" (the dashboard's rates go blank too). Plays a hospital whose
// Prometheus scrapes every 5 minutes to save disk.
func TestScrapeIntervalFitsAlertWindows(t *testing.T) {
	base := []string{"-f", "testdata/pass-through.yaml", "--set", "prometheusRule.enabled=true", "--set", "serviceMonitor.enabled=true",
		"--set", "networkPolicy.metricsNamespaces[0]=monitoring"}
	for _, iv := range []string{"3m", "5m", "1h", "2m31s"} {
		_, err := render(t, append(base, "--set", "serviceMonitor.interval="+iv)...)
		if err == nil || !strings.Contains(err.Error(), "serviceMonitor.interval") {
			t.Errorf("interval %s: %v; want a failure naming serviceMonitor.interval", iv, err)
		}
	}
	for _, iv := range []string{"15s", "30s", "1m", "2m30s", "500ms", "1m30s"} {
		if _, err := render(t, append(base, "--set", "serviceMonitor.interval="+iv)...); err != nil {
			t.Errorf("interval %s refused: %v", iv, err)
		}
	}
	// Without the chart's alerts, the interval is the user's business.
	if _, err := render(t, "-f", "testdata/pass-through.yaml", "--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.interval=5m",
		"--set", "networkPolicy.metricsNamespaces[0]=monitoring"); err != nil {
		t.Errorf("interval 5m without prometheusRule: %v", err)
	}
}

// A ServiceMonitor behind the chart's NetworkPolicy that admits no
// namespace on the metrics port: Prometheus can never scrape, and
// RocProxyDown fires for every pod of an install that followed the
// defaults (networkPolicy.enabled) and turned monitoring on. Plays that
// install.
func TestServiceMonitorReachesTheMetricsPort(t *testing.T) {
	_, err := render(t, "-f", "testdata/pass-through.yaml", "--set", "serviceMonitor.enabled=true")
	if err == nil || !strings.Contains(err.Error(), "networkPolicy.metricsNamespaces") {
		t.Errorf("ServiceMonitor with a NetworkPolicy closing the metrics port: %v; want a failure naming networkPolicy.metricsNamespaces", err)
	}
	for _, args := range [][]string{
		{"--set", "serviceMonitor.enabled=true", "--set", "networkPolicy.metricsNamespaces[0]=monitoring"},
		{"--set", "serviceMonitor.enabled=true", "--set", "networkPolicy.enabled=false"},
		{}, // no ServiceMonitor: Prometheus may scrape another way
	} {
		if _, err := render(t, append([]string{"-f", "testdata/pass-through.yaml"}, args...)...); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
}
