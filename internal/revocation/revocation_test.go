package revocation

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"golang.org/x/crypto/ocsp"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/sim"
	"github.com/roc-proxy/roc-proxy/internal/testclock"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// TestMain closes the shared simulated server before looking for leaked
// goroutines.
func TestMain(m *testing.M) {
	code := m.Run()
	if theWorld != nil {
		theWorld.srv.Close()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// world is a PKI whose certificates point at a live simulated CRL server
// and OCSP responder. Shared by the package's tests, which reset the
// server's faults when they end.
type world struct {
	pki *testpki.PKI
	srv *sim.RevocationServer
	o   testpki.Options
	// revoked is an AMC server certificate listed as revoked.
	revoked *testpki.Cert
}

var (
	worldOnce sync.Once
	theWorld  *world
	worldErr  error
)

func getWorld(t testing.TB) *world {
	t.Helper()
	worldOnce.Do(func() {
		srv, err := sim.StartRevocation(nil)
		if err != nil {
			worldErr = err
			return
		}
		o := testpki.Options{RevocationBaseURL: srv.URL, ServerNames: []string{"ok.amc.test"}, DeltaCRL: true}
		p, err := testpki.New(o)
		if err != nil {
			worldErr = err
			return
		}
		revoked, err := p.IssueServer(p.OSIServeur, "revoked.amc.test", o)
		if err != nil {
			worldErr = err
			return
		}
		srv.AddCA("ac-serveur", p.OSIServeur)
		srv.AddCA("osi-root", p.OSIRoot)
		srv.AddCA("aci-el-org", p.SanteOrg)
		srv.AddCA("acr-el", p.SanteRoot)
		srv.Revoke("ac-serveur", revoked.Cert.SerialNumber)
		theWorld = &world{pki: p, srv: srv, o: o, revoked: revoked}
	})
	if worldErr != nil {
		t.Fatal(worldErr)
	}
	t.Cleanup(func() { theWorld.srv.SetFault(sim.FaultNone, 0) })
	return theWorld
}

func testConfig() config.Revocation {
	return config.Revocation{RefreshAt: 0.5, Grace: time.Hour, ClockSkew: 5 * time.Minute, FetchTimeout: 2 * time.Second,
		CheckInterval: time.Minute, MaxCRLBytes: 1 << 20, MaxOCSPBytes: 64 << 10, MaxStatusAge: time.Hour, StartupBudget: 2 * time.Minute}
}

func newChecker(t testing.TB, cfg config.Revocation, clk *testclock.Clock) (*Checker, *metrics.Metrics) {
	t.Helper()
	m, err := metrics.New(prometheus.NewRegistry(), metrics.BuildInfo{})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Config: cfg, Metrics: m}
	if clk != nil {
		o.Now = clk.Now
	}
	if tt, ok := t.(*testing.T); ok {
		o.Logger = zaptest.NewLogger(tt)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, m
}

var (
	hard    = func(src ...string) Policy { return Policy{Hard: true, Sources: src} }
	soft    = func(src ...string) Policy { return Policy{Hard: false, Sources: src} }
	bothSrc = []string{SourceOCSP, SourceCRL}
)

func chainOf(c *testpki.Cert) []*x509.Certificate {
	return append(c.Chain(), c.Root().Cert)
}

func wantStatus(t *testing.T, err error, st Status, src string) {
	t.Helper()
	if st == StatusGood {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	var re *Error
	if !errors.As(err, &re) {
		t.Fatalf("error %v, want a revocation.Error with status %s", err, st)
	}
	if re.Status != st || (src != "" && re.Source != src) {
		t.Fatalf("status %s from %s, want %s from %s (%v)", re.Status, re.Source, st, src, err)
	}
}

func TestGoodAndRevoked(t *testing.T) {
	w := getWorld(t)
	ctx := context.Background()
	for _, src := range [][]string{{SourceOCSP}, {SourceCRL}, bothSrc} {
		c, _ := newChecker(t, testConfig(), nil)
		wantStatus(t, c.Check(ctx, chainOf(w.pki.Servers["ok.amc.test"]), hard(src...)), StatusGood, "")
		wantStatus(t, c.Check(ctx, chainOf(w.revoked), hard(src...)), StatusRevoked, src[0])
		// Revoked is refused under a soft policy too.
		wantStatus(t, c.Check(ctx, chainOf(w.revoked), soft(src...)), StatusRevoked, src[0])
	}
}

func TestRevokedIntermediate(t *testing.T) {
	w := getWorld(t)
	// A second AC-SERVEUR, revoked by the root, issuing a server.
	inter, err := w.pki.OSIRoot.Issue(testpki.Template{Subject: pkix.Name{CommonName: "TEST AC-SERVEUR 2"}, IsCA: true,
		CRLURL: w.o.CRLURL("osi-root"), OCSPURL: w.o.OCSPURL()})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := w.pki.IssueServer(inter, "x.amc.test", testpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.srv.Revoke("osi-root", inter.Cert.SerialNumber)
	c, _ := newChecker(t, testConfig(), nil)
	// The leaf has no revocation pointer: only a soft policy lets it
	// through, but the revoked intermediate is refused whatever the policy.
	wantStatus(t, c.Check(context.Background(), chainOf(leaf), soft(bothSrc...)), StatusRevoked, SourceOCSP)
}

func TestResponderFaults(t *testing.T) {
	w := getWorld(t)
	ok := chainOf(w.pki.Servers["ok.amc.test"])
	for _, tc := range []struct {
		name   string
		fault  sim.Fault
		reason string
	}{
		{"down", sim.FaultDown, "unavailable"},
		{"slow", sim.FaultSlow, "timeout"},
		{"garbage", sim.FaultGarbage, "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.FetchTimeout = 300 * time.Millisecond
			c, m := newChecker(t, cfg, nil)
			w.srv.SetFault(tc.fault, 2*time.Second)
			start := time.Now()
			wantStatus(t, c.Check(context.Background(), ok, hard(bothSrc...)), StatusUnknown, SourceNone)
			if tc.fault == sim.FaultSlow && time.Since(start) > 5*time.Second {
				t.Errorf("slow responder held the check %s", time.Since(start))
			}
			if err := c.Check(context.Background(), ok, soft(bothSrc...)); err != nil {
				t.Errorf("soft policy refused an unknown status: %v", err)
			}
			if n := fetchErrors(m, SourceOCSP, tc.reason); n == 0 {
				t.Errorf("no fetch error counted with reason %s", tc.reason)
			}
		})
	}
}

// fetchErrors sums the failed fetches of a source and reason, whatever the
// authority and URL.
func fetchErrors(m *metrics.Metrics, source, reason string) float64 {
	ch := make(chan prometheus.Metric, 1000)
	m.RevocationFetchErrors.Collect(ch)
	close(ch)
	total := 0.0
	for pm := range ch {
		var d dto.Metric
		pm.Write(&d)
		labels := map[string]string{}
		for _, l := range d.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["source"] == source && labels["reason"] == reason {
			total += d.GetCounter().GetValue()
		}
	}
	return total
}

// ocspServer answers every request with answer(req).
func ocspServer(t *testing.T, answer func(req *ocsp.Request) []byte) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 4096)
		n, _ := r.Body.Read(b)
		req, err := ocsp.ParseRequest(b[:n])
		if err != nil {
			http.Error(w, "bad", 400)
			return
		}
		w.Write(answer(req))
	}))
	t.Cleanup(s.Close)
	return s.URL
}

