package metrics

import (
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNew(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, BuildInfo{Version: "v1", Revision: "abc"})
	if err != nil {
		t.Fatal(err)
	}
	m.Requests.WithLabelValues("r", "200").Inc()
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP roc_proxy_http_requests_total SIH requests by route and HTTP status code.
# TYPE roc_proxy_http_requests_total counter
roc_proxy_http_requests_total{code="200",route="r"} 1
`), "roc_proxy_http_requests_total"); err != nil {
		t.Error(err)
	}
	if _, err := New(reg, BuildInfo{}); err == nil {
		t.Error("registering twice on one registry succeeded")
	}
	// Names: TestMetricNamesFollowPrometheusConventions.
}

// recorder keeps what is registered, as registered.
type recorder struct{ got []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error { r.got = append(r.got, c); return nil }
func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	r.got = append(r.got, cs...)
}
func (r *recorder) Unregister(prometheus.Collector) bool { return true }

// Every collector of Metrics is registered, exactly once: a collector
// declared and not registered would count in silence, never exported.
func TestEveryCollectorRegistered(t *testing.T) {
	rec := &recorder{}
	m, err := New(rec, BuildInfo{Version: "v", Revision: "r"})
	if err != nil {
		t.Fatal(err)
	}
	times := map[prometheus.Collector]int{}
	for _, c := range rec.got {
		times[c]++
	}
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		c, ok := v.Field(i).Interface().(prometheus.Collector)
		if !ok || v.Field(i).IsNil() {
			t.Errorf("Metrics.%s is not a collector", v.Type().Field(i).Name)
			continue
		}
		if n := times[c]; n != 1 {
			t.Errorf("Metrics.%s is registered %d times, want 1", v.Type().Field(i).Name, n)
		}
	}
	// Beyond the fields: build_info, and the Go and process collectors.
	if extra := len(rec.got) - v.NumField(); extra != 3 {
		t.Errorf("%d collectors registered beside Metrics' fields, want 3 (build_info, go, process)", extra)
	}
}

// A second New on the same registry is an error, not a panic (New is
// called by the composition root, which reports errors).
func TestNewTwiceIsAnError(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(reg, BuildInfo{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("second New panicked: %v", r)
		}
	}()
	if _, err := New(reg, BuildInfo{}); err == nil || !strings.Contains(err.Error(), "registering metrics") {
		t.Errorf("second New: %v", err)
	}
}

// The reload results exist at 0 from the start: a first refused reload
// is then an increase Prometheus sees.
func TestReloadSeriesAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(reg, BuildInfo{}); err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP roc_proxy_config_reloads_total Configuration reloads (SIGHUP) by result (ok; error: the running configuration is kept).
# TYPE roc_proxy_config_reloads_total counter
roc_proxy_config_reloads_total{result="error"} 0
roc_proxy_config_reloads_total{result="ok"} 0
`), "roc_proxy_config_reloads_total"); err != nil {
		t.Error(err)
	}
}
