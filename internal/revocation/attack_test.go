package revocation

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/crypto/ocsp"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/sim"
	"github.com/roc-proxy/roc-proxy/internal/testclock"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// This file is a second hostile review of issue 10: each test plays a
// partner, authority or responder that got through (or made the proxy
// misbehave) after the first round of fixes, and failed before its fix.

func defaultRevocationConfig() config.Revocation {
	return config.Revocation{RefreshAt: config.DefaultRefreshAt, Grace: config.DefaultGrace, ClockSkew: config.DefaultClockSkew,
		FetchTimeout: config.DefaultFetchTimeout, CheckInterval: config.DefaultCheckInterval, MaxCRLBytes: config.DefaultMaxCRLBytes,
		MaxOCSPBytes: config.DefaultMaxOCSPBytes, MaxStatusAge: config.DefaultMaxStatusAge, StartupBudget: config.DefaultStartupBudget}
}

// A partner served for more than a day on the same pooled keep-alive
// connections makes no new handshake: only the connection's standing check
// (Binding.Allow) asks about its chain. The certificate must still count as
// in use, so that max_status_age keeps re-asking its status; otherwise it is
// dropped from the background refresh after a day and a revocation is seen
// only at the 7-day CRL's refresh point, days later.
func TestPooledPartnerKeptBusyPastADayStillReasked(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	clk := testclock.New(time.Now())
	w.srv.Now, w.srv.Validity = clk.Now, 7*24*time.Hour
	t.Cleanup(func() { w.srv.Now, w.srv.Validity = nil, 24*time.Hour })
	leaf, err := p.IssueServer(p.OSIServeur, "busy.amc.test", w.o)
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultRevocationConfig()
	c, _ := newChecker(t, cfg, clk)
	ctx := context.Background()
	rc := c.ForRoute(hard(config.DefaultRevocationSources.Names()...))
	chain := []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}
	// The handshake of the one pooled connection.
	if err := rc.CheckChain(ctx, chain); err != nil {
		t.Fatal(err)
	}
	b := rc.WatchChain(chain, nil)
	defer b.Release()
	// 25 hours of traffic on that connection, the refresh running.
	for end := clk.Now().Add(25 * time.Hour); clk.Now().Before(end); {
		clk.Add(cfg.CheckInterval)
		c.RefreshDue(ctx)
		if err := b.Allow(); err != nil {
			t.Fatalf("good partner refused on its pooled connection after %s: %v", 25*time.Hour-end.Sub(clk.Now()), err)
		}
	}
	w.srv.Revoke("ac-serveur", leaf.Cert.SerialNumber)
	revokedAt := clk.Now()
	for b.Allow() == nil {
		if clk.Now().Sub(revokedAt) > 4*24*time.Hour {
			t.Fatal("revocation not seen on the pooled connection after 4 days")
		}
		clk.Add(cfg.CheckInterval)
		c.RefreshDue(ctx)
	}
	detected := clk.Now().Sub(revokedAt)
	if bound := cfg.MaxStatusAge + cfg.CheckInterval; detected > bound {
		t.Errorf("revocation seen on the pooled connection after %s, want at most max_status_age + check_interval = %s", detected, bound)
	}
}

