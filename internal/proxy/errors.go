package proxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"

	"github.com/roc-proxy/roc-proxy/internal/egress"
	"github.com/roc-proxy/roc-proxy/internal/saml"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// Problem is what the SIH is told about a failure. Codes and reasons are
// stable identifiers; Message is for people. Internal detail (addresses,
// certificate subjects, Go errors) goes to the log only.
type Problem struct {
	Status  int    `json:"-"`
	Code    string `json:"error"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message"`
	// Source is the revocation source (ocsp, crl) that decided.
	Source string `json:"source,omitempty"`
	// Problems lists every missing or malformed per-request token value.
	Problems []string `json:"problems,omitempty"`
}

// errResponseSignature wraps a partner answer whose signature is missing or
// did not verify under an enforce policy.
var errResponseSignature = errors.New("partner response signature")

// ErrAuditUnavailable: the token could not be recorded; it does not leave.
var ErrAuditUnavailable = errors.New("the audit log cannot be written")

// ErrOwnCertificateRevoked: ORG_AUTH_CLI is known revoked and the partner
// refused it (the transport wraps the partner's refusal with it).
var ErrOwnCertificateRevoked = errors.New("the ORG_AUTH_CLI certificate is revoked and the partner refused it")

// ErrSignerRevoked: the ORG_SIGN certificate is revoked, nothing is signed.
var ErrSignerRevoked = errors.New("the ORG_SIGN certificate is revoked: renew it")

func problem(status int, code, reason, message string) Problem {
	return Problem{Status: status, Code: code, Reason: reason, Message: message}
}

// Error codes of the JSON error body.
const (
	CodeUnknownRoute        = "unknown_route"
	CodeBadRequest          = "bad_request"
	CodeBodyTooLarge        = "body_too_large"
	CodeUpstreamTLS         = "upstream_tls"
	CodeUpstreamTimeout     = "upstream_timeout"
	CodeUpstreamUnavailable = "upstream_unavailable"
	CodeUpstreamError       = "upstream_error"
	CodeClientClosed        = "client_closed"
	CodeBadTokenValues      = "bad_token_values"
	CodeBadEnvelope         = "bad_envelope"
	CodeSignerRevoked       = "signer_revoked"
	CodeAuditUnavailable    = "audit_unavailable"
	CodeSigningFailed       = "signing_failed"
	CodeMethodNotAllowed    = "method_not_allowed"
	CodeOverloaded          = "overloaded"
	CodeRequestTimeout      = "request_timeout"
	CodeInternal            = "internal_error"
)

// overloaded is the answer when the bodies in flight hold the whole
// memory budget: the SIH may try again shortly.
func overloaded() Problem {
	return problem(http.StatusServiceUnavailable, CodeOverloaded, "body_memory", "roc-proxy holds as many request and response bodies as server.max_body_memory allows: try again shortly")
}

// bodyProblem maps a failure to read the SIH's request body: the client's
// side of the exchange, never the partner's.
func bodyProblem(err error) Problem {
	var (
		maxBytes *http.MaxBytesError
		netErr   net.Error
	)
	switch {
	case errors.As(err, &maxBytes):
		return problem(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "", "request body exceeds the route's limit")
	case errors.Is(err, errOverBudget):
		return overloaded()
	case errors.As(err, &netErr) && netErr.Timeout():
		return problem(http.StatusRequestTimeout, CodeRequestTimeout, "read_timeout", "the request body did not arrive within server.read_timeout")
	}
	return problem(http.StatusBadRequest, CodeBadRequest, "incomplete_body", "the request body did not arrive whole or is malformed (cut short, or a bad chunk)")
}

// tokenProblem maps a token failure; nothing was signed.
func tokenProblem(err error) Problem {
	var ve *saml.ValuesError
	var ee *saml.EnvelopeError
	switch {
	case errors.As(err, &ve):
		p := problem(http.StatusBadRequest, CodeBadTokenValues, "", "the request lacks per-request values the token needs, or they are malformed")
		p.Problems = ve.Problems
		return p
	case errors.As(err, &ee):
		return problem(http.StatusBadRequest, CodeBadEnvelope, "", ee.Reason)
	case errors.Is(err, ErrAuditUnavailable):
		return problem(http.StatusServiceUnavailable, CodeAuditUnavailable, "", "the signed-token audit log cannot be written: no token leaves unrecorded")
	case errors.Is(err, ErrSignerRevoked):
		return problem(http.StatusServiceUnavailable, CodeSignerRevoked, "", "the establishment's signing certificate is revoked: no token is signed")
	}
	return problem(http.StatusInternalServerError, CodeSigningFailed, "", "the token could not be signed")
}

// StatusClientClosedRequest is logged (never sent: the connection is
// closed without an answer) when the SIH went away before the answer, as
// nginx does.
const StatusClientClosedRequest = 499

var reasonMessages = map[trust.Reason]string{
	trust.ReasonUnknownAuthority:      "the partner's certificate is not issued by an authority of the route's trust bundles",
	trust.ReasonExpired:               "the partner's certificate is expired or not yet valid",
	trust.ReasonNameMismatch:          "the partner's certificate does not carry the route's server name",
	trust.ReasonBadUsage:              "the partner's certificate is not a TLS server certificate",
	trust.ReasonPinMismatch:           "the partner's public key matches none of the route's pins",
	trust.ReasonNoCertificate:         "the partner sent no certificate",
	trust.ReasonInvalid:               "the partner's certificate chain is invalid",
	trust.ReasonRevoked:               "a certificate of the partner's chain is revoked",
	trust.ReasonRevocationUnavailable: "the revocation status of the partner's chain could not be established and the route's policy is hard",
}

