package revocation

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/ocsp"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/sim"
	"github.com/roc-proxy/roc-proxy/internal/testclock"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// This file plays the misbehaving authority, responder and partner of
// issue 10: each test failed before the rules of rule.go.

// mutableServer serves whatever body holds, counting requests; an empty
// body answers 503. It honours If-None-Match with the body's ETag.
type mutableServer struct {
	mu       sync.Mutex
	body     []byte
	etag     string
	requests atomic.Int64
	url      string
}

func newMutableServer(t *testing.T) *mutableServer {
	m := &mutableServer{}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.requests.Add(1)
		m.mu.Lock()
		body, etag := m.body, m.etag
		m.mu.Unlock()
		if body == nil {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if etag != "" {
			w.Header().Set("ETag", etag)
			if r.Header.Get("If-None-Match") == etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	m.url = s.URL + "/crl"
	return m
}

func (m *mutableServer) set(body []byte, etag string) {
	m.mu.Lock()
	m.body, m.etag = body, etag
	m.mu.Unlock()
}

// ocspAt is an OCSP answer about serial with the given times.
func ocspAt(t testing.TB, issuer, signer *testpki.Cert, serial *big.Int, status, reason int, this, next time.Time, embed bool) []byte {
	t.Helper()
	tmpl := ocsp.Response{Status: status, SerialNumber: serial, ThisUpdate: this, NextUpdate: next, RevokedAt: this.Add(-time.Minute), RevocationReason: reason}
	if embed {
		tmpl.Certificate = signer.Cert
	}
	der, err := ocsp.CreateResponse(issuer.Cert, signer.Cert, tmpl, signer.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// crlAt is a CRL with explicit thisUpdate and nextUpdate.
func crlAt(t testing.TB, ca *testpki.Cert, number int64, this, next time.Time, serials []*big.Int, reason int, ext ...pkix.Extension) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: this, NextUpdate: next, ExtraExtensions: ext}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: this.Add(-time.Hour), ReasonCode: reason})
	}
	der, err := x509.CreateRevocationList(nil, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// delegated is an OCSP responder certificate of AC-SERVEUR.
func delegated(t *testing.T, w *world) *testpki.Cert {
	r, err := w.pki.OSIServeur.Issue(testpki.Template{Subject: pkix.Name{CommonName: "AC-SERVEUR OCSP"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-30 * 24 * time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Item 1: the responder said "revoked"; an older answer, validly signed by
// the delegated responder, saying "good" with a nextUpdate a week ahead is
// replayed. It must not replace the revocation; nor may a newer "good".
func TestReplayedGoodAnswerNeverUndoesRevocation(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	leaf := p.Servers["ok.amc.test"]
	resp := delegated(t, w)
	t0 := time.Now()
	var answer atomic.Value
	answer.Store(ocspAt(t, p.OSIServeur, resp, leaf.Cert.SerialNumber, ocsp.Revoked, ocsp.KeyCompromise, t0.Add(-time.Minute), t0.Add(time.Hour), true))
	url := ocspServer(t, func(*ocsp.Request) []byte { return answer.Load().([]byte) })
	cfg := testConfig()
	cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), OCSPURL: url}}
	clk := testclock.New(t0)
	c, m := newChecker(t, cfg, clk)
	chain := []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}
	ctx := context.Background()
	wantStatus(t, c.Check(ctx, chain, hard(SourceOCSP)), StatusRevoked, SourceOCSP)

	// The replay: before the revocation, valid for a week.
	answer.Store(ocspAt(t, p.OSIServeur, resp, leaf.Cert.SerialNumber, ocsp.Good, 0, t0.Add(-2*time.Hour), t0.Add(7*24*time.Hour), true))
	clk.Add(45 * time.Minute) // past the refresh point
	c.RefreshDue(ctx)
	// A final revocation is not even asked again; a fetch all the same
	// (a request's) gets the replay, refused.
	if err := c.fetchOCSP(ctx, leaf.Cert, p.OSIServeur.Cert, false); err == nil {
		t.Error("the replayed answer was accepted")
	}
	wantStatus(t, c.Check(ctx, chain, soft(SourceOCSP)), StatusRevoked, SourceOCSP)
	if fetchErrors(m, SourceOCSP, refusedOlder) == 0 {
		t.Error("replayed answer not counted as older_than_cached")
	}
	// Even a newer "good" cannot undo a keyCompromise revocation.
	answer.Store(ocspAt(t, p.OSIServeur, resp, leaf.Cert.SerialNumber, ocsp.Good, 0, clk.Now(), clk.Now().Add(7*24*time.Hour), true))
	clk.Add(2 * time.Hour)
	c.RefreshDue(ctx)
	if err := c.fetchOCSP(ctx, leaf.Cert, p.OSIServeur.Cert, false); err == nil {
		t.Error("a good answer after a keyCompromise revocation was accepted")
	}
	wantStatus(t, c.Check(ctx, chain, soft(bothSrc...)), StatusRevoked, SourceOCSP)
	if fetchErrors(m, SourceOCSP, refusedFinal) == 0 {
		t.Error("good after a final revocation not counted as revoked_is_final")
	}
}

// certificateHold is not final: a newer "good" lifts it, an older does not.
func TestCertificateHoldLiftedOnlyByNewerAnswer(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	leaf := p.Servers["ok.amc.test"]
	t0 := time.Now()
	var answer atomic.Value
	answer.Store(ocspAt(t, p.OSIServeur, p.OSIServeur, leaf.Cert.SerialNumber, ocsp.Revoked, ocsp.CertificateHold, t0.Add(-time.Minute), t0.Add(time.Hour), false))
	url := ocspServer(t, func(*ocsp.Request) []byte { return answer.Load().([]byte) })
	cfg := testConfig()
	cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), OCSPURL: url}}
	clk := testclock.New(t0)
	c, _ := newChecker(t, cfg, clk)
	chain := []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}
	ctx := context.Background()
	wantStatus(t, c.Check(ctx, chain, hard(SourceOCSP)), StatusRevoked, SourceOCSP)
	answer.Store(ocspAt(t, p.OSIServeur, p.OSIServeur, leaf.Cert.SerialNumber, ocsp.Good, 0, t0.Add(-time.Hour), t0.Add(time.Hour), false))
	clk.Add(40 * time.Minute)
	c.RefreshDue(ctx)
	wantStatus(t, c.Check(ctx, chain, hard(SourceOCSP)), StatusRevoked, SourceOCSP)
	answer.Store(ocspAt(t, p.OSIServeur, p.OSIServeur, leaf.Cert.SerialNumber, ocsp.Good, 0, clk.Now(), clk.Now().Add(time.Hour), false))
	clk.Add(time.Minute)
	c.RefreshDue(ctx)
	wantStatus(t, c.Check(ctx, chain, hard(SourceOCSP)), StatusGood, "")
}

