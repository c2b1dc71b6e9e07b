package proxy

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"
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
	// Transport reaches the upstream (mtls.NewTransport).
	Transport http.RoundTripper
}

type route struct {
	RouteSpec
	prefix string // PathPrefix without its trailing slash
	proxy  *httputil.ReverseProxy
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
