package helm_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"

	"github.com/roc-proxy/roc-proxy/internal/metrics"
)

// pendingMerge are metrics queried by the alerts and the dashboard that
// other branches add (merged into main after this one): the lead removes
// this list when merging them. The test fails once one is exported, so
// the list cannot go stale.
var pendingMerge = map[string]string{}

// prometheusMade are series Prometheus makes itself for every target.
var prometheusMade = []string{"up"}

var (
	binaryOnce     sync.Once
	binaryFamilies map[string]bool
	binaryErr      string
)

// exportedMetrics is what roc-proxy exports: the families of a real
// /metrics scrape of the built binary running its demo (simulated
// partners, signing routes, audit log, revocation), and the families its
// registry declares that only appear once something happens (a revocation
// fetch error, a stale answer used) with their histogram series.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	binaryOnce.Do(func() { binaryFamilies, binaryErr = scrapeDemo() })
	if binaryErr != "" {
		t.Fatal(binaryErr)
	}
	names := map[string]bool{}
	for n := range binaryFamilies {
		names[n] = true
	}
	for n := range declaredMetrics(t) {
		names[n] = true
	}
	return names
}

// scrapeDemo builds roc-proxy, runs "roc-proxy demo --keep-running" and
// reads its admin port's /metrics once the demo has played.
func scrapeDemo() (map[string]bool, string) {
	dir, err := os.MkdirTemp("", "roc-proxy-metrics-")
	if err != nil {
		return nil, err.Error()
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "roc-proxy")
	build := exec.Command("go", "build", "-o", bin, "github.com/roc-proxy/roc-proxy/cmd/roc-proxy")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, "building roc-proxy: " + err.Error() + "\n" + string(out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo", "--keep-running")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err.Error()
	}
	if err := cmd.Start(); err != nil {
		return nil, err.Error()
	}
	defer func() { cancel(); cmd.Wait() }()
	metricsURL := regexp.MustCompile(`curl -s (http://127\.0\.0\.1:[0-9]+/metrics)`)
	sc := bufio.NewScanner(stdout)
	var url string
	var seen []string
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if m := metricsURL.FindStringSubmatch(sc.Text()); m != nil {
			url = m[1]
			break
		}
	}
	if url == "" {
		return nil, "the demo printed no metrics URL:\n" + strings.Join(seen, "\n")
	}
	go func() { // keep the pipe drained
		for sc.Scan() {
		}
	}()
	resp, err := http.Get(url)
	if err != nil {
		return nil, err.Error()
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, "/metrics: " + err.Error()
	}
	names := map[string]bool{}
	for name, f := range families {
		names[name] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[name+s] = true
			}
		}
	}
	return names, ""
}

// declaredMetrics are the names of every collector of metrics.New and of
// the audit volume collector, from their descriptions.
func declaredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	m, err := metrics.New(prometheus.NewRegistry(), metrics.BuildInfo{})
	if err != nil {
		t.Fatal(err)
	}
	var collectors []prometheus.Collector
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		if c, ok := v.Field(i).Interface().(prometheus.Collector); ok {
			collectors = append(collectors, c)
		}
	}
	collectors = append(collectors, metrics.NewAuditVolume(t.TempDir()))
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for _, c := range collectors {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fq.FindStringSubmatch(d.String()); m != nil {
				for _, s := range []string{"", "_bucket", "_sum", "_count"} {
					names[m[1]+s] = true
				}
			}
		}
	}
	return names
}

var (
	promqlKeywords   = []string{"and", "or", "unless", "bool", "offset", "inf", "nan"}
	promqlLabelLists = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}
)

