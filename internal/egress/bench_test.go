package egress

import (
	"net/url"
	"testing"

	"github.com/roc-proxy/roc-proxy/config"
)

// BenchmarkUses is the decision each new connection and each revocation
// fetch takes: "httpproxy" is x/net's matching alone (what Uses was), and
// "Uses" adds the name's normalisation (case, trailing dot, localhost).
func BenchmarkUses(b *testing.B) {
	p, err := Load(&config.OutboundProxy{URL: "http://proxy.hopital.example:3128", NoProxy: []string{".hopital.example", "10.0.0.0/8", "amc.example:8443"}}, "outbound_proxy", nil)
	if err != nil {
		b.Fatal(err)
	}
	const target = "ws.amc-assurance.example:443"
	b.Run("httpproxy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.useProxy(&url.URL{Scheme: "https", Host: target})
		}
	})
	b.Run("Uses", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.Uses("https", target)
		}
	})
}
