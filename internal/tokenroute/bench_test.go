package tokenroute

import (
	"context"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/proxy"
	"github.com/roc-proxy/roc-proxy/internal/revocation"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// BenchmarkTokenSource is what a signing route adds to a request, cache
// hit: the token spliced into the bench harness's 2 KB envelope, and its
// signed and result records in the audit log (fsync on and off), run from
// parallel requests as the proxy does. inject-only is the injection alone,
// from the same run.
func BenchmarkTokenSource(b *testing.B) {
	p := testpki.MustShared(b)
	m, err := metrics.New(prometheus.NewRegistry(), metrics.BuildInfo{})
	if err != nil {
		b.Fatal(err)
	}
	inj := injector(b)
	checker, err := revocation.New(revocation.Options{Config: config.Revocation{}, Logger: zap.NewNop(), Metrics: m})
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><idb:demandeDroits xmlns:idb="urn:roc:idb">` +
		strings.Repeat("<x>0123456789</x>", 112) + `</idb:demandeDroits></S:Body></S:Envelope>`)
	b.Run("inject-only", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := inj.Inject(nil, body); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	for _, sync := range []bool{false, true} {
		name := "audit-nosync"
		if sync {
			name = "audit-fsync"
		}
		b.Run(name, func(b *testing.B) {
			l, err := audit.Open(audit.Options{Dir: b.TempDir(), Chain: "bench", CheckpointEvery: 1000, CheckpointInterval: time.Minute,
				Signer: audit.StaticSigner(p.Sign.Key, p.Sign.Cert), Metrics: m, NoSync: !sync})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			src := New(Options{Route: "idb", Injector: inj, Status: checker, Audit: l, PatientID: "hash"})
			b.ReportAllocs()
			b.SetParallelism(16) // the harness's 32 connections on 2 cores
			defer reportCPU(b)()
			defer reportBatches(b, m)()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					out, id, err := src.Token(proxy.TokenRequest{Ctx: context.Background(), Header: http.Header{}, Body: body,
						RequestID: "req", Client: "127.0.0.1:1234", Upstream: "https://idb.amc.test/roc/idb/"})
					if err != nil || len(out) == 0 {
						b.Error(err)
						return
					}
					src.Result("req", id, 200, time.Millisecond, "")
				}
			})
		})
	}
}

// reportBatches adds the audit records written per batch (per write and,
// with fsync, per sync): what the group commit amortises.
func reportBatches(b *testing.B, m *metrics.Metrics) func() {
	count := func() (records, batches float64) {
		for _, t := range []string{audit.TypeSigned, audit.TypeResult, audit.TypeCheckpoint, audit.TypeOpen} {
			records += testutil.ToFloat64(m.AuditRecords.WithLabelValues(t))
		}
		var d dto.Metric
		m.AuditSyncSeconds.Write(&d)
		return records, float64(d.GetHistogram().GetSampleCount())
	}
	r0, b0 := count()
	return func() {
		r1, b1 := count()
		if b1 > b0 {
			b.ReportMetric((r1-r0)/(b1-b0), "records/batch")
		}
	}
}

// reportCPU adds the process's CPU time per operation (user + system, all
// threads: the audit writer's too), which a machine shared with other
// work disturbs less than wall time.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() { b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op") }
}