// idpExt is a critical Issuing Distribution Point naming the partition
// uri: the CRL covers only the certificates whose distribution point it is.
func idpExt(t testing.TB, uri string) pkix.Extension {
	t.Helper()
	name := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(uri)}
	fullName, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: mustMarshal(t, name)})
	if err != nil {
		t.Fatal(err)
	}
	dp, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: fullName})
	if err != nil {
		t.Fatal(err)
	}
	v, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: dp})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidIssuingDP, Critical: true, Value: v}
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An authority that partitions its CRL (RFC 5280 Issuing Distribution
// Point): each partition covers only the certificates that point at it. A
// revoked partner points at partition 2, which is made unreachable; the
// fresh partition 1, which a good partner pointed at, does not list it,
// and must not say "good" for a certificate it does not cover.
func TestCRLPartitionCoversOnlyItsCertificates(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	part1, part2 := newMutableServer(t), newMutableServer(t)
	issue := func(name, crl string) *testpki.Cert {
		c, err := p.OSIServeur.Issue(testpki.Template{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, CRLURL: crl})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	good, revoked := issue("part1.amc.test", part1.url), issue("part2.amc.test", part2.url)
	t0 := time.Now()
	part1.set(crlAt(t, p.OSIServeur, 20, t0.Add(-time.Hour), t0.Add(24*time.Hour), nil, 0, idpExt(t, part1.url)), "")
	part2.set(crlAt(t, p.OSIServeur, 20, t0.Add(-time.Hour), t0.Add(24*time.Hour), []*big.Int{revoked.Cert.SerialNumber}, 1, idpExt(t, part2.url)), "")
	c, _ := newChecker(t, testConfig(), nil)
	ctx := context.Background()
	wantStatus(t, c.Check(ctx, []*x509.Certificate{good.Cert, p.OSIServeur.Cert}, hard(SourceCRL)), StatusGood, "")
	part2.set(nil, "") // partition 2 unreachable
	wantStatus(t, c.Check(ctx, []*x509.Certificate{revoked.Cert, p.OSIServeur.Cert}, hard(SourceCRL)), StatusUnknown, SourceNone)
	// Once partition 2 answers, the revocation it lists decides.
	part2.set(crlAt(t, p.OSIServeur, 20, t0.Add(-time.Hour), t0.Add(24*time.Hour), []*big.Int{revoked.Cert.SerialNumber}, 1, idpExt(t, part2.url)), "")
	c2, _ := newChecker(t, testConfig(), nil)
	wantStatus(t, c2.Check(ctx, []*x509.Certificate{revoked.Cert, p.OSIServeur.Cert}, hard(SourceCRL)), StatusRevoked, SourceCRL)
	wantStatus(t, c2.Check(ctx, []*x509.Certificate{good.Cert, p.OSIServeur.Cert}, hard(SourceCRL)), StatusGood, "")
	// Reading the partition of a certificate stays allocation-free on the
	// request path.
	st := c2.issuer(p.OSIServeur.Cert)
	k, _ := keyOfSerial(good.Cert.SerialNumber)
	if n := testing.AllocsPerRun(100, func() { c2.cached(st, good.Cert, k, []string{SourceCRL}, time.Now()) }); n != 0 {
		t.Errorf("%v allocations per cached check against a partitioned CRL", n)
	}
}

// Every CRL the authority signed is a statement that what it lists is
// revoked (rule 1), even when it does not replace the cached CRL: the same
// number and thisUpdate issued again with one more entry (a careless CA
// re-issuing), or a newer number dated before the cached one (the CA's
// clock stepped back). Neither may be dropped with the revocation it adds.
func TestRefusedCRLStillRevokes(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	t0 := time.Now()
	for _, tc := range []struct {
		name    string
		number  int64
		this    time.Time
		refused bool
	}{
		{"same number and thisUpdate, one more entry", 10, t0.Add(-time.Hour), false},
		{"higher number dated before the cached CRL", 11, t0.Add(-2 * time.Hour), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf, err := p.IssueServer(p.OSIServeur, "reissued.amc.test", testpki.Options{})
			if err != nil {
				t.Fatal(err)
			}
			chain := []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}
			srv := newMutableServer(t)
			srv.set(crlAt(t, p.OSIServeur, 10, t0.Add(-time.Hour), t0.Add(24*time.Hour), nil, 0), "")
			cfg := testConfig()
			cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), CRLURLs: []string{srv.url}}}
			clk := testclock.New(t0)
			c, _ := newChecker(t, cfg, clk)
			ctx := context.Background()
			c.Prefetch(ctx, []*x509.Certificate{p.OSIServeur.Cert}, nil)
			wantStatus(t, c.Check(ctx, chain, hard(SourceCRL)), StatusGood, "")
			srv.set(crlAt(t, p.OSIServeur, tc.number, tc.this, t0.Add(24*time.Hour), []*big.Int{leaf.Cert.SerialNumber}, 1), "")
			clk.Add(13 * time.Hour) // past the refresh point
			c.RefreshDue(ctx)
			wantStatus(t, c.Check(ctx, chain, hard(SourceCRL)), StatusRevoked, SourceCRL)
			if n := c.Snapshot().Issuers[0].CRLs[0].Number; n != "10" {
				t.Errorf("cached CRL number %s, want 10 kept", n)
			}
		})
	}
}