// Item 2: a cached OCSP "good" and a cached, valid CRL listing the
// certificate: the revocation wins, whatever the route's source order.
func TestFreshRevokedFromAnySourceWins(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	leaf := p.Servers["ok.amc.test"]
	t0 := time.Now()
	url := ocspServer(t, func(*ocsp.Request) []byte {
		return ocspAt(t, p.OSIServeur, p.OSIServeur, leaf.Cert.SerialNumber, ocsp.Good, 0, t0.Add(-time.Minute), t0.Add(24*time.Hour), false)
	})
	crlSrv := newMutableServer(t)
	crlSrv.set(crlAt(t, p.OSIServeur, 5, t0.Add(-time.Hour), t0.Add(24*time.Hour), nil, 0), "")
	cfg := testConfig()
	cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), OCSPURL: url, CRLURLs: []string{crlSrv.url}}}
	clk := testclock.New(t0)
	c, _ := newChecker(t, cfg, clk)
	chain := []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}
	ctx := context.Background()
	wantStatus(t, c.Check(ctx, chain, hard(SourceOCSP)), StatusGood, "")
	// The authority revokes; its next CRL lists the certificate.
	crlSrv.set(crlAt(t, p.OSIServeur, 6, t0, t0.Add(24*time.Hour), []*big.Int{leaf.Cert.SerialNumber}, 1), "")
	c.Prefetch(ctx, []*x509.Certificate{p.OSIServeur.Cert}, nil)
	for _, src := range [][]string{{SourceOCSP, SourceCRL}, {SourceOCSP}, {SourceCRL, SourceOCSP}} {
		wantStatus(t, c.Check(ctx, chain, soft(src...)), StatusRevoked, SourceCRL)
	}
}

