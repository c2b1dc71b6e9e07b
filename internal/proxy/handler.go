package proxy

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/saml"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// spoofableHeaders are dropped from what the SIH sends: they would let a
// client impersonate another client or a TLS identity towards a partner.
// httputil.ReverseProxy already drops hop-by-hop headers, and Forwarded and
// X-Forwarded-* in Rewrite mode.
var spoofableHeaders = []string{
	"X-Real-Ip", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Client-Ip",
	"X-Client-Cert", "X-Ssl-Client-Cert", "X-Forwarded-Client-Cert", "Ssl-Client-Cert",
}

// Handler serves the SIH.
type Handler struct {
	allow    []netip.Prefix
	routes   []*route // longest prefix first
	log      *zap.Logger
	metrics  *metrics.Metrics
	unrouted prometheus.Observer
	bufs     *bufferPool
	clients  *clientVerifier // nil: no client certificates asked
}

// Options configure a Handler.
type Options struct {
	Routes  []RouteSpec
	Logger  *zap.Logger
	Metrics *metrics.Metrics
	// AllowCIDRs, when set, are the only client addresses served.
	AllowCIDRs []netip.Prefix
	// ClientCAs, when set, are the authorities of the SIH's client
	// certificates: a request without one of theirs is refused (403).
	ClientCAs *x509.CertPool
	Now       func() time.Time
}

// exchange is the per-request state shared between ServeHTTP and the
// ReverseProxy callbacks.
type exchange struct {
	route       *route
	id          string
	upstream    *url.URL // the partner: the route's, or from the path
	rest        string   // path forwarded after the upstream's path
	body        []byte   // the SIH's request body, whole (with the token)
	assertionID string   // of the token added, if any
	problem     *Problem
	err         error
}

type ctxKey struct{}

// New builds the handler and one ReverseProxy per route.
func New(o Options) (*Handler, error) {
	h := &Handler{log: o.Logger, metrics: o.Metrics, bufs: newBufferPool(), allow: o.AllowCIDRs}
	if o.ClientCAs != nil {
		h.clients = newClientVerifier(o.ClientCAs, o.Now)
	}
	h.unrouted = o.Metrics.RequestDuration.WithLabelValues("unmatched")
	errLog, err := zap.NewStdLogAt(o.Logger.Named("reverseproxy"), zap.WarnLevel)
	if err != nil {
		return nil, err
	}
	for _, spec := range o.Routes {
		r := &route{RouteSpec: spec, prefix: strings.TrimSuffix(spec.PathPrefix, "/")}
		r.proxy = &httputil.ReverseProxy{
			Rewrite:        h.rewrite,
			Transport:      spec.Transport,
			ErrorHandler:   h.proxyError,
			ModifyResponse: h.modifyResponse(r),
			BufferPool:     h.bufs,
			ErrorLog:       errLog,
		}
		h.routes = append(h.routes, r)
	}
	sort.SliceStable(h.routes, func(i, j int) bool { return len(h.routes[i].prefix) > len(h.routes[j].prefix) })
	return h, nil
}

func (h *Handler) match(p string) *route {
	for _, r := range h.routes {
		if r.matches(p) {
			return r
		}
	}
	return nil
}

// ServeHTTP forwards one SIH request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	ex := &exchange{id: requestID(req.Header.Get(HeaderRequestID))}
	rec := &recorder{ResponseWriter: w}
	rec.Header().Set(HeaderRequestID, ex.id)

	h.serve(rec, req, ex)

	routeName := "unmatched"
	if ex.route != nil {
		routeName = ex.route.Name
	}
	status := rec.status
	if ex.problem != nil && ex.problem.Status == StatusClientClosedRequest {
		status = StatusClientClosedRequest
	}
	elapsed := time.Since(start)
	if ex.assertionID != "" {
		errClass := ""
		if ex.problem != nil {
			errClass = ex.problem.Code
		}
		ex.route.Token.Result(ex.id, ex.assertionID, status, elapsed, errClass)
	}
	h.metrics.Requests.WithLabelValues(routeName, strconv.Itoa(status)).Inc()
	if ex.route != nil {
		h.metrics.RequestDuration.WithLabelValues(routeName).Observe(elapsed.Seconds())
	} else {
		h.unrouted.Observe(elapsed.Seconds())
	}
	if ce := h.log.Check(zap.InfoLevel, "request"); ce != nil {
		fields := []zap.Field{
			zap.String("request_id", ex.id),
			zap.String("method", req.Method),
			zap.String("path", req.URL.Path),
			zap.String("route", routeName),
			zap.Int("status", status),
			zap.Duration("duration", elapsed),
			zap.Int64("bytes_in", req.ContentLength),
			zap.Int64("bytes_out", rec.bytes),
			zap.String("client", req.RemoteAddr),
		}
		if ex.upstream != nil {
			fields = append(fields, zap.String("upstream", ex.upstream.Host))
		}
		if ex.assertionID != "" {
			fields = append(fields, zap.String("assertion_id", ex.assertionID))
		}
		if ex.problem != nil {
			fields = append(fields, zap.String("error", ex.problem.Code))
			if ex.problem.Reason != "" {
				fields = append(fields, zap.String("reason", ex.problem.Reason))
			}
		}
		if ex.err != nil {
			fields = append(fields, zap.String("cause", ex.err.Error()))
		}
		ce.Write(fields...)
	}
}

