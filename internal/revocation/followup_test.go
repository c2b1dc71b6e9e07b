package revocation

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/crypto/ocsp"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
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
	idx := readIndex(t, cfg.CacheDir)
	for _, e := range idx {
		e.FetchedAt = clk.Now().AddDate(100, 0, 0)
	}
	writeIndex(t, cfg.CacheDir, idx)
	clk.Add(2 * time.Hour)
	ocspBefore = asked.Load()
	c3, _ := newChecker(t, cfg, clk)
	c3.Prefetch(ctx, []*x509.Certificate{p.OSIServeur.Cert}, nil)
	if asked.Load() == ocspBefore {
		t.Errorf("an index dating its answers in the future postponed the re-ask")
	}
}

// urlSeries lists the url label values of the CRL metric series.
func urlSeries(m *metrics.Metrics) map[string]bool {
	urls := map[string]bool{}
	for _, coll := range []prometheus.Collector{m.RevocationFetchErrors, m.RevocationNextUpdate, m.RevocationThisUpdate} {
		ch := make(chan prometheus.Metric, 1000)
		coll.Collect(ch)
		close(ch)
		for pm := range ch {
			var d dto.Metric
			pm.Write(&d)
			for _, l := range d.GetLabel() {
				if l.GetName() == "url" {
					urls[l.GetValue()] = true
				}
			}
		}
	}
	return urls
}

// A partner's authority moves its CRL (the partner renews onto the new
// URL) and takes the old one down. The old URL, learnt from the
// partner's former certificate, must not be polled and alerted on (stale
// nextUpdate) for ever: once no certificate in use has named it for
// revocation.forget_after, it is forgotten with its metric series. What
// its last CRL listed stays revoked; a configured URL is never
// forgotten, whatever certificates name.
func TestLearntCRLURLForgottenOnceNoCertificateNamesIt(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	t0 := time.Now()
	clk := testclock.New(t0)
	oldCRL, newCRL, configured := newMutableServer(t), newMutableServer(t), newMutableServer(t)
	issue := func(name, crlURL string) []*x509.Certificate {
		leaf, err := p.OSIServeur.Issue(testpki.Template{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}, KeyBits: 1024,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, CRLURL: crlURL})
		if err != nil {
			t.Fatal(err)
		}
		return []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}
	}
	before, revokedOld := issue("moving.amc.test", oldCRL.url), issue("revoked-old.amc.test", oldCRL.url)
	after := issue("moving.amc.test", newCRL.url)
	oldCRL.set(crlAt(t, p.OSIServeur, 1, t0.Add(-time.Minute), t0.Add(24*time.Hour), []*big.Int{revokedOld[0].SerialNumber}, 1), "")
	configured.set(crlAt(t, p.OSIRoot, 1, t0.Add(-time.Minute), t0.Add(24*time.Hour), nil, 0), "")
	cfg := testConfig()
	cfg.ForgetAfter = 7 * 24 * time.Hour
	cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIRoot.Cert.Subject.String(), CRLURLs: []string{configured.url}}}
	c, m := newChecker(t, cfg, clk)
	ctx := context.Background()
	c.Prefetch(ctx, []*x509.Certificate{p.OSIServeur.Cert, p.OSIRoot.Cert}, nil)
	rc := c.ForRoute(hard(SourceCRL))
	wantStatus(t, rc.CheckChain(ctx, before), StatusGood, "")
	wantStatus(t, rc.CheckChain(ctx, revokedOld), StatusRevoked, SourceCRL)

	// The authority moves: new URL up, old URL down; the partner renews.
	newCRL.set(crlAt(t, p.OSIServeur, 2, t0.Add(-time.Minute), t0.Add(30*24*time.Hour), nil, 0), "")
	oldCRL.set(nil, "")
	configured.set(nil, "")
	for clk.Now().Sub(t0) < 8*24*time.Hour {
		wantStatus(t, rc.CheckChain(ctx, after), StatusGood, "")
		if d := clk.Now().Sub(t0); d > 6*24*time.Hour && d < 6*24*time.Hour+time.Hour && !urlSeries(m)[oldCRL.url] {
			t.Fatalf("old CRL URL forgotten after %s, before forget_after (%s)", d, cfg.ForgetAfter)
		}
		clk.Add(time.Hour)
		c.RefreshDue(ctx)
	}
	st := c.issuer(p.OSIServeur.Cert)
	c.mu.RLock()
	_, kept := st.sources[oldCRL.url]
	_, keptNew := st.sources[newCRL.url]
	c.mu.RUnlock()
	if kept {
		t.Errorf("CRL URL no certificate has named for 8 days is still polled")
	}
	if !keptNew {
		t.Errorf("CRL URL of the certificate in use was forgotten")
	}
	series := urlSeries(m)
	if series[oldCRL.url] {
		t.Errorf("metric series of the forgotten URL %s still exported: its stale alert fires for ever", oldCRL.url)
	}
	if !series[configured.url] {
		t.Errorf("configured CRL URL %s forgotten (no certificate names it, it is configured): %v", configured.url, series)
	}
	oldBefore := oldCRL.requests.Load()
	c.RefreshDue(ctx)
	if oldCRL.requests.Load() != oldBefore {
		t.Errorf("forgotten URL fetched again")
	}
	// What the forgotten URL's last CRL listed is still revoked.
	wantStatus(t, rc.CheckChain(ctx, revokedOld), StatusRevoked, "")
}