func ocspResponse(t testing.TB, issuer, signer *testpki.Cert, serial *big.Int, embed bool) []byte {
	t.Helper()
	return ocspResponseWith(t, issuer, signer, serial, embed, ocsp.Good)
}

func ocspResponseWith(t testing.TB, issuer, signer *testpki.Cert, serial *big.Int, embed bool, status int) []byte {
	t.Helper()
	tmpl := ocsp.Response{Status: status, SerialNumber: serial, ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour)}
	if embed {
		tmpl.Certificate = signer.Cert
	}
	der, err := ocsp.CreateResponse(issuer.Cert, signer.Cert, tmpl, signer.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestOCSPAnswersThatMustBeRefused(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	leaf := p.Servers["ok.amc.test"]
	responder := func(t *testing.T, notAfter time.Time, eku []x509.ExtKeyUsage) *testpki.Cert {
		r, err := p.OSIServeur.Issue(testpki.Template{Subject: pkix.Name{CommonName: "OCSP responder"}, ExtKeyUsage: eku,
			KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: notAfter})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ocspEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
	stranger, err := testpki.NewRoot(testpki.Template{Subject: pkix.Name{CommonName: "stranger"}})
	if err != nil {
		t.Fatal(err)
	}
	// Another CA that issued a certificate with the same serial.
	twin, err := p.OSIRoot.Issue(testpki.Template{Subject: pkix.Name{CommonName: "TEST AC-SERVEUR BIS"}, IsCA: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		answer func(*ocsp.Request) []byte
		want   error
	}{
		{"good, signed by the CA", func(r *ocsp.Request) []byte {
			return ocspResponse(t, p.OSIServeur, p.OSIServeur, r.SerialNumber, false)
		}, nil},
		{"good, delegated responder", func(r *ocsp.Request) []byte {
			return ocspResponse(t, p.OSIServeur, responder(t, time.Now().Add(time.Hour), ocspEKU), r.SerialNumber, true)
		}, nil},
		{"signed by the wrong key", func(r *ocsp.Request) []byte { return ocspResponse(t, p.OSIServeur, stranger, r.SerialNumber, false) }, ErrBadSignatureOCSP},
		{"expired delegated responder", func(r *ocsp.Request) []byte {
			return ocspResponse(t, p.OSIServeur, responder(t, time.Now().Add(-time.Hour), ocspEKU), r.SerialNumber, true)
		}, ErrResponder},
		{"delegated responder without OCSPSigning", func(r *ocsp.Request) []byte {
			return ocspResponse(t, p.OSIServeur, responder(t, time.Now().Add(time.Hour), []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}), r.SerialNumber, true)
		}, ErrResponder},
		{"answer about another issuer's certificate with the same serial", func(r *ocsp.Request) []byte {
			return ocspResponse(t, twin, p.OSIServeur, r.SerialNumber, false)
		}, ErrWrongIssuer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := ocspServer(t, tc.answer)
			cfg := testConfig()
			cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), OCSPURL: url}}
			c, _ := newChecker(t, cfg, nil)
			err := c.fetchOCSP(context.Background(), leaf.Cert, p.OSIServeur.Cert, true)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == ErrBadSignatureOCSP && (err == nil || !strings.Contains(err.Error(), "bad OCSP signature")):
				t.Fatalf("error %v, want a bad signature", err)
			case tc.want != nil && tc.want != ErrBadSignatureOCSP && !errors.Is(err, tc.want):
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				wantStatus(t, c.Check(context.Background(), chainOf(leaf), hard(SourceOCSP)), StatusUnknown, SourceNone)
			}
		})
	}
}

