package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/boundedfile"
)

// maxAnswer bounds what is read of the proxy's answer to CONNECT (status
// line and headers): a proxy that sends endless headers is cut off there.
const maxAnswer = 16 << 10

// Tunnel opens a CONNECT tunnel to target (host:port) through the proxy,
// within ctx (its deadline bounds the TCP connection to the proxy and the
// proxy's answer together). The connection it returns carries bytes only:
// the caller speaks TLS with the partner over it. Every failure is an
// *Error.
func (p *Proxy) Tunnel(ctx context.Context, d *net.Dialer, target string) (net.Conn, error) {
	request := "CONNECT " + target
	fail := func(reason, status string, err error) *Error {
		return &Error{Reason: reason, Proxy: p.addr, Request: request, Status: status, Err: err}
	}
	// Targets come from validated routes; a host:port with anything but
	// printable characters would still not be written into the request.
	if _, _, err := net.SplitHostPort(target); err != nil || strings.ContainsFunc(target, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return nil, &Error{Reason: ReasonProtocol, Proxy: p.addr, Request: "CONNECT", Err: fmt.Errorf("%q is not host:port", target)}
	}
	conn, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		if timedOut(ctx, err) {
			return nil, fail(ReasonTimeout, "", errors.New("no connection to the proxy in time"))
		}
		return nil, fail(ReasonUnreachable, "", err)
	}
	return p.connect(ctx, conn, target)
}

// connect asks the proxy, on conn, for a tunnel to target and reads its
// answer (untrusted input: bounded in size and time). It closes conn on
// failure.
func (p *Proxy) connect(ctx context.Context, conn net.Conn, target string) (net.Conn, error) {
	request := "CONNECT " + target
	fail := func(reason, status string, err error) *Error {
		return &Error{Reason: reason, Proxy: p.addr, Request: request, Status: status, Err: err}
	}
	// The answer is read within ctx: its deadline on the socket, and a
	// cancellation (the SIH gone, shutdown) unblocks the read at once.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	closeWith := func(e *Error) (net.Conn, error) {
		stop()
		conn.Close()
		return nil, e
	}
	var b strings.Builder
	b.WriteString(request + " HTTP/1.1\r\nHost: " + target + "\r\n")
	if p.cred != nil {
		b.WriteString("Proxy-Authorization: " + p.cred.header + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		if timedOut(ctx, err) {
			return closeWith(fail(ReasonTimeout, "", errors.New("no answer to CONNECT in time")))
		}
		return closeWith(fail(ReasonProtocol, "", err))
	}
	br := bufio.NewReaderSize(boundedfile.CapReader(conn, maxAnswer, errAnswerTooLong), 4096)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	switch {
	case errors.Is(err, errAnswerTooLong):
		return closeWith(fail(ReasonProtocol, "", err))
	case err != nil && timedOut(ctx, err):
		return closeWith(fail(ReasonTimeout, "", errors.New("no answer to CONNECT in time")))
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err):
		return closeWith(fail(ReasonProtocol, "", errors.New("the proxy closed the connection before answering CONNECT")))
	case err != nil:
		return closeWith(fail(ReasonProtocol, "", errors.New("malformed answer to CONNECT")))
	}
	status := printable(resp.Status)
	switch {
	case resp.ProtoMajor != 1:
		return closeWith(fail(ReasonProtocol, "", errors.New("malformed answer to CONNECT (not HTTP/1.x)")))
	case resp.StatusCode == http.StatusProxyAuthRequired, resp.StatusCode == http.StatusUnauthorized:
		// A CONNECT answer comes from the proxy: tinyproxy answers wrong
		// credentials with 401 (and missing ones with 407).
		return closeWith(fail(ReasonAuth, status, nil))
	case resp.StatusCode >= 500:
		return closeWith(fail(ReasonUpstream, status, nil))
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return closeWith(fail(ReasonRefused, status, nil))
	case br.Buffered() > 0:
		// The partner speaks after our ClientHello only: bytes before it
		// come from the proxy, and would be taken for the partner's.
		return closeWith(fail(ReasonProtocol, "", errors.New("the proxy sent data after its answer "+strconvQuote(status)+" to CONNECT")))
	}
	if !stop() {
		conn.Close() // ctx ended just now: the deadline was set in the past
		return nil, fail(ReasonTimeout, "", errors.New("no answer to CONNECT in time"))
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

var errAnswerTooLong = errors.New("the answer to CONNECT exceeds 16 KiB")

func strconvQuote(s string) string { return "\"" + s + "\"" }

func timedOut(ctx context.Context, err error) bool {
	var ne net.Error
	return ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout()
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && (oe.Op == "read" || oe.Op == "write")
}

// printable keeps a proxy's status line fit for a log: printable ASCII,
// at most 100 characters.
func printable(s string) string {
	out := make([]byte, 0, min(len(s), 100))
	for i := 0; i < len(s) && len(out) < 100; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			out = append(out, c)
		}
	}
	return string(out)
}

// Dialer reaches host:port addresses directly, or through Proxy unless
// its no_proxy list names the host.
type Dialer struct {
	// Proxy: nil dials directly.
	Proxy *Proxy
	// Timeout bounds the TCP connection and, through the proxy, its
	// answer to CONNECT.
	Timeout time.Duration
	// Observe, when set, is told the outcome of every tunnel: "ok" or an
	// Error's reason.
	Observe func(result string)

	direct net.Dialer
}

// NewDialer returns a Dialer.
func NewDialer(p *Proxy, timeout time.Duration, observe func(string)) *Dialer {
	return &Dialer{Proxy: p, Timeout: timeout, Observe: observe, direct: net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}}
}

// DialContext connects to addr (host:port), through the proxy when it
// applies. The partner's name is then resolved by the proxy, never here.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if !d.Proxy.Uses("https", addr) {
		return d.direct.DialContext(ctx, network, addr)
	}
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	conn, err := d.Proxy.Tunnel(ctx, &d.direct, addr)
	if err == nil {
		conn = &tunnelConn{Conn: conn, proxy: d.Proxy.addr, request: "CONNECT " + addr}
	}
	if d.Observe != nil {
		result := "ok"
		var e *Error
		if errors.As(err, &e) {
			result = e.Reason
		}
		d.Observe(result)
	}
	return conn, err
}

// tunnelConn says so when the tunnel ends before the partner sent
// anything (a bare EOF in the middle of the TLS handshake says nothing
// about the proxy in between).
type tunnelConn struct {
	net.Conn
	proxy, request string
	answered       bool // the partner sent bytes; reads are serialised by TLS
}

// SyscallConn is the socket's to the proxy: nothing is buffered between
// it and the tunnel (connect refuses bytes after the proxy's answer), so
// a non-blocking peek on it tells whether a pooled tunnel is still open
// (proxy.Upstream asks before reusing one; a proxy closes idle tunnels).
func (c *tunnelConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("the tunnel's connection has no socket")
	}
	return sc.SyscallConn()
}

func (c *tunnelConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.answered = true
	}
	if err == io.EOF && !c.answered {
		err = &Error{Reason: ReasonTunnelClosed, Proxy: c.proxy, Request: c.request,
			Err: errors.New("the tunnel closed before the partner sent anything: the proxy or the partner ended it")}
	}
	return n, err
}
