package app

import (
	"fmt"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
)

// zeroSeries makes the failure series ops alert on exist at 0 from the
// start. Prometheus sees a counter series that appears at 1 with no
// earlier sample: increase() over it is 0, and a first audit failure or
// refused reload, then recovery, would never alert. Series of what is not
// in use are not made (an audit health of 0 without an audit log would be
// a permanent false alarm).
func (p *Proxy) zeroSeries(cfg *config.Config) error {
	m := p.metrics
	sources := []string{"identity.auth"}
	if cfg.Identity.Sign != nil {
		sources = append(sources, "identity.sign")
	}
	if cfg.Audit.CheckpointKey != nil {
		sources = append(sources, "audit.checkpoint_key")
	}
	if t := cfg.Listen.TLS; t != nil && t.ACME == nil {
		sources = append(sources, "listen.tls")
	} else if t != nil {
		sources = append(sources, "listen.tls.acme")
	}
	for _, source := range sources {
		for _, result := range []string{"ok", "error"} {
			m.CertificateReloads.WithLabelValues(source, result)
		}
		m.CertificateRefused.WithLabelValues(source).Set(0)
	}
	if p.audit == nil {
		p.registry.Unregister(m.AuditHealthy)
		return nil
	}
	for _, stage := range audit.FailureStages {
		m.AuditFailures.WithLabelValues(stage)
	}
	// Only result records can be lost (a signed record that cannot be
	// written stops its token instead).
	m.AuditRecordsLost.WithLabelValues(audit.TypeResult)
	var sinks []string
	if cfg.Audit.Ship.Stdout {
		sinks = append(sinks, "stdout")
	}
	if cfg.Audit.Ship.Syslog != nil {
		sinks = append(sinks, "syslog")
	}
	for _, sink := range sinks {
		m.AuditShipErrors.WithLabelValues(sink)
		for _, kind := range audit.ShipAnomalies {
			m.AuditShipAnomalies.WithLabelValues(sink, kind)
		}
	}
	if err := p.registry.Register(metrics.NewAuditVolume(cfg.Audit.Dir)); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	return nil
}
