// Package tokenroute is the rule of a route that injects a signed token
// (ROC legal-person token, DMP VIHF): for each SIH request, refuse while
// ORG_SIGN is known revoked, sign (or take the cached token), and record
// the token durably in the audit log before it leaves; then record the
// exchange's result. The patient's INS goes into the record as configured
// (audit.patient_id: hashed by default).
//
// It owns that order and the record's content. It never builds the token
// itself (internal/saml does), never writes the log (internal/audit does)
// and never decides revocation (internal/revocation does): a token that
// could not be recorded never leaves.
package tokenroute

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/proxy"
	"github.com/roc-proxy/roc-proxy/internal/revocation"
	"github.com/roc-proxy/roc-proxy/internal/saml"
)

// SignerStatus says what is known of the establishment's own
// certificates' revocation (revocation.Checker).
type SignerStatus interface {
	OwnStatus(role string) revocation.Status
}

// Recorder is the audit log (audit.Log).
type Recorder interface {
	// Signed records a token durably; it leaves only if this succeeds.
	Signed(ctx context.Context, r *audit.Record) error
	// Result records the exchange's outcome.
	Result(r *audit.Record)
}

// Options are a token route's parts and settings.
type Options struct {
	Route    string
	Injector *saml.Injector
	Status   SignerStatus
	// RefuseRevokedSigner refuses to sign while ORG_SIGN is known revoked
	// (revocation.refuse_revoked_signer).
	RefuseRevokedSigner bool
	Audit               Recorder
	// StoreAssertion keeps the whole assertion in the record
	// (audit.store_assertion).
	StoreAssertion bool
	// PatientID is how the patient's INS is recorded: keep, hash or drop
	// (audit.patient_id).
	PatientID config.PatientIDMode
	// PatientKey keys the INS hash (audit.patient_id_key): HMAC-SHA-256
	// under it; nil: a plain SHA-256.
	PatientKey []byte
}

// Source signs a route's tokens and records them: a proxy.TokenSource.
type Source struct{ o Options }

// New is the token source of one route.
func New(o Options) *Source { return &Source{o: o} }

// Token signs the request's token, unless ORG_SIGN is known revoked, and
// records it before it is returned.
func (s *Source) Token(r proxy.TokenRequest) ([]byte, string, error) {
	if s.o.RefuseRevokedSigner && s.o.Status.OwnStatus("ORG_SIGN") == revocation.StatusRevoked {
		return nil, "", proxy.ErrSignerRevoked
	}
	tok, err := s.o.Injector.Inject(r.Header, r.Body)
	if err != nil {
		return nil, "", err
	}
	// The digests' hex is computed once, when the token and the signer are
	// made, not per request.
	rec := &audit.Record{RequestID: r.RequestID, Route: s.o.Route, AssertionID: tok.AssertionID, Profile: tok.Profile,
		Issuer: tok.Issuer, NameID: tok.NameID, SignerSHA256: tok.SignerSHA256,
		AssertionSHA256: tok.AssertionSHA256, Cached: tok.Cached, Upstream: r.Upstream, Client: r.Client,
		Attributes: s.attributes(tok.Values)}
	if s.o.StoreAssertion {
		rec.Assertion = tok.Assertion
	}
	if err := s.o.Audit.Signed(r.Ctx, rec); err != nil {
		return nil, "", fmt.Errorf("%w: %v", proxy.ErrAuditUnavailable, err)
	}
	return tok.Body, tok.AssertionID, nil
}

// Result records the outcome of the exchange that carried assertionID.
func (s *Source) Result(requestID, assertionID string, status int, latency time.Duration, errorClass string) {
	s.o.Audit.Result(&audit.Record{RequestID: requestID, Route: s.o.Route, AssertionID: assertionID, Status: status,
		LatencyMS: float64(latency.Microseconds()) / 1000, ErrorClass: errorClass})
}

// attributes are the per-request values a record keeps; the patient's INS
// as configured (hashed by default).
func (s *Source) attributes(v *saml.Values) map[string]string {
	if v == nil {
		return nil
	}
	a := map[string]string{"subject_id": v.UserName, "purpose_of_use": v.PurposeOfUse, "authn_context": v.AuthnContext}
	var roles []string
	for _, r := range v.Roles {
		roles = append(roles, r.Code+"^"+r.CodeSystem)
	}
	a["roles"] = strings.Join(roles, ",")
	switch {
	case v.PatientINS == "":
		// No patient: no hash of nothing (the same for every record).
	case s.o.PatientID == config.PatientIDKeep:
		a[audit.AttrPatientINS] = v.PatientINS
	case s.o.PatientID == config.PatientIDHash:
		attr, h := audit.PatientHash(v.PatientINS, s.o.PatientKey)
		a[attr] = h
	}
	for k, val := range a {
		if val == "" {
			delete(a, k)
		}
	}
	return a
}
