package revocation

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/roc-proxy/roc-proxy/internal/testclock"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// This file holds the follow-ups of the attack review of the revocation
// engine (polish-15): each test plays what got through before its fix.

// countingOCSP is a responder that answers good about every serial with
// a 7-day answer made at the clock's time, and counts the requests.
func countingOCSP(t *testing.T, ca *testpki.Cert, clk *testclock.Clock) (string, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		b := make([]byte, 4096)
		k, _ := r.Body.Read(b)
		req, err := ocsp.ParseRequest(b[:k])
		if err != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		now := clk.Now()
		w.Write(ocspAt(t, ca, ca, req.SerialNumber, ocsp.Good, 0, now.Add(-time.Minute), now.Add(7*24*time.Hour), false))
	}))
	t.Cleanup(s.Close)
	return s.URL, &n
}

// A pod restarts every 50 minutes (a crash loop, a node drained, a
// rollout): answers loaded from revocation.cache_dir must keep the time
// their source last confirmed them. Counted from the load, max_status_age
// never elapses and a partner revoked since is served for as long as the
// restarts go on (the 7-day answers are never due). Plays the restart:
// answers fetched 2 h ago, the pod starts again, the status is asked at
// once.
func TestPersistedAnswerKeepsItsFetchTime(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	t0 := time.Now()
	clk := testclock.New(t0)
	ocspURL, asked := countingOCSP(t, p.OSIServeur, clk)
	crls := newMutableServer(t)
	crls.set(crlAt(t, p.OSIServeur, 1, t0.Add(-time.Minute), t0.Add(7*24*time.Hour), nil, 0), "")
	issue := func(name, ocspURL string) []*x509.Certificate {
		leaf, err := p.OSIServeur.Issue(testpki.Template{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}, KeyBits: 1024,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, CRLURL: crls.url, OCSPURL: ocspURL})
		if err != nil {
			t.Fatal(err)
		}
		return []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}
	}
	viaOCSP, viaCRL := issue("restart-ocsp.amc.test", ocspURL), issue("restart-crl.amc.test", "")
	cfg := testConfig()
	cfg.CacheDir = t.TempDir()
	ctx := context.Background()
	c1, _ := newChecker(t, cfg, clk)
	wantStatus(t, c1.Check(ctx, viaOCSP, hard(SourceOCSP)), StatusGood, "")
	wantStatus(t, c1.Check(ctx, viaCRL, hard(SourceCRL)), StatusGood, "")
	c1.Close()

	// Two hours later (max_status_age is 1 h), the pod starts again.
	clk.Add(2 * time.Hour)
	ocspBefore, crlBefore := asked.Load(), crls.requests.Load()
	c2, _ := newChecker(t, cfg, clk)
	c2.Prefetch(ctx, []*x509.Certificate{p.OSIServeur.Cert}, nil)
	if n := asked.Load() - ocspBefore; n == 0 {
		t.Errorf("OCSP answer fetched 2 h ago, loaded at restart: not asked again (max_status_age %s counted from the load)", cfg.MaxStatusAge)
	}
	// The CRL-only partner's first request after the restart is answered
	// from the persisted CRL; the next refresh must ask the CRL again.
	wantStatus(t, c2.Check(ctx, viaCRL, hard(SourceCRL)), StatusGood, "")
	c2.RefreshDue(ctx)
	if n := crls.requests.Load() - crlBefore; n == 0 {
		t.Errorf("CRL fetched 2 h ago, loaded at restart: not asked again (max_status_age %s counted from the load)", cfg.MaxStatusAge)
	}
	c2.Close()

	// Whoever can write the folder dates every answer a century ahead:
	// that is not a confirmation, the status is still asked at once.
	b, err := os.ReadFile(filepath.Join(cfg.CacheDir, indexFile))
	if err != nil {
		t.Fatal(err)
	}
	var idx map[string]*diskEntry
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	for _, e := range idx {
		e.FetchedAt = clk.Now().AddDate(100, 0, 0)
	}
	if b, err = json.Marshal(idx); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.CacheDir, indexFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Hour)
	ocspBefore = asked.Load()
	c3, _ := newChecker(t, cfg, clk)
	c3.Prefetch(ctx, []*x509.Certificate{p.OSIServeur.Cert}, nil)
	if asked.Load() == ocspBefore {
		t.Errorf("an index dating its answers in the future postponed the re-ask")
	}
}
