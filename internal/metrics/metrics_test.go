package metrics

import (
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
