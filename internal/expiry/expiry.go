// Package expiry watches the expiry of the certificates roc-proxy uses:
// the establishment's own (identity.auth, identity.sign,
// audit.checkpoint_key), the SIH listener's, and every authority of the
// trust bundles. It exports each one's end of validity
// (roc_proxy_certificate_not_after_timestamp_seconds), logs a warning for those that
// end within WarnBefore, and keeps these warnings for /healthz.
//
// It owns those series and warnings only: it never loads, renews or
// refuses a certificate (the composition root and the reloader do, and
// tell it), and never decides readiness.
package expiry

import (
	"crypto/x509"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// WarnBefore is how long before expiry a certificate is warned about: the
// authority e-mails the administrators one month before.
const WarnBefore = 30 * 24 * time.Hour

// bundlePrefix starts the source of a trust bundle's certificates.
const bundlePrefix = "trust_bundles."

// Watch is the expiry of the certificates in use. Its methods may be
// called from any goroutine.
type Watch struct {
	notAfter *prometheus.GaugeVec // labels: source, subject, serial
	log      *zap.Logger

	mu       sync.Mutex
	warnings map[string]string // certificate -> expiry warning
	// bundleSeries are the series of the trust bundles' certificates
	// (source, subject, serial), removed when a reload drops them.
	bundleSeries map[[3]string]bool
}

// New is a Watch exporting to notAfter (labels source, subject, serial)
// and warning on log.
func New(notAfter *prometheus.GaugeVec, log *zap.Logger) *Watch {
	return &Watch{notAfter: notAfter, log: log, warnings: map[string]string{}}
}

// Certificate exports c's expiry under source and warns when it is near.
// For the establishment's own certificates and the listener's (one
// certificate per source) a renewal replaces the series and the warning of
// the certificate it renews.
func (w *Watch) Certificate(source string, c *x509.Certificate, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.certificate(source, c, now)
}

func (w *Watch) certificate(source string, c *x509.Certificate, now time.Time) {
	subject := trust.SubjectDN(c)
	key := source + "|" + c.SerialNumber.Text(16)
	if !strings.HasPrefix(source, bundlePrefix) {
		// One certificate per source (identity.*, listen.tls): a renewal
		// replaces the series of the certificate it renews, whose expiry
		// would keep the expiry alert firing.
		key = source
		w.notAfter.DeletePartialMatch(prometheus.Labels{"source": source})
	}
	w.notAfter.WithLabelValues(source, subject, c.SerialNumber.Text(16)).Set(float64(c.NotAfter.Unix()))
	delete(w.warnings, key)
	left := c.NotAfter.Sub(now)
	if left < WarnBefore {
		w.warnings[key] = fmt.Sprintf("%s: certificate %s expires on %s (%d days left)", source, subject, c.NotAfter.UTC().Format(time.DateOnly), int(left.Hours()/24))
		w.log.Warn("certificate expires soon", zap.String("source", source), zap.String("subject", subject),
			zap.Time("not_after", c.NotAfter), zap.Int("days_left", int(left.Hours()/24)))
	}
}

// Bundles exports the expiry of every certificate of store's bundles and
// warns of those near it, and removes the series and warnings of
// certificates no longer in any bundle (after a reload).
func (w *Watch) Bundles(store *trust.Store, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	series := map[[3]string]bool{}
	warnKeys := map[string]bool{}
	for _, name := range store.Names() {
		b := store.Bundle(name)
		source := bundlePrefix + name
		for _, c := range append(append([]*x509.Certificate(nil), b.Anchors...), b.Intermediates...) {
			serial := c.SerialNumber.Text(16)
			series[[3]string{source, trust.SubjectDN(c), serial}] = true
			warnKeys[source+"|"+serial] = true
			w.certificate(source, c, now)
		}
	}
	for s := range w.bundleSeries {
		if !series[s] {
			w.notAfter.DeleteLabelValues(s[0], s[1], s[2])
		}
	}
	w.bundleSeries = series
	for k := range w.warnings {
		if strings.HasPrefix(k, bundlePrefix) && !warnKeys[k] {
			delete(w.warnings, k)
		}
	}
}

// Warnings lists the current expiry warnings, sorted.
func (w *Watch) Warnings() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.warnings))
	for _, msg := range w.warnings {
		out = append(out, msg)
	}
	sort.Strings(out)
	return out
}