// A file:// URL is read only while the configuration names it: one that
// reaches the checker otherwise (here from the persisted cache's index,
// after the configuration dropped it, or written there by whoever can
// write the cache folder) is never read.
func TestPersistedFileURLIsNotReadOnceUnconfigured(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	t0 := time.Now()
	dir := t.TempDir()
	path := filepath.Join(dir, "ac-serveur.crl")
	if err := os.WriteFile(path, crlAt(t, p.OSIServeur, 10, t0.Add(-time.Hour), t0.Add(24*time.Hour), nil, 0), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.CacheDir = t.TempDir()
	cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), CRLURLs: []string{"file://" + path}}}
	ctx := context.Background()
	c1, _ := newChecker(t, cfg, nil)
	c1.Prefetch(ctx, []*x509.Certificate{p.OSIServeur.Cert}, nil)
	c1.Close()

	// The configuration no longer names the file; the file changes.
	cfg.Issuers = nil
	if err := os.WriteFile(path, crlAt(t, p.OSIServeur, 11, t0, t0.Add(24*time.Hour), nil, 0), 0o600); err != nil {
		t.Fatal(err)
	}
	clk := testclock.New(t0.Add(13 * time.Hour)) // past the refresh point of the persisted CRL
	c2, _ := newChecker(t, cfg, clk)
	c2.Prefetch(ctx, []*x509.Certificate{p.OSIServeur.Cert}, nil)
	c2.RefreshDue(ctx)
	for _, is := range c2.Snapshot().Issuers {
		for _, l := range is.CRLs {
			if strings.HasPrefix(strings.ToLower(l.URL), "file:") && (l.Number == "11" || l.LastError != "") {
				t.Errorf("file URL %s no longer configured was read again: %+v", l.URL, l)
			}
		}
	}
}

// Configured file URLs as RFC 8089 writes them are read as the same file:
// file:///p, FILE:///p, file:/p and file://localhost/p all name /p;
// config check accepts them all, so the checker must read them all.
func TestConfiguredFileURLSpellings(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	leaf := p.Servers["ok.amc.test"]
	path := filepath.Join(t.TempDir(), "ac-serveur.crl")
	if err := os.WriteFile(path, crlAt(t, p.OSIServeur, 1, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), []*big.Int{leaf.Cert.SerialNumber}, 1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"file://" + path, "FILE://" + path, "file:" + path, "file://localhost" + path} {
		t.Run(u, func(t *testing.T) {
			cfg := testConfig()
			cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), CRLURLs: []string{u}}}
			c, _ := newChecker(t, cfg, nil)
			wantStatus(t, c.Check(context.Background(), []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}, hard(SourceCRL)), StatusRevoked, SourceCRL)
		})
	}
}

