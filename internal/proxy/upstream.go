package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"sync"
	"syscall"
	"time"
)

// Upstream is a route's HTTP/1.1 client to its partner over pooled
// mutual-TLS connections. Each exchange runs on the caller's goroutine:
// net/http's Request.Write sends the request and ReadResponse reads the
// answer (the wire format stays net/http's), where http.Transport hands
// every request to a writer goroutine and every answer back from a reader
// goroutine. Those hand-offs (channel operations, goroutine wake-ups,
// futex calls) cost 14% of roc-proxy's CPU per pass-through request on a
// 2-core host, and 30-40% of a bare exchange's; see
// docs/testing-and-benchmarks.md, "Measured figures".
//
// Behaviour kept from http.Transport: keep-alive pools per host (most
// recently used first, at most MaxIdlePerHost per partner and MaxIdle in
// all, closed after IdleTimeout),
// the connect, TLS handshake and response-header timeouts (with its error
// texts, which problemFor reads), the request's context aborting the
// exchange, 1xx answers skipped (passed to httptrace's Got1xxResponse), a
// bound on response headers, and the retry rule: a request is sent again
// on a new connection only when a pooled one failed before any byte of it
// left, or, for a replayable request (GET, HEAD, OPTIONS), before any byte
// of the answer came. A pooled connection the partner (or the outbound
// proxy a tunnel goes through) closed while idle is found before use (a
// non-blocking peek) and dropped. Environment proxy settings are ignored,
// as with http.Transport's Proxy nil: DialContext opens the tunnel of the
// route's outbound proxy, and the TLS inside it is still this one. Not
// kept: HTTP/2, transparent gzip (roc-proxy forwards bodies as they come).
//
// Beyond http.Transport: with VerifyPeer (routes that check revocation)
// each connection keeps the standing check of the chain its handshake
// verified, asked before every request written on it, and is closed and
// dropped from the pool at once when the partner is learnt revoked.
type Upstream struct {
	o      UpstreamOptions
	dialer net.Dialer

	mu     sync.Mutex
	idle   map[string][]*upstreamConn // by host:port, most recent last
	nidle  int                        // in idle, across partners
	closed bool                       // Close: nothing is pooled any more

	tlsMu  sync.Mutex
	tlsFor map[string]*tls.Config // by host, when TLS.ServerName is empty
}

// UpstreamOptions configure an Upstream.
type UpstreamOptions struct {
	TLS                   *tls.Config
	ConnectTimeout        time.Duration
	TLSHandshakeTimeout   time.Duration
	ResponseHeaderTimeout time.Duration
	// MaxIdlePerHost bounds the pool per partner (default 64).
	MaxIdlePerHost int
	// MaxIdle bounds the pool across partners (default 64): a dynamic
	// route reaches many.
	MaxIdle int
	// IdleTimeout closes a pooled connection unused this long (default 90s).
	IdleTimeout time.Duration
	// DialContext, when set, replaces the TCP dial (a CONNECT tunnel
	// through the outbound proxy); it applies ConnectTimeout itself.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// VerifyPeer, when set, verifies each connection at its handshake in
	// place of TLS.VerifyConnection (with the dial's context, which bounds
	// revocation fetches) and returns the connection's standing check
	// (nil: none), asked before every request written on it. closeConn
	// closes the connection at once, from any goroutine (a revocation
	// learnt in the background): out of the pool when idle, its exchange
	// failed when in use.
	VerifyPeer func(ctx context.Context, cs tls.ConnectionState, closeConn func()) (PeerGuard, error)
}

// PeerGuard is a connection's standing check (trust.ChainGuard): Allow
// must be cheap and allocation-free when nothing changed; Release is
// called once the connection closes.
type PeerGuard interface {
	Allow() error
	Release()
}

// maxResponseHeaderBytes bounds what a partner may send before its body.
const maxResponseHeaderBytes = 1 << 20

// NewUpstream returns a client with an empty pool.
func NewUpstream(o UpstreamOptions) *Upstream {
	if o.MaxIdlePerHost <= 0 {
		o.MaxIdlePerHost = 64
	}
	if o.MaxIdle <= 0 {
		o.MaxIdle = 64
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 90 * time.Second
	}
	u := &Upstream{o: o, idle: map[string][]*upstreamConn{}, tlsFor: map[string]*tls.Config{}}
	u.dialer = net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}
	if o.DialContext == nil {
		u.o.DialContext = u.dialer.DialContext
	}
	return u
}

