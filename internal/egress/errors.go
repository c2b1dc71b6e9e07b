package egress

import "fmt"

// Reasons a connection through the outbound proxy fails. The values are
// stable: they appear in JSON error bodies, logs and metric labels.
const (
	// ReasonUnreachable: no TCP connection to the proxy (refused, its name
	// does not resolve, no route).
	ReasonUnreachable = "proxy_unreachable"
	// ReasonTimeout: the proxy did not accept the connection or did not
	// answer CONNECT within the connect timeout.
	ReasonTimeout = "proxy_timeout"
	// ReasonAuth: the proxy wants other credentials (407; 401 to CONNECT,
	// as tinyproxy answers wrong ones).
	ReasonAuth = "proxy_auth"
	// ReasonRefused: the proxy refused the destination (403 or another
	// 4xx answer: the site's policy).
	ReasonRefused = "proxy_refused"
	// ReasonUpstream: the proxy could not reach the partner (a 5xx
	// answer: 502, 503, 504).
	ReasonUpstream = "proxy_upstream"
	// ReasonProtocol: the proxy closed the connection before answering,
	// or answered something that is not an HTTP answer to CONNECT.
	ReasonProtocol = "proxy_protocol"
	// ReasonTunnelClosed: the tunnel was open (200) but closed before the
	// partner sent a byte: the proxy or the partner ended it, mid-TLS
	// handshake.
	ReasonTunnelClosed = "proxy_tunnel_closed"
)

// Reasons lists every reason, for metric series made ahead at 0.
var Reasons = []string{ReasonUnreachable, ReasonTimeout, ReasonAuth, ReasonRefused, ReasonUpstream, ReasonProtocol, ReasonTunnelClosed}

// Error is a failure of the outbound proxy. It names the proxy by its
// address only: never its credentials.
type Error struct {
	Reason string
	// Proxy is the proxy's host:port; Request what it was asked
	// ("CONNECT idb.amc.example:443", "GET http://crl.example/a.crl").
	Proxy, Request string
	// Status is the proxy's status line ("407 Proxy Authentication
	// Required"), when it answered one.
	Status string
	Err    error
}

func (e *Error) Error() string {
	switch {
	case e.Status != "":
		return fmt.Sprintf("outbound proxy %s answered %q to %s", e.Proxy, e.Status, e.Request)
	case e.Err != nil:
		return fmt.Sprintf("outbound proxy %s, %s: %v", e.Proxy, e.Request, e.Err)
	}
	return fmt.Sprintf("outbound proxy %s, %s: %s", e.Proxy, e.Request, e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

// Timeout reports whether the proxy did not answer in time.
func (e *Error) Timeout() bool { return e.Reason == ReasonTimeout }

// ProxyReason is the reason, for classifiers that do not import this
// package (the revocation engine's fetch errors).
func (e *Error) ProxyReason() string { return e.Reason }