// A careless authority lets each partner certificate carry its own CRL and
// OCSP URLs (here 24 partners, each with URLs of its own, all failing).
// What the checker keeps per authority (CRL sources fetched at every
// refresh) and the URL labels of its metrics must stay bounded whatever
// the certificates say.
func TestURLsFromPartnerCertificatesStayBounded(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	down := newMutableServer(t) // 503 for everything
	c, m := newChecker(t, testConfig(), nil)
	ctx := context.Background()
	const partners = 24
	for i := 0; i < partners; i++ {
		name := fmt.Sprintf("p%d.careless.test", i)
		leaf, err := p.OSIServeur.Issue(testpki.Template{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}, KeyBits: 1024,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			CRLURL:      fmt.Sprintf("%s/%d.crl", down.url, i), OCSPURL: fmt.Sprintf("%s/ocsp/%d", down.url, i)})
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, c.Check(ctx, []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}, hard(bothSrc...)), StatusUnknown, SourceNone)
	}
	c.RefreshDue(ctx)
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
	if len(urls) > 2*maxLearnedURLs+1 {
		t.Errorf("%d distinct url label values after %d partners with URLs of their own", len(urls), partners)
	}
	st := c.issuer(p.OSIServeur.Cert)
	c.mu.RLock()
	n := len(st.sources)
	c.mu.RUnlock()
	if n > maxLearnedURLs {
		t.Errorf("%d CRL sources kept (and fetched at every refresh) for one authority", n)
	}
}

// A CRL URL read from a partner certificate that never answers (the
// authority moved its CRL, or the certificate points at a black hole) is
// not fetched again at every check interval for ever: only the configured
// URLs readiness waits for are; the others back off like a CRL that brings
// nothing new.
func TestDeadCRLURLFromCertificateBacksOff(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	down := newMutableServer(t) // 503
	leaf, err := p.OSIServeur.Issue(testpki.Template{Subject: pkix.Name{CommonName: "dead-crl.amc.test"}, DNSNames: []string{"dead-crl.amc.test"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, CRLURL: down.url, OCSPURL: w.o.OCSPURL()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	clk := testclock.New(time.Now())
	c, _ := newChecker(t, cfg, clk)
	ctx := context.Background()
	// OCSP answers, so the partner is good; its CRL URL is dead.
	wantStatus(t, c.Check(ctx, []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}, hard(SourceCRL, SourceOCSP)), StatusGood, "")
	before := down.requests.Load()
	for i := 0; i < 120; i++ { // two hours of 1-minute check intervals
		clk.Add(cfg.CheckInterval)
		c.RefreshDue(ctx)
	}
	if n := down.requests.Load() - before; n > 20 {
		t.Errorf("%d fetches of a dead CRL URL read from a certificate in two hours: no back-off", n)
	}
}

// The authority revoked its delegated OCSP responder (its key leaked) and
// lists it in its CRL; whoever holds that key answers "good" about a
// partner revoked since the last CRL. An answer signed by a responder the
// checker knows revoked is not an answer.
func TestAnswerFromRevokedDelegatedResponderRefused(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	leaf, err := p.IssueServer(p.OSIServeur, "leaked-responder.amc.test", testpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	resp := delegated(t, w)
	t0 := time.Now()
	url := ocspServer(t, func(r *ocsp.Request) []byte {
		return ocspAt(t, p.OSIServeur, resp, r.SerialNumber, ocsp.Good, 0, t0.Add(-time.Minute), t0.Add(time.Hour), true)
	})
	crlSrv := newMutableServer(t)
	crlSrv.set(crlAt(t, p.OSIServeur, 7, t0.Add(-time.Hour), t0.Add(24*time.Hour), []*big.Int{resp.Cert.SerialNumber}, ocsp.KeyCompromise), "")
	cfg := testConfig()
	cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), OCSPURL: url, CRLURLs: []string{crlSrv.url}}}
	c, _ := newChecker(t, cfg, nil)
	ctx := context.Background()
	c.Prefetch(ctx, []*x509.Certificate{p.OSIServeur.Cert}, nil)
	wantStatus(t, c.Check(ctx, []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}, hard(SourceOCSP)), StatusUnknown, SourceNone)
}

// Shapes of RFC 6960 to craft a BasicOCSPResponse with several
// SingleResponses, which x/crypto/ocsp cannot make.
type craftCertID struct {
	HashAlgorithm pkix.AlgorithmIdentifier
	NameHash      []byte
	KeyHash       []byte
	Serial        *big.Int
}

