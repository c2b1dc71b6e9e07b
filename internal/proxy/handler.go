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
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/saml"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// Handler serves the SIH.
type Handler struct {
	allow    []netip.Prefix
	routes   []*route // longest prefix first
	log      *zap.Logger
	metrics  *metrics.Metrics
	unrouted prometheus.Observer
	bufs     *bufferPool
	clients  *clientVerifier // nil: no client certificates asked
	budget   *BodyBudget
	// writeTimeout bounds writing an answer (0: none).
	writeTimeout time.Duration
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
	// Budget, when set, bounds the memory of the bodies in flight across
	// all requests (shared by the handlers a reload replaces).
	Budget *BodyBudget
	// WriteTimeout, when set, is how long the SIH has to take an answer
	// once roc-proxy starts sending it.
	WriteTimeout time.Duration
}

// exchange is the per-request state shared between ServeHTTP and the
// ReverseProxy callbacks, which find it in the request's context: it is
// that context (the route's total timeout within the request's own), one
// allocation where context.WithValue would be another.
type exchange struct {
	context.Context
	rec         recorder
	route       *route
	id          string
	upstream    *url.URL // the partner: the route's, or from the path
	rest        string   // path forwarded after the upstream's path
	body        []byte   // the SIH's request body, whole (with the token)
	assertionID string   // of the token added, if any
	problem     *Problem
	err         error
	mem         reservation // the bodies' share of the budget
	bytesIn     int64
	abort       bool // close the connection without an answer
}

type ctxKey struct{}

// Value finds the exchange itself under ctxKey.
func (ex *exchange) Value(key any) any {
	if key == (ctxKey{}) {
		return ex
	}
	return ex.Context.Value(key)
}

// New builds the handler and one ReverseProxy per route.
func New(o Options) (*Handler, error) {
	h := &Handler{log: o.Logger, metrics: o.Metrics, bufs: newBufferPool(), allow: o.AllowCIDRs, budget: o.Budget, writeTimeout: o.WriteTimeout}
	if h.budget == nil {
		h.budget = NewBodyBudget(0, o.Metrics)
	}
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
		if len(r.Methods) == 0 {
			r.Methods = []string{http.MethodPost}
		}
		r.allow = strings.Join(r.Methods, ", ")
		if r.Upstream != nil {
			r.upstream = r.Upstream.String()
		}
		for _, t := range r.TokenHeaders {
			if neverForwarded(t) {
				return nil, fmt.Errorf("route %s: token header %q is one roc-proxy never forwards", spec.Name, t)
			}
			r.tokenKeys = append(r.tokenKeys, headerKey(t))
		}
		r.served = o.Metrics.Requests.WithLabelValues(spec.Name, "200")
		r.duration = o.Metrics.RequestDuration.WithLabelValues(spec.Name)
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
	ex := &exchange{Context: req.Context(), id: requestID(req.Header.Get(HeaderRequestID))}
	ex.mem.b = h.budget
	rec := &ex.rec
	rec.ResponseWriter, rec.writeTimeout, rec.idv[0] = w, h.writeTimeout, ex.id
	if h.writeTimeout > 0 {
		// The exchange is bounded by the read and route timeouts; the
		// write deadline starts with the answer (recorder.WriteHeader).
		rec.setWriteDeadline(time.Time{})
	}
	if req.ProtoMajor == 1 && len(req.TransferEncoding) > 0 {
		// net/http drops a Content-Length sent beside Transfer-Encoding
		// before the handler runs, so every chunked request may have
		// been ambiguous: answer it, then close (RFC 9112 section 6.1).
		rec.close = true
	}
	defer func() {
		// ReverseProxy aborts with http.ErrAbortHandler when the SIH
		// stops taking the answer; anything else is a bug, answered 500
		// when nothing was sent yet rather than a dropped connection.
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				if ex.problem == nil {
					ex.problem = &Problem{Code: CodeClientClosed, Reason: "answer_unfinished"}
				}
				ex.abort = true
			} else {
				h.log.Error("panic serving a request", zap.String("request_id", ex.id), zap.Any("panic", v), zap.Stack("stack"))
				if rec.status == 0 {
					h.fail(rec, ex, problem(http.StatusInternalServerError, CodeInternal, "", "roc-proxy failed to serve this request"), fmt.Errorf("panic: %v", v))
				} else {
					ex.problem, ex.abort = &Problem{Code: CodeInternal}, true
				}
			}
		}
		h.finish(rec, req, ex, start)
		if ex.abort {
			// Nothing roc-proxy decided can be sent: close the
			// connection rather than let net/http send a 200.
			panic(http.ErrAbortHandler)
		}
	}()
	h.serve(rec, req, ex)
}

