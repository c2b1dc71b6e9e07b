package saml

import (
	"context"
	"crypto/x509"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beevik/etree"

	"github.com/roc-proxy/roc-proxy/internal/saml/samltest"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// heapObjects is the heap memory held by objects, live or not yet swept
// (runtime/metrics, which does not stop the world).
func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// peakHeap runs f while sampling the heap, and returns the highest heap
// above what it was before f (after a collection).
func peakHeap(f func()) uint64 {
	runtime.GC()
	base := heapObjects()
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if h := heapObjects(); h > base && h-base > peak.Load() {
				peak.Store(h - base)
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	f()
	close(stop)
	<-done
	if h := heapObjects(); h > base && h-base > peak.Load() {
		peak.Store(h - base)
	}
	return peak.Load()
}

// TestResponsePolicyConcurrentLargeAnswers plays a partner (or whoever
// holds its TLS key) sending large answers of tiny elements to many SIH
// calls at once: parsed into a tree, each would take about 40 times its
// size. Refused before the tree is built, 8 answers of 1 MiB each in
// flight together must not grow the heap by more than a few times their
// own size.
func TestResponsePolicyConcurrentLargeAnswers(t *testing.T) {
	const workers, each = 8, 3
	body := []byte(`<S:Envelope xmlns:S="` + NSSOAP11 + `"><S:Body>` + strings.Repeat(`<a/>`, 1<<18) + `</S:Body></S:Envelope>`)
	policy := &ResponsePolicy{Now: time.Now}
	var refused atomic.Int64
	peak := peakHeap(func() {
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range each {
					if _, err := policy.Verify(context.Background(), body); err != nil {
						refused.Add(1)
					}
				}
			})
		}
		wg.Wait()
	})
	if refused.Load() != workers*each {
		t.Fatalf("%d of %d answers refused", refused.Load(), workers*each)
	}
	const bound = 32 << 20
	t.Logf("peak heap growth %.1f MiB for %d answers of %.1f MiB in flight", float64(peak)/(1<<20), workers, float64(len(body))/(1<<20))
	if peak > bound {
		t.Fatalf("the heap grew by %.0f MiB verifying %d answers of %.1f MiB at once (bound %d MiB)", float64(peak)/(1<<20), workers, float64(len(body))/(1<<20), bound>>20)
	}

	// Under the bound, an answer is parsed and its Body digested (a
	// genuine signature replayed over a padded Body): each answer in
	// flight costs at most about 1 KiB a node (BenchmarkResponsePolicyMemory
	// measures about 0.55 KiB).
	p := testpki.MustShared(t)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(p.OSIRoot.Cert)
	inter.AddCert(p.OSIServicesApplicatifs.Cert)
	const maxNodes, concurrent = 20000, 4
	padded := strings.Replace(string(samltest.SignDetached(t, amcSigner(t, p.OSIServicesApplicatifs))), "</idb:reponseDroits>",
		strings.Repeat(`<idb:ligne><idb:code>000001</idb:code></idb:ligne>`, (maxNodes-200)/3)+"</idb:reponseDroits>", 1)
	bounded := &ResponsePolicy{Roots: roots, Intermediates: inter, Now: time.Now, MaxNodes: maxNodes}
	peak = peakHeap(func() {
		var wg sync.WaitGroup
		for range concurrent {
			wg.Go(func() {
				if _, err := bounded.Verify(context.Background(), []byte(padded)); err == nil || !strings.Contains(err.Error(), "digest does not match") {
					t.Errorf("padded answer: %v", err)
				}
			})
		}
		wg.Wait()
	})
	t.Logf("peak heap growth %.1f MiB for %d answers of %d nodes (%.1f MiB) in flight", float64(peak)/(1<<20), concurrent, maxNodes, float64(len(padded))/(1<<20))
	if limit := uint64(concurrent * maxNodes << 10); peak > limit {
		t.Fatalf("the heap grew by %.0f MiB verifying %d answers of %d nodes at once (bound %d MiB)", float64(peak)/(1<<20), concurrent, maxNodes, limit>>20)
	}
}

// BenchmarkResponsePolicyMemory verifies a legitimate answer of about
// 1 MiB of small elements (signed by xmlsec1) and reports the memory it
// costs per byte of answer: alloc-B/answer-B, everything allocated (most
// of it short-lived: goxmldsig's exclusive c14n copies a map of the
// namespaces in scope for each element), tree-B/answer-B, what the parsed
// tree alone keeps alive, and peak-heap-B/answer-B, the highest the heap
// grew verifying one answer (sampled, default GOGC).
func BenchmarkResponsePolicyMemory(b *testing.B) {
	p := testpki.MustShared(b)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(p.OSIRoot.Cert)
	inter.AddCert(p.OSIServicesApplicatifs.Cert)
	answer := samltest.SignLarge(b, amcSigner(b, p.OSIServicesApplicatifs), 12000)
	policy := &ResponsePolicy{Roots: roots, Intermediates: inter, Now: time.Now}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(answer); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	runtime.KeepAlive(doc)
	tree := float64(m1.HeapAlloc-m0.HeapAlloc) / float64(len(answer))
	doc = nil
	var peak uint64
	for range 3 {
		peak = max(peak, peakHeap(func() {
			if _, err := policy.Verify(context.Background(), answer); err != nil {
				b.Fatal(err)
			}
		}))
	}
	b.SetBytes(int64(len(answer)))
	b.ReportAllocs()
	runtime.ReadMemStats(&m0)
	for b.Loop() {
		if _, err := policy.Verify(context.Background(), answer); err != nil {
			b.Fatal(err)
		}
	}
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/float64(b.N)/float64(len(answer)), "alloc-B/answer-B")
	b.ReportMetric(tree, "tree-B/answer-B")
	b.ReportMetric(float64(peak)/float64(len(answer)), "peak-heap-B/answer-B")
}

// TestResponsePolicyLargeLegitAnswer: a legitimate answer of 20,000
// elements signed by xmlsec1 verifies (goxmldsig's NSDetatch stops at
// 1,000 elements, which refused it: the bound is response_signature's
// max_nodes), and one over max_nodes or max_depth is refused before its
// tree is built, naming the setting.
func TestResponsePolicyLargeLegitAnswer(t *testing.T) {
	p := testpki.MustShared(t)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(p.OSIRoot.Cert)
	inter.AddCert(p.OSIServicesApplicatifs.Cert)
	answer := samltest.SignLarge(t, amcSigner(t, p.OSIServicesApplicatifs), 5000)
	for _, tc := range []struct {
		policy  *ResponsePolicy
		refusal string
	}{
		{&ResponsePolicy{Roots: roots, Intermediates: inter, Now: time.Now}, ""},
		{&ResponsePolicy{Roots: roots, Intermediates: inter, Now: time.Now, MaxNodes: 20000},
			"more than 20000 elements, attributes and text nodes (response_signature.max_nodes)"},
		{&ResponsePolicy{Roots: roots, Intermediates: inter, Now: time.Now, MaxDepth: 7}, "(response_signature.max_depth)"},
		{&ResponsePolicy{Roots: roots, Intermediates: inter, Now: time.Now, MaxDepth: 8}, ""},
	} {
		_, err := tc.policy.Verify(context.Background(), answer)
		if tc.refusal == "" && err != nil || tc.refusal != "" && (err == nil || !strings.Contains(err.Error(), tc.refusal)) {
			t.Errorf("max_nodes %d, max_depth %d: %v, want %q", tc.policy.MaxNodes, tc.policy.MaxDepth, err, tc.refusal)
		}
	}
}
