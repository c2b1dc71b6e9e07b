// Package metrics declares every Prometheus collector of roc-proxy in one
// struct, registered once on a registry the caller provides.
//
// It never registers on the default registry and holds no global state;
// components receive the *Metrics they need.
package metrics

import (
	"fmt"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "roc_proxy"

// Metrics holds roc-proxy's collectors.
type Metrics struct {
	// Requests counts SIH requests by route and HTTP status code.
	Requests *prometheus.CounterVec
	// RequestDuration observes the whole request, SIH in to SIH out.
	RequestDuration *prometheus.HistogramVec
	// UpstreamTLSErrors counts refused or failed upstream handshakes by
	// route and reason (trust.Reason values, or handshake_failed).
	UpstreamTLSErrors *prometheus.CounterVec
	// CertificateNotAfter is the expiry of each configured certificate, as
	// a Unix time: alert on it from 30 days before.
	CertificateNotAfter *prometheus.GaugeVec
	// Ready is 1 while the SIH listener accepts requests.
	Ready prometheus.Gauge
}

// BuildInfo describes the running binary.
type BuildInfo struct {
	Version  string
	Revision string
}

// New creates the collectors and registers them, with Go runtime and process
// collectors, on reg: a fresh registry, once per process.
func New(reg prometheus.Registerer, bi BuildInfo) (*Metrics, error) {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "http", Name: "requests_total",
			Help: "SIH requests by route and HTTP status code.",
		}, []string{"route", "code"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Duration of SIH requests, from request received to response written.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route"}),
		UpstreamTLSErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "upstream", Name: "tls_errors_total",
			Help: "Upstream TLS failures by route and reason.",
		}, []string{"route", "reason"}),
		CertificateNotAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "certificate", Name: "not_after_timestamp_seconds",
			Help: "Expiry (Unix time) of each configured certificate, by configuration source and subject.",
		}, []string{"source", "subject", "serial"}),
		Ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "ready",
			Help: "1 while the SIH listener accepts requests, 0 while starting or draining.",
		}),
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Build information; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": runtime.Version()},
	})
	info.Set(1)
	for _, c := range []prometheus.Collector{m.Requests, m.RequestDuration, m.UpstreamTLSErrors, m.CertificateNotAfter, m.Ready, info,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	return m, nil
}