// ErrBadSignatureOCSP marks the case where x/crypto/ocsp itself refuses.
var ErrBadSignatureOCSP = errors.New("bad OCSP signature")

func crlDER(t testing.TB, ca *testpki.Cert, number int64, next time.Time, serials []*big.Int, reason int, ext ...pkix.Extension) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: next.Add(-25 * time.Hour), NextUpdate: next, ExtraExtensions: ext}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now().Add(-time.Hour), ReasonCode: reason})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func deltaExt(t testing.TB, base int64) pkix.Extension {
	v, err := asn1.Marshal(big.NewInt(base))
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidDeltaCRLIndicator, Critical: true, Value: v}
}

func writeFile(t *testing.T, der []byte) string {
	f, err := os.CreateTemp(t.TempDir(), "*.crl")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(der)
	f.Close()
	return "file://" + f.Name()
}

func TestCRLAndDeltaCases(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	ca := p.OSIServeur
	leaf := p.Servers["ok.amc.test"]
	serial := leaf.Cert.SerialNumber
	other := big.NewInt(424242)
	next := time.Now().Add(24 * time.Hour)
	for _, tc := range []struct {
		name        string
		base, delta []byte
		want        Status
	}{
		{"base lists nothing", crlDER(t, ca, 10, next, []*big.Int{other}, 1), nil, StatusGood},
		{"base revokes", crlDER(t, ca, 10, next, []*big.Int{serial}, 1), nil, StatusRevoked},
		{"expired base", crlDER(t, ca, 10, time.Now().Add(-2*time.Hour), nil, 0), nil, StatusUnknown},
		{"base with an unknown critical extension", crlDER(t, ca, 10, next, nil, 0, pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}), nil, StatusUnknown},
		{"base signed by another CA", crlDER(t, p.OSIServicesApplicatifs, 10, next, nil, 0), nil, StatusUnknown},
		{"a delta served as the base", crlDER(t, ca, 11, next, nil, 0, deltaExt(t, 10)), nil, StatusUnknown},
		{"delta revokes a serial absent from the base", crlDER(t, ca, 10, next, nil, 0), crlDER(t, ca, 11, next, []*big.Int{serial}, 1, deltaExt(t, 10)), StatusRevoked},
		// A delta made on another base is not applied, but what it revokes
		// is a signed statement of the CA: final (rule 1).
		{"delta for another base still revokes", crlDER(t, ca, 10, next, nil, 0), crlDER(t, ca, 13, next, []*big.Int{serial}, 1, deltaExt(t, 12)), StatusRevoked},
		{"delta for another base lifts no hold", crlDER(t, ca, 10, next, []*big.Int{serial}, 6), crlDER(t, ca, 13, next, []*big.Int{serial}, reasonRemoveFromCRL, deltaExt(t, 12)), StatusRevoked},
		{"delta un-revokes with removeFromCRL", crlDER(t, ca, 10, next, []*big.Int{serial}, 6), crlDER(t, ca, 11, next, []*big.Int{serial}, reasonRemoveFromCRL, deltaExt(t, 10)), StatusGood},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			is := &config.RevocationIssuer{Subject: ca.Cert.Subject.String(), CRLURLs: []string{writeFile(t, tc.base)}}
			if tc.delta != nil {
				is.DeltaCRLURLs = []string{writeFile(t, tc.delta)}
			}
			cfg.Issuers = []*config.RevocationIssuer{is}
			c, _ := newChecker(t, cfg, nil)
			err := c.Check(context.Background(), []*x509.Certificate{leaf.Cert, ca.Cert}, hard(SourceCRL))
			src := SourceCRL
			if tc.want == StatusUnknown {
				src = SourceNone
			}
			wantStatus(t, err, tc.want, src)
		})
	}
}