type craftRevokedInfo struct {
	RevocationTime time.Time       `asn1:"generalized"`
	Reason         asn1.Enumerated `asn1:"explicit,tag:0,optional"`
}

type craftSingle struct {
	CertID     craftCertID
	Good       asn1.Flag        `asn1:"tag:0,optional"`
	Revoked    craftRevokedInfo `asn1:"tag:1,optional"`
	ThisUpdate time.Time        `asn1:"generalized"`
	NextUpdate time.Time        `asn1:"generalized,explicit,tag:0,optional"`
}

type craftData struct {
	ResponderID asn1.RawValue
	ProducedAt  time.Time `asn1:"generalized"`
	Responses   []craftSingle
}

type craftBasic struct {
	Data      asn1.RawValue
	Algorithm pkix.AlgorithmIdentifier
	Signature asn1.BitString
}

type craftResponseBytes struct {
	Type     asn1.ObjectIdentifier
	Response []byte
}

type craftResponse struct {
	Status asn1.Enumerated
	Bytes  craftResponseBytes `asn1:"explicit,tag:0"`
}

// craftSingleFor is the SingleResponse about serial issued by ca (SHA-1
// CertID), revoked (keyCompromise) or good.
func craftSingleFor(t testing.TB, ca *x509.Certificate, serial *big.Int, revoked bool, this, next time.Time) craftSingle {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(ca.RawSubjectPublicKeyInfo, &spki); err != nil {
		t.Fatal(err)
	}
	s := craftSingle{CertID: craftCertID{HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}, Parameters: asn1.NullRawValue},
		NameHash: digest(crypto.SHA1, ca.RawSubject), KeyHash: digest(crypto.SHA1, spki.PublicKey.RightAlign()), Serial: serial},
		ThisUpdate: this, NextUpdate: next}
	if revoked {
		s.Revoked = craftRevokedInfo{RevocationTime: this.Add(-time.Minute), Reason: asn1.Enumerated(ocsp.KeyCompromise)}
	} else {
		s.Good = true
	}
	return s
}

// craftOCSP signs, with signer's key (by name), a response holding singles
// in that order.
func craftOCSP(t testing.TB, signer *testpki.Cert, singles []craftSingle, produced time.Time) []byte {
	tbs := mustMarshal(t, craftData{ResponderID: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: signer.Cert.RawSubject},
		ProducedAt: produced, Responses: singles})
	h := sha256.Sum256(tbs)
	sig, err := rsa.SignPKCS1v15(nil, signer.Key, crypto.SHA256, h[:])
	if err != nil {
		t.Fatal(err)
	}
	basic := mustMarshal(t, craftBasic{Data: asn1.RawValue{FullBytes: tbs},
		Algorithm: pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, Parameters: asn1.NullRawValue},
		Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	return mustMarshal(t, craftResponse{Bytes: craftResponseBytes{Type: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}, Response: basic}})
}