// timeoutError carries http.Transport's texts for its own timeouts.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string   { return e.msg }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

var (
	errResponseHeaderTimeout = &timeoutError{"net/http: timeout awaiting response headers"}
	errTLSHandshakeTimeout   = &timeoutError{"net/http: TLS handshake timeout"}
	errSwitchedProtocols     = errors.New("the partner switched protocols (101): roc-proxy does not forward upgrades")
	errTooMany1xx            = errors.New("the partner sent too many 1xx answers")
	aLongTimeAgo             = time.Unix(1, 0)
)

// upstreamConn is a pooled connection.
type upstreamConn struct {
	u     *Upstream
	addr  string
	raw   net.Conn        // the TCP connection
	sys   syscall.RawConn // raw's, for the liveness peek (nil: none)
	tls   *tls.Conn
	guard PeerGuard // nil: no standing check
	count *countingConn
	br    *bufio.Reader
	bw    *bufio.Writer
	idle  *time.Timer

	mu       sync.Mutex // canceled and the read deadline
	canceled bool

	peek      func(fd uintptr) bool // peekFD, bound once
	peekAlive bool
}

// countingConn counts what crosses the TCP connection, and bounds reads
// while an answer's headers come.
type countingConn struct {
	net.Conn
	written, read int64
	readLimit     int64 // < 0: none
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written += int64(n)
	return n, err
}

func (c *countingConn) Read(p []byte) (int, error) {
	if c.readLimit >= 0 {
		if c.readLimit == 0 {
			return 0, fmt.Errorf("the partner's answer headers exceed %d bytes", maxResponseHeaderBytes)
		}
		if int64(len(p)) > c.readLimit {
			p = p[:c.readLimit]
		}
	}
	n, err := c.Conn.Read(p)
	c.read += int64(n)
	if c.readLimit > 0 {
		c.readLimit -= int64(n)
	}
	return n, err
}

func canonicalAddr(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "443")
}

// RoundTrip sends req and returns the partner's answer; its body must be
// read to the end and closed for the connection to be pooled again.
func (u *Upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" {
		return nil, fmt.Errorf("upstream URL %q: https only", req.URL.Redacted())
	}
	ctx := req.Context()
	addr := canonicalAddr(req.URL)
	for retried := false; ; retried = true {
		pc := u.get(addr)
		reused := pc != nil
		if !reused {
			var err error
			if pc, err = u.dial(ctx, req.URL, addr); err != nil {
				return nil, err
			}
		}
		resp, err := pc.roundTrip(ctx, req)
		if err == nil {
			return resp, nil
		}
		if !reused || retried || !canRetry(req, pc.count) {
			return nil, err
		}
		// A pooled connection failed before anything was exchanged:
		// send again on a new one, with the body from its start.
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return nil, err
			}
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, err
			}
			r2 := *req
			r2.Body = body
			req = &r2
		}
	}
}

// canRetry is http.Transport's rule: nothing of the request left, or the
// request is replayable and nothing of the answer came.
func canRetry(req *http.Request, c *countingConn) bool {
	if c.written == 0 {
		return true
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return c.read == 0
	}
	return false
}

// CloseIdleConnections closes the pooled connections; those in use go
// back to the pool when their exchange ends.
func (u *Upstream) CloseIdleConnections() { u.closeIdle(false) }

// Close closes the pooled connections, and those in use when their
// exchange ends: the Upstream is being replaced (a renewed ORG_AUTH_CLI,
// reloaded routes), and none of its connections may serve again.
func (u *Upstream) Close() { u.closeIdle(true) }

func (u *Upstream) closeIdle(final bool) {
	u.mu.Lock()
	idle := u.idle
	u.idle, u.nidle = map[string][]*upstreamConn{}, 0
	u.closed = u.closed || final
	u.mu.Unlock()
	for _, list := range idle {
		for _, pc := range list {
			pc.idle.Stop()
			pc.close()
		}
	}
}

