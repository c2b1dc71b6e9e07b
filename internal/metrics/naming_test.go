package metrics

import (
	"bytes"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/roc-proxy/roc-proxy/internal/referee"
)

// recording is a Registerer that keeps what is registered on it.
type recording struct{ collectors []prometheus.Collector }

func (r *recording) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *recording) MustRegister(cs ...prometheus.Collector) {
	r.collectors = append(r.collectors, cs...)
}
func (r *recording) Unregister(prometheus.Collector) bool { return false }

var variableLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)

// everySeries registers every collector of New and the audit volume's on
// a fresh registry, with one series in each vector (a vector without a
// series is not gathered, and its name would go unchecked), and returns
// what a scrape shows and how many metrics were declared.
func everySeries(t *testing.T) (families []*dto.MetricFamily, declared int, reg *prometheus.Registry) {
	t.Helper()
	rec := &recording{}
	if _, err := New(rec, BuildInfo{Version: "v1", Revision: "abc"}); err != nil {
		t.Fatal(err)
	}
	rec.collectors = append(rec.collectors, NewAuditVolume(t.TempDir()))
	reg = prometheus.NewPedanticRegistry()
	for _, c := range rec.collectors {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			s := d.String()
			if strings.Contains(s, `fqName: "go_`) || strings.Contains(s, `fqName: "process_`) {
				continue
			}
			declared++
			var values []string
			if m := variableLabels.FindStringSubmatch(s); m != nil && m[1] != "" {
				for range strings.Split(m[1], ",") {
					values = append(values, "x")
				}
			}
			switch v := c.(type) {
			case *prometheus.CounterVec:
				v.WithLabelValues(values...).Inc()
			case *prometheus.GaugeVec:
				v.WithLabelValues(values...).Set(1)
			case *prometheus.HistogramVec:
				v.WithLabelValues(values...).Observe(1)
			case *prometheus.SummaryVec:
				v.WithLabelValues(values...).Observe(1)
			}
		}
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return families, declared, reg
}

var (
	snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	// A name ending with a quantity of time or size lacks its unit: the
	// base unit (seconds, bytes) follows it, as Prometheus asks
	// (ship_lag_records, body_memory_refusals_total name theirs).
	timeWord = regexp.MustCompile(`_(duration|age|lag|latency|timeout|interval|timestamp|time|elapsed)$`)
	sizeWord = regexp.MustCompile(`_(size|memory|free|length)$`)
	badUnit  = regexp.MustCompile(`_(milliseconds|microseconds|nanoseconds|minutes|hours|days|ms|us|ns|kilobytes|megabytes|kb|mb|kib|mib|percent)(_|$)`)
)

// conventionProblems checks a family against Prometheus' naming
// conventions (prometheus.io/docs/practices/naming) and roc-proxy's
// (roc_proxy_<subsystem>_<name>_<unit>): snake_case names and labels,
// counters and only counters ending _total, time in seconds, sizes in
// bytes, no other unit, timestamps as _timestamp_seconds.
func conventionProblems(f *dto.MetricFamily) []string {
	name := f.GetName()
	var problems []string
	add := func(msg string) { problems = append(problems, name+": "+msg) }
	if !strings.HasPrefix(name, "roc_proxy_") {
		add("lacks the roc_proxy_ prefix")
	}
	if !snakeCase.MatchString(name) {
		add("not snake_case")
	}
	base := strings.TrimSuffix(name, "_total")
	switch isCounter := f.GetType() == dto.MetricType_COUNTER; {
	case isCounter && base == name:
		add("a counter not ending _total")
	case !isCounter && base != name:
		add("_total on a " + strings.ToLower(f.GetType().String()))
	}
	if badUnit.MatchString(base) {
		add("a unit that is not a base unit (seconds, bytes)")
	}
	if timeWord.MatchString(base) {
		add("a time without its unit (_seconds)")
	}
	if strings.Contains(base, "_timestamp") && !strings.HasSuffix(base, "_timestamp_seconds") {
		add("a timestamp not in _timestamp_seconds")
	}
	if sizeWord.MatchString(base) {
		add("a size without its unit (_bytes)")
	}
	if strings.Contains(base, "_bytes_") || strings.Contains(base, "_seconds_") {
		add("the unit is not the last word")
	}
	if f.GetType() == dto.MetricType_HISTOGRAM && !strings.HasSuffix(base, "_seconds") && !strings.HasSuffix(base, "_bytes") {
		add("a histogram without its unit")
	}
	seen := map[string]bool{}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if !seen[l.GetName()] && !snakeCase.MatchString(l.GetName()) {
				add("label " + l.GetName() + " not snake_case")
			}
			seen[l.GetName()] = true
		}
	}
	return problems
}

// TestMetricNamesFollowPrometheusConventions holds every metric roc-proxy
// declares, each with a series, to Prometheus' conventions three times:
// the checks above, client_golang's linter (promlint), and promtool check
// metrics on the scrape (the referee Prometheus' own users run).
func TestMetricNamesFollowPrometheusConventions(t *testing.T) {
	families, declared, reg := everySeries(t)
	var ours []*dto.MetricFamily
	for _, f := range families {
		if n := f.GetName(); !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") {
			ours = append(ours, f)
		}
	}
	if len(ours) != declared || declared < 40 {
		t.Fatalf("%d metrics declared, %d gathered: some went unchecked", declared, len(ours))
	}
	for _, f := range ours {
		for _, p := range conventionProblems(f) {
			t.Error(p)
		}
	}
	problems, err := promlint.NewWithMetricFamilies(ours).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	bin, ok := referee.Find(t, "promtool", "Debian package prometheus")
	if !ok {
		return
	}
	var scrape bytes.Buffer
	enc := expfmt.NewEncoder(&scrape, expfmt.NewFormat(expfmt.TypeTextPlain))
	gathered, _ := reg.Gather()
	for _, f := range gathered {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = &scrape
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// The checks above catch what they say: each of these names breaks one
// convention.
func TestConventionChecksCatchBadNames(t *testing.T) {
	counter, gauge, histogram := dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_HISTOGRAM
	for name, typ := range map[string]*dto.MetricType{
		"roc_proxy_http_requests":                   &counter,
		"roc_proxy_http_open_total":                 &gauge,
		"roc_proxy_http_request_duration_ms":        &histogram,
		"roc_proxy_audit_sync_duration":             &histogram,
		"roc_proxy_revocation_status_age_minutes":   &gauge,
		"roc_proxy_certificate_not_after_timestamp": &gauge,
		"roc_proxy_http_bodyMemory_bytes":           &gauge,
		"roc_proxy_audit_volume_free":               &gauge,
		"http_requests_total":                       &counter,
		"roc_proxy_http_request_bytes_total_x":      &counter,
	} {
		f := &dto.MetricFamily{Name: &name, Type: typ}
		if len(conventionProblems(f)) == 0 {
			t.Errorf("%s (%s) passes the checks", name, typ)
		}
	}
}
