// Package metrics declares every Prometheus collector of roc-proxy in one
// struct, each registered where it is declared (promauto.With), once, on a
// registry the caller provides.
//
// It never registers on the default registry and holds no global state;
// components receive the *Metrics they need.
package metrics

import (
	"fmt"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
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
	// ConfigReloads counts configuration reloads (SIGHUP) by result (ok;
	// error: the running configuration is kept).
	ConfigReloads *prometheus.CounterVec
	// CertificateReloads counts reloads of renewed certificate files by
	// source and result (ok, error: the old material is kept).
	CertificateReloads *prometheus.CounterVec
	// CertificateRefused is 1 per source while its files on disk are ones
	// a reload refused (the previous certificate is in use, and a restart
	// would fail on them), 0 once files it accepts replace them.
	CertificateRefused *prometheus.GaugeVec
	// ConfigRefused is 1 while the configuration (or a trust bundle) on
	// disk is one a reload refused, 0 once a reload succeeds.
	ConfigRefused prometheus.Gauge
	// Forbidden counts refused SIH requests by reason (client_address,
	// destination).
	Forbidden *prometheus.CounterVec
	// BodyMemory is the memory held by request and response bodies in
	// flight, across all requests (bounded by server.max_body_memory).
	BodyMemory prometheus.Gauge
	// BodyMemoryRefused counts requests refused (503) because the bodies
	// in flight had reached server.max_body_memory.
	BodyMemoryRefused prometheus.Counter
	// ConnectionsOpen is the number of open SIH connections.
	ConnectionsOpen prometheus.Gauge
	// ConnectionsLimited counts SIH connections that waited for a free
	// slot because server.max_connections were open.
	ConnectionsLimited prometheus.Counter

	// RevocationChecks counts certificate status checks by result (good,
	// revoked, unknown) and deciding source (ocsp, crl, none).
	RevocationChecks *prometheus.CounterVec
	// RevocationSyncFetches counts fetches made while a request waited
	// (first contact, or everything cached stale): zero once warm.
	RevocationSyncFetches *prometheus.CounterVec
	// RevocationFetches counts successful fetches by source.
	RevocationFetches *prometheus.CounterVec
	// RevocationFetchErrors counts failed fetches by source, reason,
	// authority and URL (URLs come from the configuration and from
	// certificates the trusted authorities issued: bounded).
	RevocationFetchErrors *prometheus.CounterVec
	// RevocationNotModified counts CRL fetches answered 304 Not Modified.
	RevocationNotModified *prometheus.CounterVec
	// RevocationGraceUses counts checks answered from an answer past its
	// nextUpdate, within the grace, while its refresh fails.
	RevocationGraceUses *prometheus.CounterVec
	// RevocationOCSPNextUpdate is, per authority, the earliest nextUpdate
	// of the OCSP answers cached for certificates in use (0: none).
	RevocationOCSPNextUpdate *prometheus.GaugeVec
	// RevocationStatusAge is, per authority, the age of the oldest status
	// of a certificate in use (time since a source last answered for it).
	RevocationStatusAge *prometheus.GaugeVec
	// RevocationPooledRefusals counts requests refused on a pooled
	// connection, and pooled connections closed, because the partner's
	// chain is now revoked or its status unusable.
	RevocationPooledRefusals *prometheus.CounterVec
	// RevocationCacheEntries is the number of cached OCSP answers and CRLs.
	RevocationCacheEntries *prometheus.GaugeVec
	// RevocationThisUpdate and RevocationNextUpdate are the thisUpdate and
	// nextUpdate (Unix time) of each cached CRL, by URL.
	RevocationThisUpdate *prometheus.GaugeVec
	RevocationNextUpdate *prometheus.GaugeVec
	// RevocationOwnStatus is 1 for the current status (good, revoked,
	// unknown) of each of the establishment's own certificates, by role.
	RevocationOwnStatus *prometheus.GaugeVec

	// TokensSigned counts SAML assertions signed with ORG_SIGN, by route
	// and profile.
	TokensSigned *prometheus.CounterVec
	// TokenCache counts token cache lookups by route and result (hit,
	// miss).
	TokenCache *prometheus.CounterVec
	// ResponseSignatures counts checks of partners' signed answers by
	// route and result (valid, invalid, absent).
	ResponseSignatures *prometheus.CounterVec

	// AuditRecords counts audit records written (durably) by type.
	AuditRecords *prometheus.CounterVec
	// AuditSyncSeconds observes each group commit (write + fsync).
	AuditSyncSeconds prometheus.Histogram
	// AuditFailures counts failed audit writes by stage (open, write,
	// sync): signing routes answer 503 meanwhile.
	AuditFailures *prometheus.CounterVec
	// AuditHealthy is 1 while the last audit write succeeded.
	AuditHealthy prometheus.Gauge
	// AuditPendingRecords is the number of result records waiting for
	// the disk (written again with the next batch).
	AuditPendingRecords prometheus.Gauge
	// AuditRecordsLost counts records that will never be written, by
	// type: results still refused by the disk when the log closed, or
	// beyond the pending bound. Each is also logged.
	AuditRecordsLost *prometheus.CounterVec
	// AuditShipped counts records delivered to a shipping sink (stdout,
	// syslog).
	AuditShipped *prometheus.CounterVec
	// AuditShipErrors counts failed deliveries by sink (each is retried
	// from the persisted cursor).
	AuditShipErrors *prometheus.CounterVec
	// AuditShipLagRecords and AuditShipLagSeconds: durable records not yet
	// delivered to a sink, and the age of the oldest of them.
	AuditShipLagRecords *prometheus.GaugeVec
	AuditShipLagSeconds *prometheus.GaugeVec
	// AuditChainBreaks counts the breaks in the audit chain's links found
	// at start (files altered or damaged while the proxy was down), each
	// recorded in the chain by a signed break record.
	AuditChainBreaks prometheus.Counter
	// AuditShipAnomalies counts what a sink's shipper found wrong in the
	// files, by sink and kind: altered_line (a line that is not the
	// record due, skipped) and cursor_mismatch (the record of a persisted
	// cursor no longer in the files as it was shipped).
	AuditShipAnomalies *prometheus.CounterVec

	// OutboundProxyConnects counts connections through the outbound proxy
	// by route ("revocation" for revocation fetches) and result: ok, or
	// why the proxy failed (egress reasons).
	OutboundProxyConnects *prometheus.CounterVec
}