func TestCRLSizeLimit(t *testing.T) {
	w := getWorld(t)
	cfg := testConfig()
	cfg.MaxCRLBytes = 100
	c, m := newChecker(t, cfg, nil)
	wantStatus(t, c.Check(context.Background(), chainOf(w.pki.Servers["ok.amc.test"]), hard(SourceCRL)), StatusUnknown, SourceNone)
	if fetchErrors(m, SourceCRL, "too_large") == 0 {
		t.Error("oversized CRL not counted as too_large")
	}
}

// Once warm, checks never touch the network; when refreshing fails the
// cached answer serves until nextUpdate + grace, then the policy applies.
func TestWarmCacheAndStaleness(t *testing.T) {
	w := getWorld(t)
	clk := testclock.New(time.Now())
	c, m := newChecker(t, testConfig(), clk)
	ctx := context.Background()
	ok := chainOf(w.pki.Servers["ok.amc.test"])
	wantStatus(t, c.Check(ctx, ok, hard(bothSrc...)), StatusGood, "")
	before := w.srv.OCSPRequests.Load() + w.srv.CRLRequests.Load()
	syncBefore := testutil.ToFloat64(m.RevocationSyncFetches.WithLabelValues(SourceOCSP)) + testutil.ToFloat64(m.RevocationSyncFetches.WithLabelValues(SourceCRL))
	for i := 0; i < 100; i++ {
		wantStatus(t, c.Check(ctx, ok, hard(bothSrc...)), StatusGood, "")
	}
	if n := w.srv.OCSPRequests.Load() + w.srv.CRLRequests.Load() - before; n != 0 {
		t.Fatalf("%d network requests for warm checks", n)
	}
	if testutil.ToFloat64(m.RevocationSyncFetches.WithLabelValues(SourceOCSP))+testutil.ToFloat64(m.RevocationSyncFetches.WithLabelValues(SourceCRL)) != syncBefore {
		t.Fatal("warm checks counted synchronous fetches")
	}

	// Past the refresh point, with the responder down: still served.
	w.srv.SetFault(sim.FaultDown, 0)
	clk.Add(20 * time.Hour)
	c.RefreshDue(ctx)
	wantStatus(t, c.Check(ctx, ok, hard(bothSrc...)), StatusGood, "")
	// Past nextUpdate (24 h) but within the grace (1 h): still served.
	clk.Add(4*time.Hour + 30*time.Minute)
	wantStatus(t, c.Check(ctx, ok, hard(bothSrc...)), StatusGood, "")
	// Past the grace: the hard policy refuses, the soft one allows.
	clk.Add(time.Hour)
	wantStatus(t, c.Check(ctx, ok, hard(bothSrc...)), StatusUnknown, SourceNone)
	if err := c.Check(ctx, ok, soft(bothSrc...)); err != nil {
		t.Fatalf("soft policy: %v", err)
	}
	// The responder is back: the background refresh recovers.
	w.srv.SetFault(sim.FaultNone, 0)
	clk.Set(time.Now())
	c.RefreshDue(ctx)
	wantStatus(t, c.Check(ctx, ok, hard(bothSrc...)), StatusGood, "")
}

