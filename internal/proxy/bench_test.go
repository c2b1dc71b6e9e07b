package proxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"syscall"
	"testing"
	"time"

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

// memoryPartner answers every exchange from memory: the partner of
// BenchmarkHandler, which measures roc-proxy's own work per request
// without the network, TLS and the partner's server that the other
// benchmarks include (and that a shared machine's noise dominates).
type memoryPartner struct{ answer []byte }

func (m memoryPartner) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	h := http.Header{"Content-Type": {"text/xml; charset=utf-8"}, "Content-Length": {strconv.Itoa(len(m.answer))},
		"Date": {"Tue, 01 Dec 2026 03:00:00 GMT"}, "Connection": {"keep-alive"}}
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h,
		Body: io.NopCloser(bytes.NewReader(m.answer)), ContentLength: int64(len(m.answer)), Request: req}, nil
}

// BenchmarkHandler is roc-proxy's own work for one pass-through request:
// routing, checks, header hygiene, the request id, ReverseProxy's passes,
// bodies, metrics and the JSON access log (to io.Discard), with the
// partner's exchange answered from memory. ns/op and allocs/op are what
// the handler adds to net/http's server and the partner's exchange.
func BenchmarkHandler(b *testing.B) {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey, enc.EncodeTime, enc.EncodeDuration = "ts", zapcore.ISO8601TimeEncoder, zapcore.MillisDurationEncoder
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(io.Discard)), zapcore.InfoLevel))
	f := benchFixture(b, func(o *Options) {
		o.Logger = log
		for i := range o.Routes {
			o.Routes[i].Transport = memoryPartner{answer: soapResponse}
		}
	})
	body := bytes.Repeat([]byte("<x>0123456789</x>"), 112)
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/annuaire/search", bytes.NewReader(body))
		req.Header.Set("Content-Type", "text/xml; charset=utf-8")
		req.Header.Set("Soapaction", `"urn:roc:idb#demandeDroits"`)
		req.Header.Set("User-Agent", "SIH/1.0")
		req.Header.Set("Accept", "*/*")
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		if rec.Code != 200 || rec.Body.Len() != len(soapResponse) {
			b.Fatalf("status %d, %d bytes", rec.Code, rec.Body.Len())
		}
	}
}

// reportCPU adds the process's CPU time per operation (user + system, all
// threads: the garbage collector's too), which a machine shared with
// other work disturbs less than wall time.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() { b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op") }
}