// finish records the exchange: the token's result, metrics, access log;
// and gives its bodies' memory back.
func (h *Handler) finish(rec *recorder, req *http.Request, ex *exchange, start time.Time) {
	ex.mem.release()
	routeName := "unmatched"
	if ex.route != nil {
		routeName = ex.route.Name
	}
	status := rec.status
	if ex.abort && status == 0 {
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
	switch {
	case ex.route != nil && status == http.StatusOK:
		ex.route.served.Inc() // the common case, without a label lookup
	default:
		h.metrics.Requests.WithLabelValues(routeName, strconv.Itoa(status)).Inc()
	}
	if ex.route != nil {
		ex.route.duration.Observe(elapsed.Seconds())
	} else {
		h.unrouted.Observe(elapsed.Seconds())
	}
	if ce := h.log.Check(zap.InfoLevel, "request"); ce != nil {
		fp := accessFields.Get().(*[]zap.Field)
		fields := append((*fp)[:0],
			zap.String("request_id", ex.id),
			zap.String("method", req.Method),
			zap.String("path", req.URL.Path),
			zap.String("route", routeName),
			zap.Int("status", status),
			zap.Duration("duration", elapsed),
			zap.Int64("bytes_in", ex.bytesIn),
			zap.Int64("bytes_out", rec.bytes),
			zap.String("client", req.RemoteAddr),
		)
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
		ce.Write(fields...) // encoded now: zap's cores keep no field
		clear(fields)
		*fp = fields[:0]
		accessFields.Put(fp)
	}
}

// accessFields lends finish the fields of an access-log line.
var accessFields = sync.Pool{New: func() any { f := make([]zap.Field, 0, 16); return &f }}

func (h *Handler) serve(w *recorder, req *http.Request, ex *exchange) {
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
	if !canonicalPath(req) {
		h.fail(w, ex, problem(http.StatusBadRequest, CodeBadRequest, "path", "the request path must be absolute and canonical (no dot segments, no escaped slashes or dots, no ';' parameters, no backslashes)"), nil)
		return
	}
	ex.route = h.match(req.URL.Path)
	if ex.route == nil {
		h.fail(w, ex, problem(http.StatusNotFound, CodeUnknownRoute, "", fmt.Sprintf("no route for path %q", req.URL.Path)), nil)
		return
	}
	if !slices.Contains(ex.route.Methods, req.Method) {
		w.Header().Set("Allow", ex.route.allow)
		h.fail(w, ex, problem(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "", "this route serves "+ex.route.allow), nil)
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
	total, cancel := context.WithTimeout(req.Context(), ex.route.TotalTimeout)
	defer cancel()
	ex.Context = total
	ctx := context.Context(ex)
	body, err := readRequestBody(req, ex.route.MaxBodyBytes, &ex.mem)
	ex.bytesIn = int64(len(body))
	if err != nil {
		// The SIH's side of the exchange failed: its problem, never the
		// partner's; the connection cannot be reused.
		w.close = true
		h.fail(w, ex, bodyProblem(err), err)
		return
	}
	if ex.route.Token != nil {
		stripTokenHeaders(req.Header, ex.route.tokenKeys)
		in := len(body)
		body, ex.assertionID, err = ex.route.Token.Token(TokenRequest{Ctx: ctx, Header: req.Header, Body: body,
			RequestID: ex.id, Client: req.RemoteAddr, Upstream: ex.route.upstreamURL(ex.upstream) + ex.rest})
		if err != nil {
			h.fail(w, ex, tokenProblem(err), err)
			return
		}
		if len(body) != in {
			ex.mem.add(int64(len(body))) // the envelope with the token
		}
	}
	ex.body = body
	req = req.WithContext(ctx)
	req.Body, req.ContentLength = http.NoBody, int64(len(body)) // the bytes travel in ex
	ex.route.proxy.ServeHTTP(w, req)
}

// canonicalPath reports whether the request's path is absolute and
// canonical: no empty, "." or ".." segment, nothing escaped that the
// default encoding would not escape, no ';' (matrix parameters: a
// Tomcat-style partner drops ";..." from a segment before normalising,
// so "/r/..;/x" climbs out of "/r/" there) and no backslash (a separator
// for some servers).
func canonicalPath(req *http.Request) bool {
	p := req.URL.Path
	return req.URL.RawPath == "" && p != "" && p[0] == '/' && !strings.ContainsAny(p, ";\\") && config.CleanPath(p)
}

func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	ex := pr.In.Context().Value(ctxKey{}).(*exchange)
	pr.Out.URL.Path = ex.rest
	pr.Out.URL.RawPath = ""
	pr.SetURL(ex.upstream)
	// The per-request token values, X-Roc-* in any spelling, are for
	// roc-proxy, not the partner; nor are the spoofable headers, the
	// hop-by-hop ones and those the SIH's Connection lists, in any
	// spelling either.
	stripPartnerHeaders(pr.Out.Header, pr.In.Header["Connection"])
	pr.Out.Header[HeaderRequestID] = ex.rec.idv[:] // Set, without allocating
	// The body is here whole: the partner has nothing to approve, and its
	// 100 Continue would only be an interim answer to drop.
	pr.Out.Header.Del("Expect")
	// ReverseProxy passes a client's Upgrade (websocket, h2c) on: the
	// partner would be asked to switch the connection authenticated as
	// the establishment to a protocol roc-proxy neither signs nor checks.
	// Without it, a partner's 101 is refused.
	pr.Out.Header.Del("Upgrade")
	pr.Out.Header.Del("Connection")
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
	if p.Status == StatusClientClosedRequest {
		ex.abort = true // nobody is listening: nothing is sent
		return
	}
	writeProblem(w, p, ex.id)
}

func (h *Handler) modifyResponse(r *route) func(*http.Response) error {
	return func(res *http.Response) error {
		ex := res.Request.Context().Value(ctxKey{}).(*exchange)
		// Ours replaces the partner's (recorder.WriteHeader): a second
		// value would confuse the SIH's correlation.
		res.Header.Del(HeaderRequestID)
		if res.Request.Method == http.MethodHead {
			// No body by definition (RFC 9110 section 9.3.2): its
			// Content-Length is the GET's, and there is nothing to
			// read or to verify.
			return nil
		}
		body, err := bufferResponse(res, r.MaxResponseBytes, &ex.mem)
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

// recorder captures the final status and size of the answer for the
// access log, keeps interim 1xx answers from the SIH (the answer goes out
// whole, they announce nothing), starts the write deadline with the answer
// and asks for the connection to close when it must.
type recorder struct {
	http.ResponseWriter
	status       int
	bytes        int64
	idv          [1]string     // X-Request-Id of the answer (and of the request to the partner)
	close        bool          // Connection: close
	writeTimeout time.Duration // from the first byte of the answer
}

func (r *recorder) WriteHeader(code int) {
	if code < 200 && code != http.StatusSwitchingProtocols {
		return // interim
	}
	if r.status != 0 {
		return
	}
	r.status = code
	// Set here, last: ReverseProxy clears the answer's headers after
	// an interim 1xx.
	r.Header()[HeaderRequestID] = r.idv[:] // Set, without allocating
	if r.close {
		r.Header().Set("Connection", "close")
	}
	if r.writeTimeout > 0 {
		r.setWriteDeadline(time.Now().Add(r.writeTimeout))
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// setWriteDeadline reaches the connection's write deadline as
// http.ResponseController does, without its allocation.
func (r *recorder) setWriteDeadline(t time.Time) {
	if d, ok := r.ResponseWriter.(interface{ SetWriteDeadline(time.Time) error }); ok {
		_ = d.SetWriteDeadline(t)
	}
}

// Unwrap lets http.ResponseController reach the underlying writer (flush,
// deadlines).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// proxyBufferSize is the size of ReverseProxy's copy buffers.
const proxyBufferSize = 32 << 10

// bufferPool lends ReverseProxy its copy buffers. It keeps them as array
// pointers: putting a slice back into a sync.Pool would allocate its
// header at every request.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([proxyBufferSize]byte) }}}
}

func (b *bufferPool) Get() []byte { return b.p.Get().(*[proxyBufferSize]byte)[:] }

func (b *bufferPool) Put(p []byte) {
	if cap(p) == proxyBufferSize { // one of ours, from its start
		b.p.Put((*[proxyBufferSize]byte)(p[:proxyBufferSize]))
	}
}