// Items 3 and 4: answers that arrive already past their nextUpdate (30
// minutes, inside the 1 h grace) are refused on first fetch, logged,
// counted, and not fetched again by every request.
func TestAnswersArrivingStaleAreRefused(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	leaf := p.Servers["ok.amc.test"]
	chain := []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}
	t0 := time.Now()
	staleOCSP := ocspAt(t, p.OSIServeur, p.OSIServeur, leaf.Cert.SerialNumber, ocsp.Good, 0, t0.Add(-25*time.Hour), t0.Add(-30*time.Minute), false)
	var ocspRequests atomic.Int64
	ocspURL := ocspServer(t, func(*ocsp.Request) []byte { ocspRequests.Add(1); return staleOCSP })
	crlSrv := newMutableServer(t)
	crlSrv.set(crlAt(t, p.OSIServeur, 3, t0.Add(-25*time.Hour), t0.Add(-30*time.Minute), nil, 0), "")
	for _, tc := range []struct {
		src      string
		issuer   *config.RevocationIssuer
		requests func() int64
	}{
		{SourceOCSP, &config.RevocationIssuer{OCSPURL: ocspURL}, ocspRequests.Load},
		{SourceCRL, &config.RevocationIssuer{CRLURLs: []string{crlSrv.url}}, crlSrv.requests.Load},
	} {
		t.Run(tc.src, func(t *testing.T) {
			cfg := testConfig()
			tc.issuer.Subject = p.OSIServeur.Cert.Subject.String()
			cfg.Issuers = []*config.RevocationIssuer{tc.issuer}
			core, logs := observer.New(zap.WarnLevel)
			m := newMetrics(t)
			c, err := New(Options{Config: cfg, Metrics: m, Logger: zap.New(core), Now: func() time.Time { return t0 }})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			before := tc.requests()
			for i := 0; i < 10; i++ {
				wantStatus(t, c.Check(context.Background(), chain, hard(tc.src)), StatusUnknown, SourceNone)
			}
			if n := tc.requests() - before; n != 1 {
				t.Errorf("%d fetches for 10 requests: a stale answer must be remembered as a failure", n)
			}
			if fetchErrors(m, tc.src, refusedStale) == 0 {
				t.Error("stale answer not counted")
			}
			if logs.FilterField(zap.String("reason", refusedStale)).Len() == 0 {
				t.Error("stale answer not logged")
			}
		})
	}
}

// Item 4: a stale CRL with a higher number must not replace the valid
// cached one; what it lists is revoked all the same.
func TestStaleCRLWithHigherNumberDoesNotReplaceValidOne(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	leaf := p.Servers["ok.amc.test"]
	other, err := p.IssueServer(p.OSIServeur, "other.amc.test", testpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	crlSrv := newMutableServer(t)
	crlSrv.set(crlAt(t, p.OSIServeur, 10, t0.Add(-time.Hour), t0.Add(48*time.Hour), nil, 0), "")
	cfg := testConfig()
	cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), CRLURLs: []string{crlSrv.url}}}
	clk := testclock.New(t0)
	c, _ := newChecker(t, cfg, clk)
	ctx := context.Background()
	c.Prefetch(ctx, []*x509.Certificate{p.OSIServeur.Cert}, nil)
	crlSrv.set(crlAt(t, p.OSIServeur, 11, t0.Add(-72*time.Hour), t0.Add(-30*time.Minute), []*big.Int{other.Cert.SerialNumber}, 1), "")
	clk.Add(30 * time.Hour) // past the refresh point
	c.RefreshDue(ctx)
	wantStatus(t, c.Check(ctx, []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}, hard(SourceCRL)), StatusGood, "")
	wantStatus(t, c.Check(ctx, []*x509.Certificate{other.Cert, p.OSIServeur.Cert}, soft(SourceCRL)), StatusRevoked, SourceCRL)
	if snap := c.Snapshot(); snap.Issuers[0].CRLs[0].Number != "10" {
		t.Errorf("cached CRL %+v, want number 10 kept", snap.Issuers[0].CRLs[0])
	}
}

