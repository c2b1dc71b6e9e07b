package tokenroute

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/proxy"
	"github.com/roc-proxy/roc-proxy/internal/revocation"
	"github.com/roc-proxy/roc-proxy/internal/saml"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// A token for no patient (ROC, or a DMP request without the INS header)
// must not carry a "patient" hash: with patient_id hash, every such record
// carried SHA-256("") as patient_ins_sha256, a patient that does not exist
// and the same for every one of them.
func TestRecordOfNoPatientHasNoPatientHash(t *testing.T) {
	for _, mode := range []config.PatientIDMode{config.PatientIDHash, config.PatientIDKeep, config.PatientIDDrop} {
		s := New(Options{PatientID: mode})
		a := s.attributes(&saml.Values{UserName: "DUPONT Jeanne", PurposeOfUse: "normal"})
		if _, ok := a["patient_ins_sha256"]; ok {
			t.Errorf("patient_id %s: a record of no patient has patient_ins_sha256 %q", mode, a["patient_ins_sha256"])
		}
		if _, ok := a["patient_ins"]; ok {
			t.Errorf("patient_id %s: a record of no patient has patient_ins", mode)
		}
		with := s.attributes(&saml.Values{PatientINS: "279035121518989"})
		if mode == "hash" && (with["patient_ins_sha256"] == "" || strings.Contains(fmt.Sprint(with), "279035121518989")) {
			t.Errorf("patient_id hash: %v", with)
		}
	}
}

// status is ORG_SIGN's revocation status as the checker would say it.
type status revocation.Status

func (s status) OwnStatus(role string) revocation.Status {
	if role != "ORG_SIGN" {
		return revocation.StatusUnknown
	}
	return revocation.Status(s)
}

// recorder is an audit log that records in memory, or fails as a full
// disk does.
type recorder struct {
	mu      sync.Mutex
	fail    error
	signed  []*audit.Record
	results []*audit.Record
}

func (r *recorder) Signed(_ context.Context, rec *audit.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.signed = append(r.signed, rec)
	return nil
}

func (r *recorder) Result(rec *audit.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results = append(r.results, rec)
}

func injector(t testing.TB) *saml.Injector {
	t.Helper()
	p := testpki.MustShared(t)
	m, err := metrics.New(prometheus.NewRegistry(), metrics.BuildInfo{})
	if err != nil {
		t.Fatal(err)
	}
	signer := saml.NewSigner(p.Sign.Key, p.Sign.Cert)
	tok := &config.Token{Profile: "roc", Placement: "wsse", IssuerFormat: "rfc2253", Validity: 5 * time.Minute, ReuseFraction: 0.5,
		ExpiryMargin: 30 * time.Second, NotBeforeSkew: time.Minute, CacheEntries: 10, AuthnContext: config.DefaultAuthnContext}
	return saml.NewInjector(saml.InjectorOptions{Route: "idb", Token: tok, Signer: func() *saml.Signer { return signer }, Metrics: m})
}

const envelope = `<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><x/></S:Body></S:Envelope>`

func request() proxy.TokenRequest {
	return proxy.TokenRequest{Ctx: context.Background(), Header: http.Header{}, Body: []byte(envelope), RequestID: "req-1",
		Client: "127.0.0.1:1234", Upstream: "https://idb.amc.test/roc/idb/"}
}

// The rule's order under a revoked ORG_SIGN and a failing audit log: no
// token leaves unless it was recorded first, none is signed while ORG_SIGN
// is known revoked (unless refuse_revoked_signer is off), and what leaves
// is what was recorded.
func TestTokenLeavesOnlyRecorded(t *testing.T) {
	inj := injector(t)
	t.Run("revoked signer", func(t *testing.T) {
		rec := &recorder{}
		s := New(Options{Route: "idb", Injector: inj, Status: status(revocation.StatusRevoked), RefuseRevokedSigner: true, Audit: rec})
		if body, _, err := s.Token(request()); !errors.Is(err, proxy.ErrSignerRevoked) || body != nil {
			t.Fatalf("got a body (%d bytes) and %v, want ErrSignerRevoked", len(body), err)
		}
		if len(rec.signed) != 0 {
			t.Fatalf("%d records of a token never signed", len(rec.signed))
		}
	})
	t.Run("revoked signer, refusal off", func(t *testing.T) {
		rec := &recorder{}
		s := New(Options{Route: "idb", Injector: inj, Status: status(revocation.StatusRevoked), Audit: rec})
		if _, _, err := s.Token(request()); err != nil {
			t.Fatalf("refuse_revoked_signer off: %v", err)
		}
	})
	t.Run("audit log failing", func(t *testing.T) {
		rec := &recorder{fail: errors.New("no space left on device")}
		s := New(Options{Route: "idb", Injector: inj, Status: status(revocation.StatusGood), RefuseRevokedSigner: true, Audit: rec})
		body, id, err := s.Token(request())
		if !errors.Is(err, proxy.ErrAuditUnavailable) || body != nil || id != "" {
			t.Fatalf("got a body (%d bytes), id %q and %v, want ErrAuditUnavailable and nothing", len(body), id, err)
		}
	})
	t.Run("recorded", func(t *testing.T) {
		rec := &recorder{}
		s := New(Options{Route: "idb", Injector: inj, Status: status(revocation.StatusGood), RefuseRevokedSigner: true, Audit: rec})
		body, id, err := s.Token(request())
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.signed) != 1 || rec.signed[0].AssertionID != id || id == "" || !strings.Contains(string(body), id) {
			t.Fatalf("records %+v, id %q", rec.signed, id)
		}
		if r := rec.signed[0]; r.Route != "idb" || r.RequestID != "req-1" || r.AssertionSHA256 == "" || r.Assertion != nil {
			t.Errorf("record %+v", r)
		}
		s.Result("req-1", id, 200, 1500*time.Microsecond, "")
		if len(rec.results) != 1 || rec.results[0].AssertionID != id || rec.results[0].Status != 200 || rec.results[0].LatencyMS != 1.5 {
			t.Errorf("result %+v", rec.results)
		}
	})
}

// Each record's digests are its own token's, when tokens alternate
// (the hex encodings kept from one request to the next must follow the
// token): the assertion's SHA-256 of the stored assertion, and the
// signer's of ORG_SIGN's certificate.
func TestRecordDigestsFollowTheToken(t *testing.T) {
	rec := &recorder{}
	s := New(Options{Route: "idb", Injector: injector(t), Status: status(revocation.StatusGood), Audit: rec, StoreAssertion: true})
	// Another default namespace where the token goes: another token.
	other := `<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body><x/></Body></Envelope>`
	for _, env := range []string{envelope, other, envelope, other} {
		r := request()
		r.Body = []byte(env)
		if _, _, err := s.Token(r); err != nil {
			t.Fatal(err)
		}
	}
	signer := sha256.Sum256(testpki.MustShared(t).Sign.Cert.Raw)
	ids := map[string]bool{}
	for i, r := range rec.signed {
		ids[r.AssertionID] = true
		if sum := sha256.Sum256(r.Assertion); r.AssertionSHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("record %d: assertion digest %s, its assertion's is %x", i, r.AssertionSHA256, sum)
		}
		if r.SignerSHA256 != hex.EncodeToString(signer[:]) {
			t.Errorf("record %d: signer digest %s, ORG_SIGN's is %x", i, r.SignerSHA256, signer)
		}
	}
	if len(ids) != 2 {
		t.Fatalf("%d distinct tokens, want 2 alternating", len(ids))
	}
}