// BuildInfo describes the running binary.
type BuildInfo struct {
	Version  string
	Revision string
}

// New creates the collectors, each registered where it is declared
// (promauto.With), with the Go runtime and process collectors, on reg: a
// fresh registry, once per process. A collector reg already has is an
// error, not a panic.
func New(reg prometheus.Registerer, bi BuildInfo) (m *Metrics, err error) {
	defer func() {
		// promauto registers with MustRegister: its panic on a
		// registration error becomes New's error.
		if r := recover(); r != nil {
			e, ok := r.(error)
			if !ok {
				panic(r)
			}
			m, err = nil, fmt.Errorf("registering metrics: %w", e)
		}
	}()
	f := promauto.With(reg)
	m = &Metrics{
		Requests: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "http", Name: "requests_total",
			Help: "SIH requests by route and HTTP status code.",
		}, []string{"route", "code"}),
		RequestDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Duration of SIH requests, from request received to response written.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route"}),
		UpstreamTLSErrors: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "upstream", Name: "tls_errors_total",
			Help: "Upstream TLS failures by route and reason.",
		}, []string{"route", "reason"}),
		CertificateNotAfter: f.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "certificate", Name: "not_after_timestamp_seconds",
			Help: "Expiry (Unix time) of each configured certificate, by configuration source and subject.",
		}, []string{"source", "subject", "serial"}),
		Ready: f.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "ready",
			Help: "1 while the SIH listener accepts requests, 0 while starting or draining.",
		}),
	}
	m.ConfigReloads = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "config", Name: "reloads_total",
		Help: "Configuration reloads (SIGHUP) by result (ok; error: the running configuration is kept).",
	}, []string{"result"})
	// Both results exist at 0 from the start: a refused reload is then an
	// increase Prometheus sees (a series appearing at 1 is not one).
	for _, result := range []string{"ok", "error"} {
		m.ConfigReloads.WithLabelValues(result)
	}
	m.CertificateReloads = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "certificate", Name: "reloads_total",
		Help: "Reloads of renewed certificate files, by source and result (ok; error: the previous material is kept).",
	}, []string{"source", "result"})
	m.CertificateRefused = f.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "certificate", Name: "refused",
		Help: "1 while the certificate files of a source are ones a reload refused (the previous certificate is in use; a restart would fail on them), 0 once accepted files replace them.",
	}, []string{"source"})
	m.ConfigRefused = f.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "config", Name: "refused",
		Help: "1 while the configuration or a trust bundle on disk is one a reload refused (the previous one runs; a restart would fail on it), 0 once a reload succeeds.",
	})
	m.Forbidden = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "http", Name: "forbidden_total",
		Help: "Refused SIH requests by reason: client_address (outside listen.allow_cidrs), destination (a host a dynamic route may not reach).",
	}, []string{"reason"})
	m.BodyMemory = f.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "http", Name: "body_memory_bytes",
		Help: "Memory held by request and response bodies in flight (bounded by server.max_body_memory).",
	})
	m.BodyMemoryRefused = f.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "http", Name: "body_memory_refusals_total",
		Help: "Requests refused with 503 because the bodies in flight had reached server.max_body_memory.",
	})
	m.ConnectionsOpen = f.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "http", Name: "connections_open",
		Help: "Open SIH connections (bounded by server.max_connections).",
	})
	m.ConnectionsLimited = f.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "http", Name: "connections_limited_total",
		Help: "SIH connections that waited for a free slot because server.max_connections were open.",
	})
	m.RevocationChecks = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "revocation", Name: "checks_total",
		Help: "Certificate revocation checks by result and deciding source.",
	}, []string{"result", "source"})
	m.RevocationSyncFetches = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "revocation", Name: "sync_fetches_total",
		Help: "Revocation fetches a request had to wait for (first contact or stale cache), by source.",
	}, []string{"source"})
	m.RevocationFetches = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "revocation", Name: "fetches_total",
		Help: "Successful OCSP and CRL fetches, by source.",
	}, []string{"source"})
	m.RevocationFetchErrors = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "revocation", Name: "fetch_errors_total",
		Help: "Failed or refused OCSP and CRL fetches, by source, reason (timeout, unavailable, too_large, invalid, stale, older_than_cached, revoked_is_final, delta_base_mismatch), authority and URL.",
	}, []string{"source", "reason", "issuer", "url"})
	m.RevocationNotModified = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "revocation", Name: "not_modified_total",
		Help: "CRL fetches answered 304 Not Modified (conditional requests), by source.",
	}, []string{"source"})
	m.RevocationGraceUses = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "revocation", Name: "grace_uses_total",
		Help: "Checks answered from an answer past its nextUpdate (within revocation.grace) because its refresh fails, by source and authority.",
	}, []string{"source", "issuer"})
	m.RevocationOCSPNextUpdate = f.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "revocation", Name: "ocsp_next_update_timestamp_seconds",
		Help: "Per authority, the earliest nextUpdate (Unix time) of the OCSP answers cached for certificates in use; 0 when none.",
	}, []string{"issuer"})
	m.RevocationStatusAge = f.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "revocation", Name: "status_age_seconds",
		Help: "Per authority, seconds since a source last answered for the least recently confirmed certificate in use (bounded by revocation.max_status_age plus check_interval when sources answer).",
	}, []string{"issuer"})
	m.RevocationPooledRefusals = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "revocation", Name: "pooled_refusals_total",
		Help: "Requests refused on a pooled keep-alive connection (action=refused) and pooled connections closed (action=closed) because the partner's chain is revoked or its status unusable, by result.",
	}, []string{"action", "result"})
	m.RevocationCacheEntries = f.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "revocation", Name: "cache_entries",
		Help: "Cached OCSP answers and CRLs.",
	}, []string{"kind"})
	m.RevocationThisUpdate = f.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "revocation", Name: "this_update_timestamp_seconds",
		Help: "thisUpdate of each cached CRL (Unix time): its age is time() minus this.",
	}, []string{"source", "url"})
	m.RevocationNextUpdate = f.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "revocation", Name: "next_update_timestamp_seconds",
		Help: "nextUpdate of each cached CRL (Unix time): stale past it.",
	}, []string{"source", "url"})
	m.RevocationOwnStatus = f.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "revocation", Name: "own_certificate_status",
		Help: "1 for the current revocation status (good, revoked, unknown) of each of the establishment's certificates, by role.",
	}, []string{"role", "status"})
	m.TokensSigned = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "token", Name: "signed_total",
		Help: "SAML assertions signed with the ORG_SIGN certificate, by route and profile.",
	}, []string{"route", "profile"})
	m.TokenCache = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "token", Name: "cache_lookups_total",
		Help: "Token cache lookups by route and result (hit, miss).",
	}, []string{"route", "result"})
	m.ResponseSignatures = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "upstream", Name: "response_signatures_total",
		Help: "Checks of partners' XML signatures on responses, by route and result (valid, invalid, absent).",
	}, []string{"route", "result"})
	m.AuditRecords = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "audit", Name: "records_total",
		Help: "Audit records written to disk, by type (open, signed, result, checkpoint).",
	}, []string{"type"})
	m.AuditSyncSeconds = f.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "audit", Name: "sync_duration_seconds",
		Help:    "Duration of each audit group commit (write and fsync).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	})
	m.AuditFailures = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "audit", Name: "failures_total",
		Help: "Failed audit writes by stage (open, write, sync); signing routes answer 503 meanwhile.",
	}, []string{"stage"})
	m.AuditHealthy = f.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "audit", Name: "healthy",
		Help: "1 while the last audit write succeeded.",
	})
	m.AuditPendingRecords = f.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "audit", Name: "pending_records",
		Help: "Result records waiting for the disk, written again with the next batch.",
	})
	m.AuditRecordsLost = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "audit", Name: "records_lost_total",
		Help: "Audit records that will never be written (the disk refused them until the log closed, or too many waited), by type; each is logged.",
	}, []string{"type"})
	m.AuditShipped = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "audit", Name: "shipped_records_total",
		Help: "Audit records delivered to a shipping sink (stdout, syslog).",
	}, []string{"sink"})
	m.AuditShipErrors = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "audit", Name: "ship_errors_total",
		Help: "Failed audit record deliveries by sink; retried from the persisted cursor.",
	}, []string{"sink"})
	m.AuditShipLagRecords = f.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "audit", Name: "ship_lag_records",
		Help: "Durable audit records not yet delivered to the sink.",
	}, []string{"sink"})
	m.AuditShipLagSeconds = f.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "audit", Name: "ship_lag_seconds",
		Help: "Age of the oldest durable audit record not yet delivered to the sink (0 when caught up).",
	}, []string{"sink"})
	info := f.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Build information; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": runtime.Version()},
	})
	info.Set(1)
	m.OutboundProxyConnects = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "outbound_proxy", Name: "connects_total",
		Help: "Connections through the outbound proxy (CONNECT tunnels; forwarded revocation fetches) by route and result.",
	}, []string{"route", "result"})
	m.AuditChainBreaks = f.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "audit", Name: "chain_breaks_total",
		Help: "Breaks in the audit chain's links found at start (files altered or damaged while the proxy was down); each is recorded by a signed break record.",
	})
	m.AuditShipAnomalies = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "audit", Name: "ship_anomalies_total",
		Help: "What a shipping sink found wrong in the audit files, by sink and kind (altered_line: a line that is not the record due, not shipped; cursor_mismatch: the record of the persisted cursor no longer in the files as shipped).",
	}, []string{"sink", "kind"})
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m, nil
}