// queriedMetrics are the metric names a PromQL expression selects: the
// identifiers that are neither functions, aggregations, keywords, label
// names (in {...}, by (...) and the like), strings, numbers, durations nor
// Grafana variables.
func queriedMetrics(expr string) []string {
	var names []string
	isStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isPart := func(c byte) bool { return isStart(c) || c >= '0' && c <= '9' }
	skipTo := func(i int, open, close byte) int { // i at open; returns the index after its close
		depth := 0
		for ; i < len(expr); i++ {
			switch c := expr[i]; {
			case c == '"' || c == '\'' || c == '`':
				i = skipString(expr, i) - 1
			case c == open:
				depth++
			case c == close:
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipString(expr, i)
		case c == '{':
			i = skipTo(i, '{', '}')
		case c == '[':
			i = skipTo(i, '[', ']')
		case c == '$':
			i++
			for i < len(expr) && (isPart(expr[i]) || expr[i] == '{' || expr[i] == '}') {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isPart(expr[i]) || expr[i] == '.') {
				i++
			}
		case isStart(c):
			j := i
			for j < len(expr) && isPart(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && expr[k] == ' ' {
				k++
			}
			next := byte(0)
			if k < len(expr) {
				next = expr[k]
			}
			// An aggregation with its grouping first: sum by (x) (...).
			nextWord := strings.ToLower(expr[k:min(len(expr), k+8)])
			aggregation := strings.HasPrefix(nextWord, "by ") || strings.HasPrefix(nextWord, "by(") || strings.HasPrefix(nextWord, "without")
			switch {
			case aggregation:
			case slices.Contains(promqlLabelLists, strings.ToLower(word)) && next == '(':
				j = skipTo(k, '(', ')')
			case next == '(' || slices.Contains(promqlKeywords, strings.ToLower(word)) || slices.Contains(promqlLabelLists, strings.ToLower(word)):
			default:
				names = append(names, word)
			}
			i = j
		default:
			i++
		}
	}
	return names
}

func skipString(s string, i int) int {
	q := s[i]
	for i++; i < len(s); i++ {
		if s[i] == '\\' && q != '`' {
			i++
			continue
		}
		if s[i] == q {
			return i + 1
		}
	}
	return i
}

func TestQueriedMetrics(t *testing.T) {
	for expr, want := range map[string]string{
		`sum by (route, code) (rate(roc_proxy_http_requests_total{code=~"5..",route!="x"}[5m]))`: "roc_proxy_http_requests_total",
		`up{job="a"} == 1 unless on(instance) roc_proxy_build_info{job="a"}`:                     "up roc_proxy_build_info",
		`a / on(namespace, route) group_left() b > 0.05`:                                         "a b",
		`histogram_quantile(0.99, sum by (le) (rate(x_bucket{pod=~"$pod"}[$__rate_interval])))`:  "x_bucket",
		`count(x == 0) or vector(0)`: "x",
		`predict_linear(free{a="}"}[6h], 4 * 86400) < 0 and size offset 1h > 1e9`:                                 "free size",
		`(roc_proxy_certificate_not_after_timestamp_seconds{source!~"trust_bundles[.].*"} - time()) / 86400 < 30`: "roc_proxy_certificate_not_after_timestamp_seconds",
		`absent(up{job="x"}) OR Inf`:                                          "up",
		`sum by (route) (rate(a[5m])) / sum without(pod) (b) + max by(x) (c)`: "a b c",
	} {
		if got := strings.Join(queriedMetrics(expr), " "); got != want {
			t.Errorf("%s: %q, want %q", expr, got, want)
		}
	}
}

// checkQueried fails for each metric a query selects that roc-proxy does
// not export (nor Prometheus makes, nor another branch adds).
func checkQueried(t *testing.T, what string, exprs map[string]string) {
	t.Helper()
	exported := exportedMetrics(t)
	used := map[string]bool{}
	for where, expr := range exprs {
		names := queriedMetrics(expr)
		if len(names) == 0 {
			t.Errorf("%s %s: no metric found in %q", what, where, expr)
		}
		for _, n := range names {
			used[n] = true
			if exported[n] || slices.Contains(prometheusMade, n) {
				continue
			}
			if _, ok := pendingMerge[n]; ok {
				continue
			}
			t.Errorf("%s %s queries %s, which roc-proxy does not export", what, where, n)
		}
	}
	var pending []string
	for n, branch := range pendingMerge {
		if exported[n] {
			t.Errorf("%s is exported now: remove it from pendingMerge (%s)", n, branch)
		}
		if used[n] {
			pending = append(pending, n)
		}
	}
	sort.Strings(pending)
	t.Logf("%s: %d metrics queried; from other branches pending merge: %s", what, len(used), strings.Join(pending, ", "))
}

// Every metric an alert queries exists in the binary's /metrics.
func TestAlertMetricsExist(t *testing.T) {
	exprs := map[string]string{}
	for _, r := range alertRules(ruleGroups(t, "-f", "testdata/pass-through.yaml")) {
		exprs[r["alert"].(string)] = r["expr"].(string)
	}
	checkQueried(t, "alert", exprs)
}

// grafanaDashboard is the part of a dashboard the checks read.
type grafanaDashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name    string         `json:"name"`
			Type    string         `json:"type"`
			Query   any            `json:"query"`
			Current map[string]any `json:"current"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		FieldConfig struct {
			Defaults struct {
				Unit string `json:"unit"`
			} `json:"defaults"`
		} `json:"fieldConfig"`
		Targets []struct {
			Expr       string `json:"expr"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"targets"`
	} `json:"panels"`
}

// renderedDashboard is the dashboard of the ConfigMap the chart renders.
func renderedDashboard(t *testing.T, args ...string) grafanaDashboard {
	t.Helper()
	objs := renderObjs(t, append([]string{"-f", "testdata/pass-through.yaml", "--set", "grafanaDashboard.enabled=true"}, args...)...)
	var cm *corev1.ConfigMap
	for k, o := range objs {
		if strings.HasSuffix(k, "-dashboard") {
			cm = o.(*corev1.ConfigMap)
		}
	}
	if cm == nil {
		t.Fatal("no dashboard ConfigMap")
	}
	var d grafanaDashboard
	if err := json.Unmarshal([]byte(cm.Data["roc-proxy.json"]), &d); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	return d
}

// The dashboard parses, picks its data source, namespace and pod, has a
// unit on every panel, a uid per release, the panels ops need, and queries
// only metrics roc-proxy exports.
func TestDashboard(t *testing.T) {
	d := renderedDashboard(t)
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	for _, v := range []string{"datasource", "namespace", "pod"} {
		if !vars[v] {
			t.Errorf("no %s variable", v)
		}
	}
	exprs := map[string]string{}
	titles := map[string]bool{}
	for _, p := range d.Panels {
		titles[p.Title] = true
		if p.FieldConfig.Defaults.Unit == "" {
			t.Errorf("panel %q has no unit", p.Title)
		}
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the datasource variable: %+v", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for i, q := range p.Targets {
			if q.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q query %d does not use the datasource variable", p.Title, i)
			}
			if !strings.Contains(q.Expr, `namespace="$namespace"`) || !strings.Contains(q.Expr, `pod=~"$pod"`) {
				t.Errorf("panel %q query %d ignores the namespace or pod variable: %s", p.Title, i, q.Expr)
			}
			exprs[p.Title+"#"+string(rune('A'+i))] = q.Expr
		}
	}
	for _, want := range []string{"Readiness by pod", "CRL time to nextUpdate", "OCSP freshness per authority", "Revocation status age per authority",
		"Certificate reloads (last hour)", "Configuration reloads (last hour)", "Audit records by type", "Audit failures by stage (last hour)",
		"Audit sync p99", "Audit shipping lag", "Audit volume free", "Days before certificate expiry", "Requests by route and code"} {
		if !titles[want] {
			t.Errorf("no panel %q", want)
		}
	}
	checkQueried(t, "dashboard panel", exprs)

	// One uid per release (Grafana keys dashboards by uid: two releases
	// would overwrite each other), within Grafana's 40 characters.
	other := renderedDashboard(t, "--namespace", "autre")
	long := renderedDashboard(t, "--namespace", "a-very-long-namespace-name-for-a-hospital-site")
	if d.UID == other.UID || d.UID == "" || len(long.UID) > 40 || long.UID == d.UID {
		t.Errorf("uids %q, %q, %q: want one per release, at most 40 characters", d.UID, other.UID, long.UID)
	}
	if !strings.Contains(d.Title, "roc/rel") {
		t.Errorf("title %q does not name the release", d.Title)
	}
}