func TestPersistedCacheMakesRestartWarm(t *testing.T) {
	w := getWorld(t)
	cfg := testConfig()
	cfg.CacheDir = t.TempDir()
	ctx := context.Background()
	ok, revoked := chainOf(w.pki.Servers["ok.amc.test"]), chainOf(w.revoked)
	c1, _ := newChecker(t, cfg, nil)
	wantStatus(t, c1.Check(ctx, ok, hard(bothSrc...)), StatusGood, "")
	wantStatus(t, c1.Check(ctx, revoked, hard(SourceCRL)), StatusRevoked, SourceCRL)

	w.srv.SetFault(sim.FaultDown, 0)
	c2, _ := newChecker(t, cfg, nil)
	c2.Prefetch(ctx, []*x509.Certificate{w.pki.OSIServeur.Cert, w.pki.OSIRoot.Cert}, nil)
	wantStatus(t, c2.Check(ctx, ok, hard(SourceOCSP)), StatusGood, "")
	wantStatus(t, c2.Check(ctx, revoked, hard(SourceCRL)), StatusRevoked, SourceCRL)
}

func TestOwnCertificateWatched(t *testing.T) {
	w := getWorld(t)
	c, m := newChecker(t, testConfig(), nil)
	ctx := context.Background()
	c.Watch(ctx, "ORG_AUTH_CLI", chainOf(w.pki.AuthCli))
	if st := c.OwnStatus("ORG_AUTH_CLI"); st != StatusGood {
		t.Fatalf("own status %s", st)
	}
	leaked, err := w.pki.SanteOrg.Issue(testpki.Template{Subject: testpki.OrgName(testpki.SignCN),
		KeyUsage: x509.KeyUsageDigitalSignature, CRLURL: w.o.CRLURL("aci-el-org"), OCSPURL: w.o.OCSPURL()})
	if err != nil {
		t.Fatal(err)
	}
	w.srv.Revoke("aci-el-org", leaked.Cert.SerialNumber)
	c.Watch(ctx, "ORG_SIGN", chainOf(leaked))
	if st := c.OwnStatus("ORG_SIGN"); st != StatusRevoked {
		t.Fatalf("revoked own certificate reported %s", st)
	}
	if testutil.ToFloat64(m.RevocationOwnStatus.WithLabelValues("ORG_SIGN", "revoked")) != 1 {
		t.Error("own revoked certificate not in the metric")
	}
	snap := c.Snapshot()
	if len(snap.Own) != 2 || len(snap.Issuers) == 0 {
		t.Errorf("snapshot %+v", snap)
	}
}