// Item 3: grace only keeps serving an answer that was fresh when fetched,
// while its refresh fails; each use is counted and logged.
func TestGraceServesOnlyWhileRefreshFails(t *testing.T) {
	w := getWorld(t)
	clk := testclock.New(time.Now())
	w.srv.Now = clk.Now
	t.Cleanup(func() { w.srv.Now = nil })
	core, logs := observer.New(zap.WarnLevel)
	m := newMetrics(t)
	c, err := New(Options{Config: testConfig(), Metrics: m, Logger: zap.New(core), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := context.Background()
	ok := chainOf(w.pki.Servers["ok.amc.test"])
	wantStatus(t, c.Check(ctx, ok, hard(SourceOCSP)), StatusGood, "")
	w.srv.SetFault(sim.FaultDown, 0)
	clk.Add(24*time.Hour + 10*time.Minute) // past nextUpdate, within the grace
	c.RefreshDue(ctx)
	for i := 0; i < 3; i++ {
		wantStatus(t, c.Check(ctx, ok, hard(SourceOCSP)), StatusGood, "")
	}
	if n := testutil.ToFloat64(m.RevocationGraceUses.WithLabelValues(SourceOCSP, trustSubject(w.pki.OSIServeur.Cert))); n < 3 {
		t.Errorf("%v grace uses counted, want at least 3", n)
	}
	if logs.FilterMessageSnippet("within the grace").Len() == 0 {
		t.Error("grace use not logged")
	}
}

func trustSubject(c *x509.Certificate) string { return c.Subject.String() }

// Item 5: a revocation known only from a delta CRL is not forgotten when
// the delta goes stale while the base is still valid.
func TestDeltaOnlyRevocationOutlivesItsDelta(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	leaf := p.Servers["ok.amc.test"]
	t0 := time.Now()
	base, delta := newMutableServer(t), newMutableServer(t)
	base.set(crlAt(t, p.OSIServeur, 10, t0.Add(-time.Hour), t0.Add(7*24*time.Hour), nil, 0), "")
	delta.set(crlAt(t, p.OSIServeur, 11, t0.Add(-time.Minute), t0.Add(time.Hour), []*big.Int{leaf.Cert.SerialNumber}, 1, deltaExt(t, 10)), "")
	cfg := testConfig()
	cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), CRLURLs: []string{base.url}, DeltaCRLURLs: []string{delta.url}}}
	clk := testclock.New(t0)
	c, _ := newChecker(t, cfg, clk)
	ctx := context.Background()
	chain := []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}
	wantStatus(t, c.Check(ctx, chain, hard(SourceCRL)), StatusRevoked, SourceCRL)
	delta.set(nil, "") // the delta server goes down
	clk.Add(5 * time.Hour)
	c.RefreshDue(ctx)
	wantStatus(t, c.Check(ctx, chain, hard(SourceCRL)), StatusRevoked, SourceCRL)
	wantStatus(t, c.Check(ctx, chain, soft(bothSrc...)), StatusRevoked, SourceCRL)
}

// Item 5: a delta naming a newer base than the cached one makes the
// checker fetch that base at once, not at the base's refresh point.
func TestDeltaNamingNewerBaseFetchesIt(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	leaf := p.Servers["ok.amc.test"]
	t0 := time.Now()
	base, delta := newMutableServer(t), newMutableServer(t)
	base.set(crlAt(t, p.OSIServeur, 10, t0.Add(-time.Hour), t0.Add(7*24*time.Hour), nil, 0), "")
	delta.set(crlAt(t, p.OSIServeur, 11, t0.Add(-time.Minute), t0.Add(time.Hour), nil, 0, deltaExt(t, 10)), "")
	cfg := testConfig()
	cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), CRLURLs: []string{base.url}, DeltaCRLURLs: []string{delta.url}}}
	clk := testclock.New(t0)
	c, _ := newChecker(t, cfg, clk)
	ctx := context.Background()
	c.Prefetch(ctx, []*x509.Certificate{p.OSIServeur.Cert}, nil)
	// The authority publishes base 12 (listing a hold on the leaf) and a
	// delta on top of it.
	base.set(crlAt(t, p.OSIServeur, 12, t0.Add(20*time.Minute), t0.Add(7*24*time.Hour), []*big.Int{leaf.Cert.SerialNumber}, reasonCertificateHold), "")
	delta.set(crlAt(t, p.OSIServeur, 13, t0.Add(30*time.Minute), t0.Add(2*time.Hour), nil, 0, deltaExt(t, 12)), "")
	clk.Add(40 * time.Minute) // the delta is due, the 7-day base is not
	c.RefreshDue(ctx)
	var numbers []string
	for _, l := range c.Snapshot().Issuers[0].CRLs {
		numbers = append(numbers, l.Number)
	}
	if strings.Join(numbers, ",") != "12,13" && strings.Join(numbers, ",") != "13,12" {
		t.Fatalf("cached CRL numbers %v, want the base 12 the delta needs and the delta 13", numbers)
	}
	wantStatus(t, c.Check(ctx, []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}, hard(SourceCRL)), StatusRevoked, SourceCRL)
}

