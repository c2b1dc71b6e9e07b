package proxy

import (
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/internal/metrics"
)

// FuzzHeaderKey holds the allocation-free comparisons of the header
// hygiene (sameHeaderKey, isRocHeader) to headerKey, the plain
// lower-case-and-underscore form, as the oracle: a name one of them
// misjudges would reach the partner, or a legitimate one be dropped.
func FuzzHeaderKey(f *testing.F) {
	for _, s := range []string{"X-Roc-User-Id", "X_Roc_User_Id", "x-roc-", "X-Roc", "X-Saml-Token", "x_saml_TOKEN",
		"X-Saml-To\u212Aen", "X-Ro\u212A-Id", "Content-Type", "X_Forwarded_For", "x-FORWARDED-", "Proxy", "Keep_Alive", "Keep-Alive", "Te", "T_e", "Forwarded\u212A", "", "-", "_", "X-ROC-_", "\xff-roc-a", "İ-roc-x"} {
		f.Add(s, "X-Saml-Token")
	}
	f.Fuzz(func(t *testing.T, name, token string) {
		key := headerKey(token)
		if got, want := sameHeaderKey(name, key), headerKey(name) == key; got != want {
			t.Errorf("sameHeaderKey(%q, %q) = %v, headerKey says %v", name, key, got, want)
		}
		if got, want := isRocHeader(name), strings.HasPrefix(headerKey(name), rocPrefix); got != want {
			t.Errorf("isRocHeader(%q) = %v, headerKey says %v", name, got, want)
		}
		if got, want := isPartnerForbidden(name), forbiddenKey(headerKey(name), strings.Contains(name, "_")); got != want {
			t.Errorf("isPartnerForbidden(%q) = %v, headerKey says %v", name, got, want)
		}
	})
}

// TestHeaderHygieneAllocationFree: stripping a SIH request's headers
// (none of them roc-proxy's) allocates nothing.
func TestHeaderHygieneAllocationFree(t *testing.T) {
	h := map[string][]string{"Content-Type": {"text/xml"}, "Soapaction": {`"x"`}, "User-Agent": {"SIH"}, "Accept": {"*/*"}, "Content-Length": {"10"}}
	keys := []string{headerKey(DefaultTokenHeader), headerKey("X-Vihf-Token")}
	conn := []string{"keep-alive"}
	if n := testing.AllocsPerRun(100, func() {
		stripTokenHeaders(h, keys)
		stripPartnerHeaders(h, nil)
		stripPartnerHeaders(h, conn)
	}); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
	if len(h) != 5 {
		t.Errorf("headers dropped: %v", h)
	}
}

// A token route whose token header is one the proxy drops on the way to
// every partner would send no token at all: New refuses it, naming it.
func TestTokenHeaderTheProxyDropsRefused(t *testing.T) {
	m, err := metrics.New(prometheus.NewRegistry(), metrics.BuildInfo{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("https://a.example/")
	for name, refused := range map[string]bool{"X-Forwarded-Saml": true, "Proxy": true, "X_Real_Ip": true, "X-Request-Id": true,
		"Keep-Alive": true, "X-Roc-Token": true, "X-Amc-Jeton": false, DefaultTokenHeader: false} {
		_, err := New(Options{Routes: []RouteSpec{{Name: "r", PathPrefix: "/r/", Upstream: u, TokenHeaders: []string{name}}},
			Logger: zap.NewNop(), Metrics: m})
		if got := err != nil && strings.Contains(err.Error(), name); got != refused {
			t.Errorf("token header %q: refused %v, want %v (%v)", name, got, refused, err)
		}
	}
}