func TestConcurrentChecksShareFetches(t *testing.T) {
	w := getWorld(t)
	c, _ := newChecker(t, testConfig(), nil)
	leaf, err := w.pki.IssueServer(w.pki.OSIServeur, "fresh.amc.test", w.o)
	if err != nil {
		t.Fatal(err)
	}
	w.srv.SetFault(sim.FaultSlow, 200*time.Millisecond)
	before := w.srv.OCSPRequests.Load()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.Check(context.Background(), []*x509.Certificate{leaf.Cert, w.pki.OSIServeur.Cert}, hard(SourceOCSP)) != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d checks failed", failed.Load())
	}
	if n := w.srv.OCSPRequests.Load() - before; n > 2 {
		t.Errorf("%d OCSP requests for 20 concurrent first checks of one certificate", n)
	}
}

func FuzzParseCRL(f *testing.F) {
	w := getWorld(f)
	next := time.Now().Add(time.Hour)
	f.Add(crlDER(f, w.pki.OSIServeur, 1, next, []*big.Int{big.NewInt(7)}, 1))
	f.Add(crlDER(f, w.pki.OSIServeur, 2, next, nil, 0, deltaExt(f, 1)))
	f.Fuzz(func(t *testing.T, der []byte) {
		l, err := parseCRL(der, w.pki.OSIServeur.Cert, time.Now(), time.Minute)
		if err == nil && l.revoked == nil {
			t.Fatal("parsed CRL without an index")
		}
	})
}

func FuzzParseOCSP(f *testing.F) {
	w := getWorld(f)
	leaf := w.pki.Servers["ok.amc.test"]
	f.Add(ocspResponse(f, w.pki.OSIServeur, w.pki.OSIServeur, leaf.Cert.SerialNumber, false))
	f.Add([]byte{0x30, 0x03, 0x0a, 0x01, 0x06})
	f.Fuzz(func(t *testing.T, der []byte) {
		_, _ = parseOCSP(der, leaf.Cert, w.pki.OSIServeur.Cert, time.Now(), time.Minute)
	})
}

