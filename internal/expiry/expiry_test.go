package expiry

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

func newWatch() (*Watch, *prometheus.GaugeVec, *observer.ObservedLogs) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "roc_proxy_certificate_not_after_seconds"}, []string{"source", "subject", "serial"})
	core, logs := observer.New(zap.WarnLevel)
	return New(g, zap.New(core)), g, logs
}

// A certificate within a month of its end is warned about (log and
// /healthz), with the days left; a renewal replaces both its series and
// its warning.
func TestWarningAndRenewal(t *testing.T) {
	pki := testpki.MustShared(t)
	w, g, logs := newWatch()
	auth := pki.AuthCli.Cert
	w.Certificate("identity.auth", auth, auth.NotAfter.Add(-90*24*time.Hour))
	if len(w.Warnings()) != 0 || logs.Len() != 0 {
		t.Fatalf("warned 90 days before: %q", w.Warnings())
	}
	if got := testutil.ToFloat64(g.WithLabelValues("identity.auth", trust.SubjectDN(auth), auth.SerialNumber.Text(16))); got != float64(auth.NotAfter.Unix()) {
		t.Fatalf("series %v, want %d", got, auth.NotAfter.Unix())
	}
	w.Certificate("identity.auth", auth, auth.NotAfter.Add(-10*24*time.Hour-time.Hour))
	warnings := w.Warnings()
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], "identity.auth: certificate "+trust.SubjectDN(auth)) || !strings.HasSuffix(warnings[0], "(10 days left)") {
		t.Fatalf("warnings %q", warnings)
	}
	if logs.FilterMessage("certificate expires soon").Len() != 1 {
		t.Fatalf("logs %v", logs.All())
	}
	// The renewal (another certificate, far from its end) replaces the
	// series and the warning.
	renewed := pki.Sign.Cert
	w.Certificate("identity.auth", renewed, renewed.NotAfter.Add(-365*24*time.Hour))
	if n := testutil.CollectAndCount(g); n != 1 {
		t.Fatalf("%d series after the renewal, want 1 (the renewed certificate's)", n)
	}
	if len(w.Warnings()) != 0 {
		t.Fatalf("the renewed certificate keeps the old warning: %q", w.Warnings())
	}
}

// A reload that drops a bundle drops its certificates' series and
// warnings, and leaves the others.
func TestBundlesFollowTheReload(t *testing.T) {
	pki := testpki.MustShared(t)
	w, g, _ := newWatch()
	osi := trust.NewBundle("osi", pki.OSIRoot.Cert, pki.OSIServeur.Cert)
	sante := trust.NewBundle("sante", pki.SanteRoot.Cert)
	late := pki.OSIServeur.Cert.NotAfter.Add(-24 * time.Hour) // every test certificate ends within a month then
	w.Certificate("identity.auth", pki.AuthCli.Cert, late)
	w.Bundles(trust.NewStore(osi, sante), late)
	if n := testutil.CollectAndCount(g); n != 4 {
		t.Fatalf("%d series, want 4", n)
	}
	if n := len(w.Warnings()); n != 4 {
		t.Fatalf("warnings %q", w.Warnings())
	}
	w.Bundles(trust.NewStore(sante), late)
	if n := testutil.CollectAndCount(g); n != 2 {
		t.Fatalf("%d series after dropping osi, want 2", n)
	}
	for _, msg := range w.Warnings() {
		if strings.HasPrefix(msg, "trust_bundles.osi") {
			t.Errorf("a dropped bundle's warning stays: %s", msg)
		}
	}
	if n := len(w.Warnings()); n != 2 {
		t.Fatalf("warnings %q, want sante's and identity.auth's", w.Warnings())
	}
}
