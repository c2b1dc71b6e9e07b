package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// ClientOptions configure the outbound side of one route.
type ClientOptions struct {
	// ServerName is sent as SNI and checked by VerifyConnection.
	ServerName string
	// VerifyConnection checks the partner's chain against the route's trust
	// bundles only (see trust.Verifier).
	VerifyConnection func(tls.ConnectionState) error
	// ClientCertificate returns the current ORG_AUTH_CLI certificate; a
	// function so that a renewed certificate is picked up by new handshakes.
	ClientCertificate func() *tls.Certificate
	// Now feeds tls.Config.Time.
	Now func() time.Time
}

// ClientConfig returns the tls.Config of an upstream connection.
func ClientConfig(o ClientOptions) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: o.ServerName,
		// The standard verification would use a single root pool and no
		// classification; VerifyConnection does the full verification with
		// the route's bundles, on full and resumed handshakes alike.
		InsecureSkipVerify: true, //nolint:gosec // replaced by VerifyConnection
		VerifyConnection:   o.VerifyConnection,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return o.ClientCertificate(), nil
		},
		ClientSessionCache: tls.NewLRUClientSessionCache(64),
		Time:               o.Now,
	}
}

// TransportOptions bound an upstream exchange.
type TransportOptions struct {
	TLS                   *tls.Config
	ConnectTimeout        time.Duration
	TLSHandshakeTimeout   time.Duration
	ResponseHeaderTimeout time.Duration
	// MaxIdleConnsPerHost sizes the keep-alive pool to the upstream.
	MaxIdleConnsPerHost int
	// VerifyPeer, when set, verifies each connection at its handshake in
	// place of TLS.VerifyConnection (with the dial's context, which bounds
	// revocation fetches) and returns the connection's standing check,
	// asked before every request written on it: a pooled keep-alive
	// connection then serves no request once the partner is revoked.
	// closeConn closes the connection at once (a revocation learnt in the
	// background).
	VerifyPeer func(ctx context.Context, cs tls.ConnectionState, closeConn func()) (PeerGuard, error)
}

// PeerGuard is a connection's standing check (see trust.ChainGuard).
type PeerGuard interface {
	Allow() error
	Release()
}

// NewTransport returns a pooled, keep-alive HTTP/1.1 transport to one
// upstream. Proxy settings from the environment are ignored: partners are
// reached directly, with the establishment's certificate.
func NewTransport(o TransportOptions) *http.Transport {
	if o.MaxIdleConnsPerHost == 0 {
		o.MaxIdleConnsPerHost = 64
	}
	d := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		TLSClientConfig:       o.TLS,
		TLSHandshakeTimeout:   o.TLSHandshakeTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		MaxIdleConns:          o.MaxIdleConnsPerHost,
		MaxIdleConnsPerHost:   o.MaxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// A whole SOAP request (headers and body) leaves in one write.
		WriteBufferSize:   32 << 10,
		ReadBufferSize:    32 << 10,
		ForceAttemptHTTP2: false,
	}
	if o.VerifyPeer != nil {
		t.DialTLSContext = o.dialTLS(d)
	}
	return t
}

// dialTLS dials and handshakes as http.Transport would, with a
// per-connection VerifyConnection that keeps the connection's standing
// check, and wraps the connection so that every write asks it first.
func (o TransportOptions) dialTLS(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		hctx, cancel := ctx, context.CancelFunc(func() {})
		if o.TLSHandshakeTimeout > 0 {
			hctx, cancel = context.WithTimeout(ctx, o.TLSHandshakeTimeout)
		}
		defer cancel()
		cfg := o.TLS.Clone()
		if cfg.ServerName == "" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg.ServerName = host
			}
		}
		gc := &guardedConn{}
		var guard PeerGuard
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			g, err := o.VerifyPeer(hctx, cs, gc.closeNow)
			guard = g
			return err
		}
		tc := tls.Client(raw, cfg)
		gc.Conn = tc
		if err := tc.HandshakeContext(hctx); err != nil {
			raw.Close()
			if guard != nil {
				guard.Release()
			}
			if errors.Is(hctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
				return nil, handshakeTimeoutError{}
			}
			return nil, err
		}
		if guard == nil {
			return tc, nil // no standing check: a plain TLS connection
		}
		gc.guard = guard
		return gc, nil
	}
}

// handshakeTimeoutError is net/http's own ("TLS handshake timeout"), which
// the proxy classifies as reason tls_handshake.
type handshakeTimeoutError struct{}

func (handshakeTimeoutError) Error() string   { return "net/http: TLS handshake timeout" }
func (handshakeTimeoutError) Timeout() bool   { return true }
func (handshakeTimeoutError) Temporary() bool { return true }

// guardedConn asks its standing check before each write: a request never
// leaves on a connection whose partner is revoked (or, under a hard
// policy, has no usable status any more); the connection is closed then.
type guardedConn struct {
	*tls.Conn
	guard  PeerGuard
	closed atomic.Bool
}

func (c *guardedConn) Write(b []byte) (int, error) {
	if err := c.guard.Allow(); err != nil {
		c.Close()
		return 0, err
	}
	return c.Conn.Write(b)
}

func (c *guardedConn) Close() error {
	if !c.closed.Swap(true) && c.guard != nil {
		c.guard.Release()
	}
	return c.Conn.Close()
}

// closeNow closes the connection from another goroutine (revocation learnt
// in the background): a pooled idle connection leaves the pool, one in use
// fails its exchange.
// The guard already knows (it calls closeNow once): only the connection is
// closed here, which tls.Conn allows from any goroutine.
func (c *guardedConn) closeNow() {
	if c.Conn != nil {
		c.Conn.Close()
	}
}

// ServerOptions configure a TLS server: the simulated partners and, later,
// the SIH-facing listener.
type ServerOptions struct {
	Certificate *tls.Certificate
	// ClientCAs, when set, makes client certificates mandatory and verified
	// against these authorities.
	ClientCAs *x509.CertPool
}

// ServerConfig returns the tls.Config of a server.
func ServerConfig(o ServerOptions) *tls.Config {
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*o.Certificate},
	}
	if o.ClientCAs != nil {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = o.ClientCAs
	}
	return c
}

// ListenerOptions configure the SIH listener's TLS.
type ListenerOptions struct {
	// Certificate returns the current server certificate (reloaded when
	// its files change); or GetCertificate (certmagic, with NextProtos for
	// the TLS-ALPN challenge).
	Certificate    func() *tls.Certificate
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	NextProtos     []string
	// ClientCAs, when set, asks the SIH for a client certificate issued by
	// these authorities; the proxy handler verifies it (proxy.Options).
	ClientCAs *x509.CertPool
}

// ListenerConfig returns the tls.Config of the SIH listener.
func ListenerConfig(o ListenerOptions) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: o.GetCertificate, NextProtos: o.NextProtos}
	if o.Certificate != nil {
		c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return o.Certificate(), nil }
	}
	if o.ClientCAs != nil {
		// Asked for, with the authorities named, but verified by the
		// handler: a missing or foreign certificate then gets a 403 that
		// says so rather than a bare handshake alert.
		c.ClientAuth = tls.RequestClientCert
		c.ClientCAs = o.ClientCAs
	}
	return c
}