// The same move, with a pod that restarts twice a day: the time a
// certificate last named the old URL is kept in revocation.cache_dir, so
// restarts do not make it look just named (it would then never be
// forgotten), and once forgotten the persisted CRL does not bring it back.
func TestForgottenCRLURLStaysForgottenAcrossRestarts(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	t0 := time.Now()
	clk := testclock.New(t0)
	oldCRL := newMutableServer(t)
	leaf, err := p.OSIServeur.Issue(testpki.Template{Subject: pkix.Name{CommonName: "gone.amc.test"}, DNSNames: []string{"gone.amc.test"}, KeyBits: 1024,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, CRLURL: oldCRL.url})
	if err != nil {
		t.Fatal(err)
	}
	oldCRL.set(crlAt(t, p.OSIServeur, 1, t0.Add(-time.Minute), t0.Add(24*time.Hour), nil, 0), "")
	cfg := testConfig()
	cfg.ForgetAfter = 7 * 24 * time.Hour
	cfg.CacheDir = t.TempDir()
	ctx := context.Background()
	cas := []*x509.Certificate{p.OSIServeur.Cert}
	c, m := newChecker(t, cfg, clk)
	c.Prefetch(ctx, cas, nil)
	wantStatus(t, c.ForRoute(hard(SourceCRL)).CheckChain(ctx, []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}), StatusGood, "")
	c.RefreshDue(ctx)
	oldCRL.set(nil, "") // the partner is removed, its authority's old URL dies
	for clk.Now().Sub(t0) < 8*24*time.Hour {
		c.Close()
		clk.Add(12 * time.Hour)
		c, m = newChecker(t, cfg, clk)
		c.Prefetch(ctx, cas, nil)
		for i := 0; i < 3; i++ {
			clk.Add(time.Hour)
			c.RefreshDue(ctx)
		}
	}
	if urlSeries(m)[oldCRL.url] {
		t.Fatalf("URL no certificate named for 8 days, across restarts twice a day, still followed")
	}
	idx := readIndex(t, cfg.CacheDir)
	for name, e := range idx {
		if e.URL == oldCRL.url {
			t.Errorf("forgotten URL's CRL still persisted as %s: every restart loads and follows it again", name)
		}
	}
	c.Close()
	c, m = newChecker(t, cfg, clk)
	c.Prefetch(ctx, cas, nil)
	if urlSeries(m)[oldCRL.url] {
		t.Errorf("forgotten URL followed again after a restart (its persisted CRL loaded)")
	}
}

// A responder (or whoever replays its answers) gives two answers with the
// same thisUpdate and producedAt about the same certificate: one good,
// one revoked. They cannot be ordered (rule 2), so neither is a replay of
// the other: revoked wins, whichever came first and whatever the reason
// (certificateHold included: it is lifted only by a newer answer).
func TestSameTimesGoodAndRevokedPreferRevoked(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	leaf := p.Servers["ok.amc.test"]
	t0 := time.Now().Truncate(time.Second)
	answer := func(revoked bool, reason int) []byte {
		s := craftSingleFor(t, p.OSIServeur.Cert, leaf.Cert.SerialNumber, revoked, t0.Add(-time.Minute), t0.Add(time.Hour))
		if revoked {
			s.Revoked.Reason = asn1.Enumerated(reason)
		}
		return craftOCSP(t, p.OSIServeur, []craftSingle{s}, t0.Add(-time.Minute))
	}
	good, compromised, held := answer(false, 0), answer(true, ocsp.KeyCompromise), answer(true, ocsp.CertificateHold)
	for _, tc := range []struct {
		name          string
		first, second []byte
	}{
		{"good then revoked", good, compromised},
		{"good then held", good, held},
		{"revoked then good", compromised, good},
		{"held then good", held, good},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var current atomic.Value
			current.Store(tc.first)
			url := ocspServer(t, func(*ocsp.Request) []byte { return current.Load().([]byte) })
			cfg := testConfig()
			cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), OCSPURL: url}}
			clk := testclock.New(t0)
			c, _ := newChecker(t, cfg, clk)
			chain := []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}
			ctx := context.Background()
			_ = c.Check(ctx, chain, hard(SourceOCSP))
			current.Store(tc.second)
			clk.Add(40 * time.Minute) // past the refresh point: asked again
			c.RefreshDue(ctx)
			wantStatus(t, c.Check(ctx, chain, hard(SourceOCSP)), StatusRevoked, SourceOCSP)
		})
	}
}

// readIndex and writeIndex read and replace the persisted cache's index,
// as someone who can write the cache folder would.
func readIndex(t *testing.T, dir string) map[string]*diskEntry {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, indexFile))
	if err != nil {
		t.Fatal(err)
	}
	var idx map[string]*diskEntry
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

func writeIndex(t *testing.T, dir string, idx map[string]*diskEntry) {
	t.Helper()
	b, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, indexFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
}
