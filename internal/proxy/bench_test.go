package proxy

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// soapResponse is the size of a typical AMC directory answer.
var soapResponse = bytes.Repeat([]byte("<item>x</item>"), 150)

func benchFixture(b *testing.B) *fixture {
	p := pki(b)
	up := startUpstream(b, p.Servers[testpki.AnnuaireHost], p.SanteRoot, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		w.Write(soapResponse)
	})
	return newFixture(b, map[string]routeOpt{
		"annuaire": {prefix: "/annuaire/", upstream: up.URL + "/ws", serverName: testpki.AnnuaireHost},
		"other":    {prefix: "/other/", upstream: up.URL, serverName: testpki.AnnuaireHost},
	})
}

// BenchmarkPassThrough is the per-request path of a warm pass-through route:
// routing, header rewriting, forwarding over a pooled mutual-TLS connection,
// access log (disabled level excluded) and metrics.
func BenchmarkPassThrough(b *testing.B) {
	f := benchFixture(b)
	body := bytes.Repeat([]byte("a"), 2048)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/annuaire/search", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

func BenchmarkPassThroughParallel(b *testing.B) {
	f := benchFixture(b)
	body := bytes.Repeat([]byte("a"), 2048)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/annuaire/search", bytes.NewReader(body))
			rec := httptest.NewRecorder()
			f.h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Errorf("status %d", rec.Code)
				return
			}
		}
	})
}

// BenchmarkUnknownRoute is the cost of refusing a request locally.
func BenchmarkUnknownRoute(b *testing.B) {
	f := benchFixture(b)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/nothing", nil)
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
	}
}
