package proxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// soapResponse is the size of a typical AMC directory answer.
var soapResponse = bytes.Repeat([]byte("<item>x</item>"), 150)

func benchFixture(b *testing.B, opts ...func(*Options)) *fixture {
	p := pki(b)
	up := startUpstream(b, p.Servers[testpki.AnnuaireHost], p.SanteRoot, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		w.Write(soapResponse)
	})
	return newFixture(b, map[string]routeOpt{
		"annuaire": {prefix: "/annuaire/", upstream: up.URL + "/ws", serverName: testpki.AnnuaireHost},
		"other":    {prefix: "/other/", upstream: up.URL, serverName: testpki.AnnuaireHost},
	}, opts...)
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

// BenchmarkPassThroughServer is the whole per-request path as the process
// runs it: a keep-alive SIH client, net/http's server reading the request
// and writing the answer, the handler, the pooled mutual-TLS exchange with
// the partner, and the access log written as JSON, as in production. Its
// CPU profile is the one cmd/roc-proxy/default.pgo is made from (see
// docs/testing-and-benchmarks.md).
func BenchmarkPassThroughServer(b *testing.B) {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey, enc.EncodeTime, enc.EncodeDuration = "ts", zapcore.ISO8601TimeEncoder, zapcore.MillisDurationEncoder
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(io.Discard)), zapcore.InfoLevel))
	f := benchFixture(b, func(o *Options) { o.Logger = log })
	srv := httptest.NewServer(f.h)
	b.Cleanup(srv.Close)
	body := bytes.Repeat([]byte("<x>0123456789</x>"), 112)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		defer client.CloseIdleConnections()
		for pb.Next() {
			resp, err := client.Post(srv.URL+"/annuaire/search", "text/xml", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