func (h *Handler) serve(w http.ResponseWriter, req *http.Request, ex *exchange) {
	if !clientAllowed(req.RemoteAddr, h.allow) {
		h.fail(w, ex, forbidden("client_address", "this client address may not use roc-proxy"), nil)
		return
	}
	if h.clients != nil {
		if err := h.clients.verify(req); err != nil {
			h.fail(w, ex, forbidden("client_certificate", "a client certificate from the SIH's authorities (listen.client_ca) is required"), err)
			return
		}
	}
	if req.URL.RawPath != "" || req.URL.Path == "" || req.URL.Path[0] != '/' || !clean(req.URL.Path) {
		h.fail(w, ex, problem(http.StatusBadRequest, CodeBadRequest, "path", "the request path must be absolute and canonical (no dot segments, no escaped slashes)"), nil)
		return
	}
	ex.route = h.match(req.URL.Path)
	if ex.route == nil {
		h.fail(w, ex, problem(http.StatusNotFound, CodeUnknownRoute, "", fmt.Sprintf("no route for path %q", req.URL.Path)), nil)
		return
	}
	if len(ex.route.AllowedClients) > 0 {
		subject := ""
		if req.TLS != nil && len(req.TLS.PeerCertificates) > 0 {
			subject = trust.SubjectDN(req.TLS.PeerCertificates[0])
		}
		if !slices.Contains(ex.route.AllowedClients, subject) {
			h.fail(w, ex, forbidden("client_certificate", "this route serves other SIH client certificates"), fmt.Errorf("client certificate %q", subject))
			return
		}
	}
	ex.upstream, ex.rest = ex.route.Upstream, ex.route.forwardPath(req.URL.Path)
	if d := ex.route.Dynamic; d != nil {
		// /<prefix>/<host[:port]>/<rest>: the partner named in the path,
		// whatever Host or absolute URL the client sent.
		seg, rest, _ := strings.Cut(strings.TrimPrefix(req.URL.Path[len(ex.route.prefix):], "/"), "/")
		target, err := dynamicTarget(seg, d)
		if err != nil {
			h.fail(w, ex, forbidden("destination", err.Error()), err)
			return
		}
		ex.upstream, ex.rest = target, "/"+rest
	}
	ctx, cancel := context.WithTimeout(context.WithValue(req.Context(), ctxKey{}, ex), ex.route.TotalTimeout)
	defer cancel()
	body, err := readRequestBody(req, ex.route.MaxBodyBytes)
	if err != nil {
		h.fail(w, ex, problemFor(err, ctx.Err()), err)
		return
	}
	if ex.route.Token != nil {
		stripTokenHeaders(req.Header, ex.route.TokenHeaders)
		body, ex.assertionID, err = ex.route.Token.Token(TokenRequest{Ctx: ctx, Header: req.Header, Body: body,
			RequestID: ex.id, Client: req.RemoteAddr, Upstream: ex.upstream.String() + ex.rest})
		if err != nil {
			h.fail(w, ex, tokenProblem(err), err)
			return
		}
	}
	ex.body = body
	req = req.WithContext(ctx)
	req.Body, req.ContentLength = http.NoBody, int64(len(body)) // the bytes travel in ex
	ex.route.proxy.ServeHTTP(w, req)
}

func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	ex := pr.In.Context().Value(ctxKey{}).(*exchange)
	pr.Out.URL.Path = ex.rest
	pr.Out.URL.RawPath = ""
	pr.SetURL(ex.upstream)
	for _, name := range spoofableHeaders {
		pr.Out.Header.Del(name)
	}
	// The per-request token values, X-Roc-* in any spelling, are for
	// roc-proxy, not the partner.
	stripRocHeaders(pr.Out.Header)
	pr.Out.Header.Set(HeaderRequestID, ex.id)
	setRequestBody(pr.Out, ex.body)
}

func (h *Handler) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	ex := req.Context().Value(ctxKey{}).(*exchange)
	p := problemFor(err, req.Context().Err())
	if p.Code == CodeUpstreamTLS {
		h.metrics.UpstreamTLSErrors.WithLabelValues(ex.route.Name, p.Reason).Inc()
	}
	h.fail(w, ex, p, err)
}

func (h *Handler) fail(w http.ResponseWriter, ex *exchange, p Problem, err error) {
	ex.problem, ex.err = &p, err
	if p.Code == CodeForbidden {
		h.metrics.Forbidden.WithLabelValues(p.Reason).Inc()
	}
	writeProblem(w, p, ex.id)
}

func (h *Handler) modifyResponse(r *route) func(*http.Response) error {
	return func(res *http.Response) error {
		// Ours is already set on the response; a second value would
		// confuse the SIH's correlation.
		res.Header.Del(HeaderRequestID)
		body, err := bufferResponse(res, r.MaxResponseBytes)
		if err != nil || r.ResponseSignatures == nil {
			return err
		}
		n, err := r.ResponseSignatures(res.Request.Context(), body)
		if err == nil {
			// The signature covers the bytes; the charset the SIH
			// decodes them with must not change what they say.
			err = saml.CheckAnswerCharset(res.Header.Get("Content-Type"))
		}
		result := "valid"
		switch {
		case errors.Is(err, saml.ErrNoSignature):
			result = "absent"
		case err != nil:
			result = "invalid"
		}
		h.metrics.ResponseSignatures.WithLabelValues(r.Name, result).Inc()
		if err == nil {
			return nil
		}
		if r.Enforce {
			return fmt.Errorf("%w: %v", errResponseSignature, err)
		}
		if result == "invalid" {
			h.log.Warn("partner response signature does not verify", zap.String("route", r.Name), zap.Int("verified", n), zap.Error(err))
		}
		return nil
	}
}

// clean reports whether p has no empty, "." or ".." segment (a trailing
// slash is fine).
func clean(p string) bool {
	c := path.Clean(p)
	return c == p || c+"/" == p
}

// recorder captures the status and size of the response for the access log.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer (flush,
// deadlines).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(p []byte) { b.p.Put(&p) }