var proxyMessages = map[string]string{
	egress.ReasonUnreachable:  "the outbound proxy cannot be reached",
	egress.ReasonAuth:         "the outbound proxy refused roc-proxy's credentials",
	egress.ReasonRefused:      "the outbound proxy refused to connect to the partner",
	egress.ReasonUpstream:     "the outbound proxy could not reach the partner",
	egress.ReasonProtocol:     "the outbound proxy gave no valid answer",
	egress.ReasonTunnelClosed: "the connection through the outbound proxy closed before the partner answered",
}

// problemFor maps an error from the upstream exchange to what the SIH gets;
// ctxErr is the request context's own error, which tells the route's total
// timeout and a departed client apart from the transport's own timeouts
// (net/http's response-header timeout also matches DeadlineExceeded). It is
// the only place where errors become HTTP statuses.
func problemFor(err, ctxErr error) Problem {
	var (
		maxBytes *http.MaxBytesError
		verify   *trust.VerifyError
		opErr    *net.OpError
		recErr   tls.RecordHeaderError
		netErr   net.Error
		proxyErr *egress.Error
	)
	switch {
	case errors.As(err, &maxBytes):
		return problem(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "", "request body exceeds the route's limit")
	case errors.Is(err, errOverBudget):
		return overloaded()
	case errors.Is(err, errResponseSignature):
		return problem(http.StatusBadGateway, CodeUpstreamError, "response_signature", "the partner's response signature is missing or does not verify")
	case errors.Is(err, errResponseTooLarge):
		return problem(http.StatusBadGateway, CodeUpstreamError, "response_too_large", "the partner's response exceeds the route's limit")
	case errors.As(err, &verify):
		p := Problem{Status: http.StatusBadGateway, Code: CodeUpstreamTLS, Reason: string(verify.Reason), Message: reasonMessages[verify.Reason]}
		if verify.Reason == trust.ReasonRevoked {
			p.Source = verify.Source
		}
		return p
	case errors.Is(err, ErrOwnCertificateRevoked):
		return problem(http.StatusBadGateway, CodeUpstreamTLS, "own_certificate_revoked", "the establishment's ORG_AUTH_CLI certificate is revoked and the partner refuses it: renew it")
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		// The partner sent a TLS alert: most often it refused our
		// ORG_AUTH_CLI certificate (bad_certificate, unknown_ca...).
		return problem(http.StatusBadGateway, CodeUpstreamTLS, "rejected_by_partner", "the partner ended the TLS handshake: "+opErr.Err.Error())
	case errors.As(err, &recErr):
		return problem(http.StatusBadGateway, CodeUpstreamTLS, "not_tls", "the partner does not speak TLS")
	case errors.Is(ctxErr, context.Canceled):
		return problem(StatusClientClosedRequest, CodeClientClosed, "", "the client closed the request")
	case errors.Is(ctxErr, context.DeadlineExceeded):
		return problem(http.StatusGatewayTimeout, CodeUpstreamTimeout, "total", "the partner did not answer within the route's total timeout")
	case errors.As(err, &proxyErr) && proxyErr.Reason == egress.ReasonTimeout:
		return problem(http.StatusGatewayTimeout, CodeUpstreamTimeout, proxyErr.Reason, "the outbound proxy did not answer within the route's connect timeout")
	case errors.As(err, &proxyErr):
		return problem(http.StatusBadGateway, CodeUpstreamUnavailable, proxyErr.Reason, proxyMessages[proxyErr.Reason])
	case errors.As(err, &netErr) && netErr.Timeout() || errors.Is(err, context.DeadlineExceeded):
		reason := "network"
		switch {
		case strings.Contains(err.Error(), "TLS handshake timeout"):
			reason = "tls_handshake"
		case strings.Contains(err.Error(), "awaiting response headers"):
			reason = "response_header"
		case errors.As(err, &opErr) && opErr.Op == "dial":
			reason = "connect"
		}
		return problem(http.StatusGatewayTimeout, CodeUpstreamTimeout, reason, "the partner did not answer in time")
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return problem(http.StatusBadGateway, CodeUpstreamUnavailable, "", "the partner cannot be reached")
	case strings.Contains(err.Error(), "tls: "):
		// crypto/tls reports most local handshake failures (no common
		// version or cipher suite...) as unexported error values.
		return problem(http.StatusBadGateway, CodeUpstreamTLS, "handshake_failed", "the TLS handshake with the partner failed")
	}
	return problem(http.StatusBadGateway, CodeUpstreamError, "", "the exchange with the partner failed")
}

type errorBody struct {
	Problem
	RequestID string `json:"request_id,omitempty"`
}

func writeProblem(w http.ResponseWriter, p Problem, requestID string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	if p.Status == http.StatusServiceUnavailable && p.Code == CodeOverloaded {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(errorBody{Problem: p, RequestID: requestID})
}