// Item 8: a CA that signs its own OCSP answers and carries its own
// certificate in them (as openssl does) is accepted; an answer signed by a
// foreign certificate it carries is not.
func TestCASignedOCSPCarryingTheCACertificate(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	leaf := p.Servers["ok.amc.test"]
	foreign, err := testpki.NewRoot(testpki.Template{Subject: p.OSIServeur.Cert.Subject})
	if err != nil {
		t.Fatal(err)
	}
	// A responder certified by another authority of the same hierarchy.
	cousin, err := p.OSIServicesApplicatifs.Issue(testpki.Template{Subject: pkix.Name{CommonName: "cousin OCSP"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, KeyUsage: x509.KeyUsageDigitalSignature})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		name   string
		signer *testpki.Cert
		ok     bool
	}{
		{"CA-signed, carrying the CA certificate", p.OSIServeur, true},
		{"signed by a self-signed impostor with the CA's name", foreign, false},
		{"signed by a responder of another authority", cousin, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der := ocspAt(t, p.OSIServeur, tc.signer, leaf.Cert.SerialNumber, ocsp.Good, 0, now.Add(-time.Minute), now.Add(time.Hour), true)
			_, err := parseOCSP(der, leaf.Cert, p.OSIServeur.Cert, now, time.Minute)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// Item 13: the configured subject written C first (as openssl prints it)
// still names the authority: its CRL is fetched at start.
func TestIssuerSubjectInEitherOrder(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	crlSrv := newMutableServer(t)
	crlSrv.set(crlAt(t, p.OSIServeur, 1, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), nil, 0), "")
	cfg := testConfig()
	cfg.Issuers = []*config.RevocationIssuer{{Subject: "C=FR, O=GIE SESAM-VITALE (ROC-PROXY TEST PKI), OU=IGC OSI TEST, CN=TEST AC-SERVEUR", CRLURLs: []string{crlSrv.url}}}
	c, _ := newChecker(t, cfg, nil)
	c.Prefetch(context.Background(), []*x509.Certificate{p.OSIServeur.Cert}, nil)
	if crlSrv.requests.Load() == 0 {
		t.Fatal("the configured CRL of an issuer written C first was not fetched at start")
	}
}

// Item 14: a partner certificate pointing at a local file (here a FIFO,
// which blocks whoever opens it) is not followed; a configured FIFO is
// refused at once instead of hanging the request.
func TestFileURLsFromCertificatesAreNotFollowed(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	fifo := filepath.Join(t.TempDir(), "crl.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("no FIFO on this system:", err)
	}
	leaf, err := p.OSIServeur.Issue(testpki.Template{Subject: pkix.Name{CommonName: "fifo.amc.test"}, DNSNames: []string{"fifo.amc.test"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, CRLURL: "file://" + fifo, OCSPURL: "file://" + fifo})
	if err != nil {
		t.Fatal(err)
	}
	chain := []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}
	within(t, 20*time.Second, "check of a certificate pointing at a FIFO", func() {
		c, _ := newChecker(t, testConfig(), nil)
		err := c.Check(context.Background(), chain, hard(bothSrc...))
		wantStatus(t, err, StatusUnknown, SourceNone)
		if !strings.Contains(err.Error(), "no usable URL") {
			t.Errorf("error %v, want no usable URL", err)
		}
	})
	within(t, 20*time.Second, "check with a configured FIFO", func() {
		cfg := testConfig()
		cfg.FetchTimeout = time.Hour
		cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), CRLURLs: []string{"file://" + fifo}}}
		c, _ := newChecker(t, cfg, nil)
		err := c.Check(context.Background(), chain, hard(SourceCRL))
		if !strings.Contains(fmt_(err), "not a regular file") {
			t.Errorf("error %v, want not a regular file", err)
		}
	})
}