// The responder answers with several SingleResponses (RFC 6960 allows
// it): first one for the same serial under another authority, then the
// one about our partner. The answer about our partner decides, whatever
// its place: "revoked" there is revoked (a soft route let it through when
// the whole answer was thrown away), and "good" under another authority is
// never taken for ours.
func TestOCSPAnswerWithSeveralSingleResponses(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	leaf := p.Servers["ok.amc.test"]
	twin, err := p.OSIRoot.Issue(testpki.Template{Subject: pkix.Name{CommonName: "TEST AC-SERVEUR JUMELLE"}, IsCA: true, KeyBits: 1024})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	this, next := now.Add(-time.Minute), now.Add(time.Hour)
	serial := leaf.Cert.SerialNumber
	for _, tc := range []struct {
		name    string
		singles []craftSingle
		want    Status
	}{
		{"other authority good, ours revoked", []craftSingle{craftSingleFor(t, twin.Cert, serial, false, this, next), craftSingleFor(t, p.OSIServeur.Cert, serial, true, this, next)}, StatusRevoked},
		{"ours revoked, other authority good", []craftSingle{craftSingleFor(t, p.OSIServeur.Cert, serial, true, this, next), craftSingleFor(t, twin.Cert, serial, false, this, next)}, StatusRevoked},
		{"only other authority good", []craftSingle{craftSingleFor(t, twin.Cert, serial, false, this, next)}, StatusUnknown},
		{"other authority revoked, ours good", []craftSingle{craftSingleFor(t, twin.Cert, serial, true, this, next), craftSingleFor(t, p.OSIServeur.Cert, serial, false, this, next)}, StatusGood},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der := craftOCSP(t, p.OSIServeur, tc.singles, now)
			url := ocspServer(t, func(*ocsp.Request) []byte { return der })
			cfg := testConfig()
			cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), OCSPURL: url}}
			c, _ := newChecker(t, cfg, nil)
			chain := []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}
			switch tc.want {
			case StatusRevoked:
				wantStatus(t, c.Check(context.Background(), chain, soft(SourceOCSP)), StatusRevoked, SourceOCSP)
			case StatusGood:
				wantStatus(t, c.Check(context.Background(), chain, hard(SourceOCSP)), StatusGood, "")
			default:
				wantStatus(t, c.Check(context.Background(), chain, hard(SourceOCSP)), StatusUnknown, SourceNone)
			}
		})
	}
}

// Whoever can write the cache folder (a shared volume) replaces a
// persisted CRL with a FIFO, and adds an index entry naming a file outside
// the folder. Start-up must neither hang on the FIFO (it held Prefetch,
// hence readiness and SIGTERM, for ever) nor read outside the folder; the
// honest entries still load.
func TestTamperedCacheFolderNeitherHangsNorEscapes(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	cfg := testConfig()
	cfg.CacheDir = t.TempDir()
	ctx := context.Background()
	ok, revoked := chainOf(p.Servers["ok.amc.test"]), chainOf(w.revoked)
	c1, _ := newChecker(t, cfg, nil)
	wantStatus(t, c1.Check(ctx, ok, hard(SourceOCSP)), StatusGood, "")
	wantStatus(t, c1.Check(ctx, revoked, hard(SourceCRL)), StatusRevoked, SourceCRL)
	c1.Close()

	// Tamper: every persisted CRL becomes a FIFO; an entry names a file
	// outside the folder (a valid CRL of the authority, so that reading it
	// would show).
	idx := readIndex(t, cfg.CacheDir)
	outside := filepath.Join(t.TempDir(), "outside.der")
	if err := os.WriteFile(outside, crlAt(t, p.OSIServeur, 999, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), nil, 0), 0o600); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(cfg.CacheDir, outside)
	if err != nil {
		t.Fatal(err)
	}
	fifos := 0
	for name, e := range idx {
		if e.Kind == "crl" {
			os.Remove(filepath.Join(cfg.CacheDir, name))
			if err := syscall.Mkfifo(filepath.Join(cfg.CacheDir, name), 0o600); err != nil {
				t.Skip("no FIFO on this system:", err)
			}
			fifos++
			idx[rel] = &diskEntry{Kind: "crl", URL: e.URL + "?outside", Issuer: spkiHash(p.OSIServeur.Cert)}
		}
	}
	if fifos == 0 {
		t.Fatal("no persisted CRL to tamper with")
	}
	writeIndex(t, cfg.CacheDir, idx)

	w.srv.SetFault(sim.FaultDown, 0)
	c2, _ := newChecker(t, cfg, nil)
	within(t, 20*time.Second, "start-up with a tampered cache folder", func() {
		c2.Prefetch(ctx, []*x509.Certificate{p.OSIServeur.Cert, p.OSIRoot.Cert}, nil)
	})
	for _, is := range c2.Snapshot().Issuers {
		for _, l := range is.CRLs {
			if l.Number == "999" {
				t.Errorf("a file outside the cache folder was read: %+v", l)
			}
		}
	}
	// The honest OCSP answer still makes the restart warm.
	wantStatus(t, c2.Check(ctx, ok, hard(SourceOCSP)), StatusGood, "")

	// The index itself replaced with a FIFO: a clear error, not a hang.
	os.Remove(filepath.Join(cfg.CacheDir, indexFile))
	if err := syscall.Mkfifo(filepath.Join(cfg.CacheDir, indexFile), 0o600); err != nil {
		t.Fatal(err)
	}
	within(t, 20*time.Second, "opening a cache folder whose index is a FIFO", func() {
		if _, err := New(Options{Config: cfg, Metrics: newMetrics(t)}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("error %v, want not a regular file", err)
		}
	})
}