// BenchmarkCachedChainCheck is the request path once warm: a chain of 3
// (leaf, intermediate, root), two lookups.
func BenchmarkCachedChainCheck(b *testing.B) {
	w := getWorld(b)
	c, _ := newChecker(b, testConfig(), nil)
	chain := chainOf(w.pki.Servers["ok.amc.test"])
	ctx := context.Background()
	if err := c.Check(ctx, chain, hard(bothSrc...)); err != nil {
		b.Fatal(err)
	}
	sts := []*issuerState{c.issuer(chain[1]), c.issuer(chain[2])}
	b.ReportAllocs()
	for b.Loop() {
		for i := 0; i+1 < len(chain); i++ {
			k, _ := keyOfSerial(chain[i].SerialNumber)
			if v := c.cached(sts[i], chain[i], k, bothSrc, time.Now()); v.status != StatusGood {
				b.Fatal(v.status)
			}
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	w := getWorld(b)
	c, _ := newChecker(b, testConfig(), nil)
	chain := chainOf(w.pki.Servers["ok.amc.test"])
	ctx := context.Background()
	p := hard(bothSrc...)
	if err := c.Check(ctx, chain, p); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Check(ctx, chain, p); err != nil {
			b.Fatal(err)
		}
	}
}

// An OCSP "unknown" answer decides nothing: the next source does.
func TestOCSPUnknownFallsThrough(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	leaf := p.Servers["ok.amc.test"]
	url := ocspServer(t, func(r *ocsp.Request) []byte {
		return ocspResponseWith(t, p.OSIServeur, p.OSIServeur, r.SerialNumber, false, ocsp.Unknown)
	})
	cfg := testConfig()
	cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), OCSPURL: url}}
	c, _ := newChecker(t, cfg, nil)
	chain := chainOf(leaf)
	wantStatus(t, c.Check(context.Background(), chain[:2], hard(SourceOCSP)), StatusUnknown, SourceNone)
	wantStatus(t, c.Check(context.Background(), chain[:2], hard(SourceOCSP, SourceCRL)), StatusGood, "")
}

// Real IGC-Santé leaves point at their delta CRL over LDAP only: the
// pointer is read, and left out of what is fetched.
func TestLDAPDeltaPointerOfRealLeaf(t *testing.T) {
	b, err := os.ReadFile("../../testdata/reference-pki/org-sign-testsign-asip-2021.pem")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	urls := FreshestCRLURLs(cert)
	if len(urls) != 1 || !strings.HasPrefix(urls[0], "ldap://annuaire-igc.esante.gouv.fr/") {
		t.Fatalf("Freshest CRL pointer %v", urls)
	}
	if u := usableURLs(urls); len(u) != 0 {
		t.Fatalf("LDAP URL kept for fetching: %v", u)
	}
	if u := usableURLs(cert.CRLDistributionPoints); len(u) != 1 || u[0] != "http://igc-sante.esante.gouv.fr/CRL/ACI-EL-ORG-TEST.crl" {
		t.Fatalf("HTTP CRL distribution point %v", u)
	}
}

// With its sources down, a certificate's checks do not each go to the
// network again: the failure is remembered for a check interval, while the
// background refresh keeps trying.
func TestFailedFetchIsNotRetriedByEveryRequest(t *testing.T) {
	w := getWorld(t)
	leaf, err := w.pki.IssueServer(w.pki.OSIServeur, "outage.amc.test", w.o)
	if err != nil {
		t.Fatal(err)
	}
	clk := testclock.New(time.Now())
	c, _ := newChecker(t, testConfig(), clk)
	chain := []*x509.Certificate{leaf.Cert, w.pki.OSIServeur.Cert}
	w.srv.SetFault(sim.FaultDown, 0)
	wantStatus(t, c.Check(context.Background(), chain, soft(SourceOCSP)), StatusGood, "")
	before := w.srv.OCSPRequests.Load()
	for i := 0; i < 10; i++ {
		wantStatus(t, c.Check(context.Background(), chain, hard(SourceOCSP)), StatusUnknown, SourceNone)
	}
	if n := w.srv.OCSPRequests.Load() - before; n != 0 {
		t.Fatalf("%d OCSP requests while the failure is remembered", n)
	}
	// A check interval later, a request tries again, and succeeds.
	w.srv.SetFault(sim.FaultNone, 0)
	clk.Add(2 * time.Minute)
	wantStatus(t, c.Check(context.Background(), chain, hard(SourceOCSP)), StatusGood, "")
}

// Without a transport from the outbound proxy configuration, fetches go
// directly: the proxy environment variables are not followed (net/http's
// default transport would).
func TestDefaultTransportIgnoresProxyEnvironment(t *testing.T) {
	c, err := New(Options{Config: testConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if tr, ok := c.client.Transport.(*http.Transport); !ok || tr.Proxy != nil {
		t.Fatalf("default fetch transport %T follows a proxy function", c.client.Transport)
	}
}
