package proxy

import (
	"context"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RouteSpec is a route as the composition root builds it.
type RouteSpec struct {
	Name string
	// PathPrefix is matched on whole path segments: "/amc/" and "/amc"
	// both match "/amc" and "/amc/x", never "/amcx".
	PathPrefix  string
	StripPrefix bool
	Upstream    *url.URL
	// MaxBodyBytes bounds the request body.
	MaxBodyBytes int64
	// MaxResponseBytes bounds the partner's response body.
	MaxResponseBytes int64
	// TotalTimeout bounds the whole exchange with the upstream.
	TotalTimeout time.Duration
	// Transport reaches the upstream (an Upstream).
	Transport http.RoundTripper
	// AllowedClients, when set, are the subjects (RFC 2253) of the SIH
	// client certificates served.
	AllowedClients []string
	// Dynamic, when set (and Upstream nil), takes the partner from the
	// first path segment after the prefix.
	Dynamic *DynamicSpec
	// Token, when set, adds a signed SAML assertion to every request.
	Token TokenSource
	// TokenHeaders are headers only roc-proxy sets on a token route (the
	// token's, DefaultTokenHeader): the SIH's, in any spelling, are
	// dropped before the token is made.
	TokenHeaders []string
	// ResponseSignatures, when set, verifies the partner's signed
	// answers; Enforce makes a failure a 502 instead of a log line.
	ResponseSignatures func(ctx context.Context, body []byte) (int, error)
	Enforce            bool
	// Methods are the HTTP methods the route serves (default POST).
	Methods []string
}

// TokenRequest is what a TokenSource sees of a SIH request.
type TokenRequest struct {
	Ctx       context.Context // bounds the wait for the audit log
	Header    http.Header     // the token may be set here (http-header placement)
	Body      []byte
	RequestID string
	Client    string
	Upstream  string
}

// TokenSource puts a signed token into a SIH request, and records it.
type TokenSource interface {
	// Token returns the body to forward and the assertion's ID, once the
	// token is recorded. Errors are *saml.ValuesError or
	// *saml.EnvelopeError (400), ErrSignerRevoked or ErrAuditUnavailable
	// (503), or a signing failure (500).
	Token(r TokenRequest) (out []byte, assertionID string, err error)
	// Result records what came of the exchange.
	Result(requestID, assertionID string, status int, latency time.Duration, errorClass string)
}

type route struct {
	RouteSpec
	prefix string // PathPrefix without its trailing slash
	allow  string // the Allow header of a 405: Methods
	// upstream is Upstream.String(), for the audit records.
	upstream string
	// tokenKeys are TokenHeaders in headerKey's form.
	tokenKeys []string
	proxy     *httputil.ReverseProxy
	// served and duration are the route's series of the requests metrics
	// that every served request updates.
	served   prometheus.Counter
	duration prometheus.Observer
}

func (r *route) matches(path string) bool {
	if !strings.HasPrefix(path, r.prefix) {
		return false
	}
	return len(path) == len(r.prefix) || path[len(r.prefix)] == '/' || r.prefix == ""
}

// forwardPath is the path sent upstream, before the upstream's own path is
// joined in front of it.
func (r *route) forwardPath(path string) string {
	if !r.StripPrefix {
		return path
	}
	rest := path[len(r.prefix):]
	if rest == "" {
		return "/"
	}
	return rest
}

// upstreamURL is u.String(), without a new string when u is the route's
// own partner.
func (r *route) upstreamURL(u *url.URL) string {
	if u == r.Upstream && r.upstream != "" {
		return r.upstream
	}
	return u.String()
}