// Attacks of this review that the checker already withstood, kept as
// regression tests: each plays the misbehaving server or authority and
// wants the partner refused under a hard policy.
func TestHeldAttacks(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	leaf := p.Servers["ok.amc.test"]
	chain := []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}
	t0 := time.Now()
	serve := func(t *testing.T, h http.HandlerFunc) (string, *atomic.Int64) {
		var n atomic.Int64
		s := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { n.Add(1); h(rw, r) }))
		t.Cleanup(s.Close)
		return s.URL + "/crl", &n
	}
	withCRL := func(t *testing.T, url string, deltas ...string) *Checker {
		cfg := testConfig()
		cfg.FetchTimeout = 500 * time.Millisecond
		cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), CRLURLs: []string{url}, DeltaCRLURLs: deltas}}
		c, _ := newChecker(t, cfg, nil)
		return c
	}
	t.Run("slow drip under the deadline of each read", func(t *testing.T) {
		url, _ := serve(t, func(rw http.ResponseWriter, r *http.Request) {
			for {
				if _, err := rw.Write([]byte{0x30}); err != nil {
					return
				}
				rw.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		})
		within(t, 20*time.Second, "check against a slow-drip CRL server", func() {
			wantStatus(t, withCRL(t, url).Check(context.Background(), chain, hard(SourceCRL)), StatusUnknown, SourceNone)
		})
	})
	t.Run("redirect loop", func(t *testing.T) {
		url, n := serve(t, func(rw http.ResponseWriter, r *http.Request) { http.Redirect(rw, r, r.URL.String(), http.StatusFound) })
		wantStatus(t, withCRL(t, url).Check(context.Background(), chain, hard(SourceCRL)), StatusUnknown, SourceNone)
		if n.Load() != 1 {
			t.Errorf("%d requests: a redirect was followed", n.Load())
		}
	})
	t.Run("304 to a request that was not conditional", func(t *testing.T) {
		url, _ := serve(t, func(rw http.ResponseWriter, r *http.Request) { rw.WriteHeader(http.StatusNotModified) })
		wantStatus(t, withCRL(t, url).Check(context.Background(), chain, hard(SourceCRL)), StatusUnknown, SourceNone)
	})
	t.Run("304 for ever keeps no CRL past its nextUpdate", func(t *testing.T) {
		var notModified atomic.Bool
		der := crlAt(t, p.OSIServeur, 3, t0.Add(-time.Hour), t0.Add(2*time.Hour), nil, 0)
		url, _ := serve(t, func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("ETag", `"x"`)
			if notModified.Load() {
				rw.WriteHeader(http.StatusNotModified)
				return
			}
			rw.Write(der)
		})
		cfg := testConfig()
		cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), CRLURLs: []string{url}}}
		clk := testclock.New(t0)
		c, _ := newChecker(t, cfg, clk)
		wantStatus(t, c.Check(context.Background(), chain, hard(SourceCRL)), StatusGood, "")
		notModified.Store(true)
		for i := 0; i < 4*60; i++ {
			clk.Add(time.Minute)
			c.RefreshDue(context.Background())
		}
		wantStatus(t, c.Check(context.Background(), chain, hard(SourceCRL)), StatusUnknown, SourceNone)
	})
	t.Run("critical unknown extension on a CRL entry", func(t *testing.T) {
		tmpl := &x509.RevocationList{Number: big.NewInt(4), ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(time.Hour),
			RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(77), RevocationTime: t0.Add(-2 * time.Hour),
				ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}}}}}
		der, err := x509.CreateRevocationList(nil, tmpl, p.OSIServeur.Cert, p.OSIServeur.Key)
		if err != nil {
			t.Fatal(err)
		}
		url, _ := serve(t, func(rw http.ResponseWriter, r *http.Request) { rw.Write(der) })
		wantStatus(t, withCRL(t, url).Check(context.Background(), chain, hard(SourceCRL)), StatusUnknown, SourceNone)
	})
	t.Run("delta removeFromCRL for a keyCompromise entry", func(t *testing.T) {
		base := crlAt(t, p.OSIServeur, 10, t0.Add(-time.Hour), t0.Add(24*time.Hour), []*big.Int{leaf.Cert.SerialNumber}, ocsp.KeyCompromise)
		delta := crlAt(t, p.OSIServeur, 11, t0.Add(-time.Minute), t0.Add(time.Hour), []*big.Int{leaf.Cert.SerialNumber}, reasonRemoveFromCRL, deltaExt(t, 10))
		bu, _ := serve(t, func(rw http.ResponseWriter, r *http.Request) { rw.Write(base) })
		du, _ := serve(t, func(rw http.ResponseWriter, r *http.Request) { rw.Write(delta) })
		wantStatus(t, withCRL(t, bu, du).Check(context.Background(), chain, soft(SourceCRL)), StatusRevoked, SourceCRL)
	})
	t.Run("CRL signed by the authority's name with another key (rollover)", func(t *testing.T) {
		rolled, err := p.OSIRoot.Issue(testpki.Template{Subject: p.OSIServeur.Cert.Subject, IsCA: true, KeyBits: 1024})
		if err != nil {
			t.Fatal(err)
		}
		der := crlAt(t, rolled, 50, t0.Add(-time.Hour), t0.Add(24*time.Hour), nil, 0)
		url, _ := serve(t, func(rw http.ResponseWriter, r *http.Request) { rw.Write(der) })
		wantStatus(t, withCRL(t, url).Check(context.Background(), chain, hard(SourceCRL)), StatusUnknown, SourceNone)
	})
	t.Run("CRL thisUpdate beyond the clock skew", func(t *testing.T) {
		der := crlAt(t, p.OSIServeur, 5, t0.Add(time.Hour), t0.Add(24*time.Hour), nil, 0)
		url, _ := serve(t, func(rw http.ResponseWriter, r *http.Request) { rw.Write(der) })
		wantStatus(t, withCRL(t, url).Check(context.Background(), chain, hard(SourceCRL)), StatusUnknown, SourceNone)
	})
	for _, tc := range []struct {
		name   string
		issuer *testpki.Cert
		eku    []x509.ExtKeyUsage
	}{
		{"OCSP signed by the CA certificate re-issued by the root with another key", p.OSIRoot, []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}},
		{"OCSP signed by the CA certificate re-issued by itself with another key, no OCSPSigning", p.OSIServeur, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			twin, err := tc.issuer.Issue(testpki.Template{Subject: p.OSIServeur.Cert.Subject, IsCA: true, ExtKeyUsage: tc.eku, KeyBits: 1024})
			if err != nil {
				t.Fatal(err)
			}
			url := ocspServer(t, func(r *ocsp.Request) []byte {
				return ocspAt(t, p.OSIServeur, twin, r.SerialNumber, ocsp.Good, 0, t0.Add(-time.Minute), t0.Add(time.Hour), true)
			})
			cfg := testConfig()
			cfg.Issuers = []*config.RevocationIssuer{{Subject: p.OSIServeur.Cert.Subject.String(), OCSPURL: url}}
			c, _ := newChecker(t, cfg, nil)
			wantStatus(t, c.Check(context.Background(), chain, hard(SourceOCSP)), StatusUnknown, SourceNone)
		})
	}
}