// get takes the most recently used live connection to addr, or nil.
func (u *Upstream) get(addr string) *upstreamConn {
	for {
		u.mu.Lock()
		list := u.idle[addr]
		if len(list) == 0 {
			u.mu.Unlock()
			return nil
		}
		pc := list[len(list)-1]
		list[len(list)-1] = nil
		u.idle[addr] = list[:len(list)-1]
		u.nidle--
		u.mu.Unlock()
		if !pc.idle.Stop() {
			continue // its idle timer is closing it
		}
		if pc.alive() {
			return pc
		}
		pc.close()
	}
}

// put pools pc, or closes it when the pool is full or closed.
func (u *Upstream) put(pc *upstreamConn) {
	u.mu.Lock()
	list := u.idle[pc.addr]
	if len(list) >= u.o.MaxIdlePerHost || u.nidle >= u.o.MaxIdle || u.closed {
		u.mu.Unlock()
		pc.close()
		return
	}
	if list == nil && len(u.idle) >= 1024 {
		// A dynamic route's many partners: forget those with nothing
		// pooled (the others keep their slices, reused without
		// allocating).
		for addr, l := range u.idle {
			if len(l) == 0 {
				delete(u.idle, addr)
			}
		}
	}
	u.idle[pc.addr] = append(list, pc)
	u.nidle++
	pc.idle.Reset(u.o.IdleTimeout)
	u.mu.Unlock()
}

// expire is pc's idle timer: out of the pool, and closed.
func (u *Upstream) expire(pc *upstreamConn) {
	u.remove(pc)
	pc.close()
}

// remove takes pc out of the pool and reports whether it was there.
func (u *Upstream) remove(pc *upstreamConn) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	list := u.idle[pc.addr]
	for i, c := range list {
		if c == pc {
			copy(list[i:], list[i+1:])
			list[len(list)-1] = nil
			u.idle[pc.addr] = list[:len(list)-1]
			u.nidle--
			return true
		}
	}
	return false
}

func (u *Upstream) tlsConfig(host string) *tls.Config {
	if u.o.TLS.ServerName != "" {
		return u.o.TLS
	}
	// A dynamic route: each partner's own name, as http.Transport does.
	u.tlsMu.Lock()
	defer u.tlsMu.Unlock()
	cfg := u.tlsFor[host]
	if cfg == nil {
		if len(u.tlsFor) >= 1024 {
			clear(u.tlsFor)
		}
		cfg = u.o.TLS.Clone()
		cfg.ServerName = host
		u.tlsFor[host] = cfg
	}
	return cfg
}

func (u *Upstream) dial(ctx context.Context, target *url.URL, addr string) (*upstreamConn, error) {
	raw, err := u.o.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	pc := &upstreamConn{u: u, addr: addr, raw: raw, count: &countingConn{Conn: raw, readLimit: -1}}
	hctx, cancel := ctx, context.CancelFunc(func() {})
	if u.o.TLSHandshakeTimeout > 0 {
		hctx, cancel = context.WithTimeout(ctx, u.o.TLSHandshakeTimeout)
	}
	cfg := u.tlsConfig(target.Hostname())
	if u.o.VerifyPeer != nil {
		// This connection's own check, which keeps its guard.
		cfg = cfg.Clone()
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			g, err := u.o.VerifyPeer(hctx, cs, pc.closeNow)
			pc.guard = g
			return err
		}
	}
	pc.tls = tls.Client(pc.count, cfg)
	err = pc.tls.HandshakeContext(hctx)
	timedOut := hctx.Err() != nil && ctx.Err() == nil
	cancel()
	if err != nil {
		raw.Close()
		if pc.guard != nil {
			pc.guard.Release()
		}
		if timedOut {
			return nil, errTLSHandshakeTimeout
		}
		return nil, err
	}
	pc.br, pc.bw = bufio.NewReaderSize(pc.tls, 16<<10), bufio.NewWriterSize(pc.tls, 32<<10)
	if sc, ok := raw.(syscall.Conn); ok {
		// Through a tunnel too (egress passes its socket's on): the
		// proxy closing an idle tunnel shows there.
		if pc.sys, err = sc.SyscallConn(); err != nil {
			pc.sys = nil
		}
		pc.peek = pc.peekFD
	}
	pc.idle = time.AfterFunc(time.Hour, func() { u.expire(pc) })
	pc.idle.Stop()
	return pc, nil
}

