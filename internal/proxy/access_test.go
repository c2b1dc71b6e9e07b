package proxy

import (
	"net/netip"
	"strings"
	"testing"
)

var benchDynamic = &DynamicSpec{Hosts: []string{"ws.amc-one.example", "*.amc.example", "*.tiers-payant.example"}, Ports: []int{443, 8443}}

// FuzzDynamicTarget checks the no-open-relay property on any path segment:
// an accepted destination is an https URL to a host the patterns allow, on
// an allowed port, with nothing else in it.
func FuzzDynamicTarget(f *testing.F) {
	for _, s := range []string{"ws.amc.example", "WS.AMC.example:8443", "evil.example", "127.0.0.1", "ws.amc.example.", "user@ws.amc.example",
		"ws.amc.example%2eevil.example", "[::1]:443", "ws.amc.example:0443", "x.amc.example:+443", "amc.example", "ws.amc.example:99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seg string) {
		u, err := dynamicTarget(seg, benchDynamic)
		if err != nil {
			return
		}
		if u.Scheme != "https" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("%q gave %v", seg, u)
		}
		host, port := u.Hostname(), u.Port()
		if port != "" && port != "8443" {
			t.Fatalf("%q reaches port %q", seg, port)
		}
		if _, err := netip.ParseAddr(host); err == nil {
			t.Fatalf("%q reaches an IP address", seg)
		}
		if host != "ws.amc-one.example" && !strings.HasSuffix(host, ".amc.example") && !strings.HasSuffix(host, ".tiers-payant.example") {
			t.Fatalf("%q reaches %q, outside the patterns", seg, host)
		}
		if strings.ContainsAny(host, "%@/\\?#[]: ") || strings.HasSuffix(host, ".") {
			t.Fatalf("%q gave host %q", seg, host)
		}
	})
}

// BenchmarkDynamicTarget is the per-request check of a dynamic route's
// destination (allowed host, last pattern).
func BenchmarkDynamicTarget(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dynamicTarget("ws.tiers-payant.example:8443", benchDynamic); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClientAllowed is the per-request allow_cidrs check (match on the
// last of four prefixes).
func BenchmarkClientAllowed(b *testing.B) {
	prefixes := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.2.0.0/16"), netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("192.168.12.0/24")}
	b.ReportAllocs()
	for b.Loop() {
		if !clientAllowed("192.168.12.40:51234", prefixes) {
			b.Fatal("refused")
		}
	}
}