func fmt_(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Item 14: a CRL server that never answers holds no fetch past its
// deadline, and closing the checker (shutdown) ends what is in flight.
func TestFetchesEndOnDeadlineAndShutdown(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	hang := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(hang); s.Close() })
	cfg := testConfig()
	cfg.FetchTimeout = time.Hour
	cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), CRLURLs: []string{s.URL + "/a.crl"}, OCSPURL: s.URL + "/ocsp"}}
	c, _ := newChecker(t, cfg, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Prefetch(ctx, []*x509.Certificate{p.OSIServeur.Cert}, [][]*x509.Certificate{chainOf(p.Servers["ok.amc.test"])})
	}()
	// A request waits no longer than its own deadline.
	within(t, 20*time.Second, "request against a silent responder", func() {
		rctx, rcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer rcancel()
		wantStatus(t, c.Check(rctx, chainOf(p.Servers["ok.amc.test"]), hard(bothSrc...)), StatusUnknown, SourceNone)
	})
	cancel()
	c.Close()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("prefetch still running 20 s after shutdown")
	}
}

// within runs f and fails the test if it has not returned after d.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s still running after %s", what, d)
	}
}

// Item 10: a CRL past its refresh point whose authority publishes nothing
// new is asked conditionally, and less and less often.
func TestCRLPastRefreshPointBacksOffWithConditionalRequests(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	t0 := time.Now()
	crlSrv := newMutableServer(t)
	crlSrv.set(crlAt(t, p.OSIServeur, 1, t0.Add(-time.Hour), t0.Add(7*24*time.Hour), nil, 0), `"v1"`)
	cfg := testConfig()
	cfg.CheckInterval = 5 * time.Second
	cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), CRLURLs: []string{crlSrv.url}}}
	clk := testclock.New(t0)
	c, m := newChecker(t, cfg, clk)
	ctx := context.Background()
	c.Prefetch(ctx, []*x509.Certificate{p.OSIServeur.Cert}, nil)
	clk.Add(4 * 24 * time.Hour) // past the refresh point (3.5 days)
	before := crlSrv.requests.Load()
	for i := 0; i < 720; i++ { // one hour of 5 s check intervals
		clk.Add(5 * time.Second)
		c.RefreshDue(ctx)
	}
	n := crlSrv.requests.Load() - before
	if n > 20 {
		t.Errorf("%d CRL fetches in an hour with a 5 s check interval: no back-off", n)
	}
	if n == 0 || testutil.ToFloat64(m.RevocationNotModified.WithLabelValues(SourceCRL)) != float64(n) {
		t.Errorf("%d fetches, %v answered 304: every fetch of a cached CRL must be conditional", n, testutil.ToFloat64(m.RevocationNotModified.WithLabelValues(SourceCRL)))
	}
}