func (pc *upstreamConn) close() {
	pc.tls.Close()
	if pc.guard != nil {
		pc.guard.Release() // idempotent
	}
}

// closeNow closes pc from another goroutine: its partner is known
// revoked. Idle, it leaves the pool and is closed here; in use (or still
// in its handshake), its socket is closed, which fails the exchange, and
// the goroutine that owns it closes the rest (a close_notify from here
// could wait behind a write in progress).
func (pc *upstreamConn) closeNow() {
	if pc.u.remove(pc) && pc.idle.Stop() {
		pc.close()
		return
	}
	pc.raw.Close()
}

// cancel aborts the exchange in progress: the request's context ended.
func (pc *upstreamConn) cancel() {
	pc.mu.Lock()
	pc.canceled = true
	pc.raw.SetDeadline(aLongTimeAgo)
	pc.mu.Unlock()
}

// setReadDeadline unless the exchange was canceled (its deadline stays).
func (pc *upstreamConn) setReadDeadline(t time.Time) {
	pc.mu.Lock()
	if !pc.canceled {
		pc.raw.SetReadDeadline(t)
	}
	pc.mu.Unlock()
}

// ctxErr is the request context's error when it ended the exchange.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

func (pc *upstreamConn) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	pc.count.written, pc.count.read = 0, 0
	if pc.guard != nil {
		// The partner revoked since the handshake (or, under a hard
		// policy, without a usable status any more) is not served on
		// this connection: nothing was written, so a pooled one is
		// replaced by a new handshake, which decides afresh.
		if err := pc.guard.Allow(); err != nil {
			pc.close()
			return nil, err
		}
	}
	stop := context.AfterFunc(ctx, pc.cancel)
	fail := func(err error) (*http.Response, error) {
		stop()
		pc.close()
		return nil, err
	}
	err := req.Write(pc.bw)
	if err == nil {
		err = pc.bw.Flush()
	}
	if err != nil {
		return fail(ctxErr(ctx, err))
	}
	rht := pc.u.o.ResponseHeaderTimeout
	if rht > 0 {
		pc.setReadDeadline(time.Now().Add(rht))
	}
	var resp *http.Response
	for n1xx := 0; ; n1xx++ {
		pc.count.readLimit = maxResponseHeaderBytes
		resp, err = http.ReadResponse(pc.br, req)
		pc.count.readLimit = -1
		if err != nil {
			var ne net.Error
			if ctx.Err() == nil && rht > 0 && errors.As(err, &ne) && ne.Timeout() {
				err = errResponseHeaderTimeout
			}
			return fail(ctxErr(ctx, err))
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return fail(errSwitchedProtocols)
		}
		if resp.StatusCode >= 200 {
			break
		}
		if n1xx == 5 {
			return fail(errTooMany1xx)
		}
		if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err)
			}
		}
	}
	if rht > 0 {
		pc.setReadDeadline(time.Time{})
	}
	resp.Body = &upstreamBody{rc: resp.Body, pc: pc, ctx: ctx, stop: stop, reuse: !resp.Close && !req.Close}
	return resp, nil
}

// upstreamBody gives the connection back to the pool once the answer's
// body was read to its end and closed; otherwise the connection is closed.
type upstreamBody struct {
	rc    io.ReadCloser
	pc    *upstreamConn
	ctx   context.Context
	stop  func() bool
	reuse bool
	eof   bool
	done  bool
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, errors.New("read of a closed partner answer")
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		err = ctxErr(b.ctx, err)
	}
	return n, err
}

func (b *upstreamBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	if !b.eof {
		// Closed before its end (over max_response_bytes, say): the rest
		// is not read, the connection goes.
		b.stop()
		b.pc.close()
		b.rc.Close()
		return nil
	}
	err := b.rc.Close()
	// stop reports false when the context's cancel already ran: the
	// connection's deadline is spent.
	if b.stop() && b.reuse && b.pc.br.Buffered() == 0 {
		b.pc.u.put(b.pc)
		return err
	}
	b.pc.close()
	return err
}