func newMetrics(t *testing.T) *metrics.Metrics {
	t.Helper()
	m, err := metrics.New(prometheus.NewRegistry(), metrics.BuildInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Item 6: with the default settings and sources [ocsp, crl], a partner
// answered "good" from a cached 7-day CRL is revoked; the detection time
// is measured on a controlled clock stepped one check interval at a time
// (what Run does), and must stay within max_status_age + check_interval.
func TestDetectionTimeWithDefaultSettings(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	clk := testclock.New(time.Now())
	w.srv.Now, w.srv.Validity = clk.Now, 7*24*time.Hour
	t.Cleanup(func() { w.srv.Now, w.srv.Validity = nil, 24*time.Hour })
	leaf, err := p.IssueServer(p.OSIServeur, "detect.amc.test", w.o)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Revocation{RefreshAt: config.DefaultRefreshAt, Grace: config.DefaultGrace, ClockSkew: config.DefaultClockSkew,
		FetchTimeout: config.DefaultFetchTimeout, CheckInterval: config.DefaultCheckInterval, MaxCRLBytes: config.DefaultMaxCRLBytes,
		MaxOCSPBytes: config.DefaultMaxOCSPBytes, MaxStatusAge: config.DefaultMaxStatusAge, StartupBudget: config.DefaultStartupBudget,
		Issuers: []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), CRLURLs: []string{w.o.CRLURL("ac-serveur")}}}}
	c, _ := newChecker(t, cfg, clk)
	ctx := context.Background()
	c.Prefetch(ctx, []*x509.Certificate{p.OSIServeur.Cert}, nil)
	chain := []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}
	policy := hard(config.DefaultRevocationSources.Names()...)
	ocspBefore := w.srv.OCSPRequests.Load()
	wantStatus(t, c.Check(ctx, chain, policy), StatusGood, "")
	if w.srv.OCSPRequests.Load() != ocspBefore {
		t.Fatal("the setting of the issue: the cached CRL answers, OCSP is not asked")
	}
	// The worst case: the revocation comes right after the status was
	// confirmed.
	w.srv.Revoke("ac-serveur", leaf.Cert.SerialNumber)
	revokedAt := clk.Now()
	bound := cfg.MaxStatusAge + cfg.CheckInterval
	for c.Check(ctx, chain, policy) == nil {
		if clk.Now().Sub(revokedAt) > 8*24*time.Hour {
			t.Fatal("revocation not seen after 8 days")
		}
		clk.Add(cfg.CheckInterval)
		c.RefreshDue(ctx)
	}
	detected := clk.Now().Sub(revokedAt)
	t.Logf("worst-case detection time with default settings (max_status_age %s, check_interval %s, 7-day CRL): %s", cfg.MaxStatusAge, cfg.CheckInterval, detected)
	if detected > bound {
		t.Errorf("revocation seen after %s, want at most max_status_age + check_interval = %s", detected, bound)
	}
}

// Item 12: what ops can see. Every known CRL URL has its nextUpdate series
// from the start (0: never fetched); failed fetches name the authority and
// the URL; a partner whose OCSP fetch fails is listed with the error; the
// OCSP freshness of each authority is exported.
func TestWhatOpsCanSee(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	down := newMutableServer(t) // answers 503
	leaf := p.Servers["ok.amc.test"]
	cfg := testConfig()
	cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), CRLURLs: []string{down.url}, OCSPURL: down.url + "/ocsp"}}
	c, m := newChecker(t, cfg, nil)
	ctx := context.Background()
	c.Prefetch(ctx, []*x509.Certificate{p.OSIServeur.Cert, p.OSIRoot.Cert}, nil)
	if n := testutil.CollectAndCount(m.RevocationNextUpdate, "roc_proxy_revocation_next_update_timestamp_seconds"); n == 0 {
		t.Fatal("no nextUpdate series for a configured CRL never fetched")
	}
	if v := testutil.ToFloat64(m.RevocationNextUpdate.WithLabelValues(SourceCRL, down.url)); v != 0 {
		t.Errorf("nextUpdate of a CRL never fetched: %v, want 0", v)
	}
	issuer := trustSubject(p.OSIServeur.Cert)
	if v := testutil.ToFloat64(m.RevocationFetchErrors.WithLabelValues(SourceCRL, "unavailable", issuer, down.url)); v == 0 {
		t.Error("failed CRL fetch not counted with its authority and URL")
	}
	wantStatus(t, c.Check(ctx, []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}, hard(SourceOCSP)), StatusUnknown, SourceNone)
	found := false
	for _, is := range c.Snapshot().Issuers {
		for _, o := range is.OCSP {
			if o.Subject == c.o.Subject(leaf.Cert) && o.Status == "unknown" && strings.Contains(o.LastError, "503") {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("partner whose OCSP fetch failed is absent from /revocation: %+v", c.Snapshot())
	}
	// The responder comes back: the OCSP freshness of the authority shows.
	c2, m2 := newChecker(t, testConfig(), nil)
	wantStatus(t, c2.Check(ctx, chainOf(leaf), hard(SourceOCSP)), StatusGood, "")
	if v := testutil.ToFloat64(m2.RevocationOCSPNextUpdate.WithLabelValues(issuer)); v != 0 {
		t.Fatalf("freshness before the first refresh: %v", v)
	}
	c2.RefreshDue(ctx)
	if v := testutil.ToFloat64(m2.RevocationOCSPNextUpdate.WithLabelValues(issuer)); v < float64(time.Now().Unix()) {
		t.Errorf("OCSP nextUpdate of %s: %v", issuer, v)
	}
}
