// Package egress is how roc-proxy leaves the hospital's network: directly,
// or through the hospital's HTTP forward proxy (outbound_proxy), for the
// partners of the routes and for revocation fetches.
//
// It owns the proxy's configuration once loaded (address, Basic
// credentials read from a file or the environment, the no_proxy list), the
// CONNECT tunnel, the transport of revocation fetches, and the
// classification of the proxy's failures (errors.go). The tunnel only
// carries bytes: the TLS inside it is roc-proxy's own (internal/mtls), so
// mutual TLS and the verification of the partner's chain stay end to end.
//
// It never writes the credentials anywhere but in the Proxy-Authorization
// header sent to the proxy: not in an error, a log field, a metric label or
// a URL; it never sends them to any other host; and it never reads the
// HTTP_PROXY, HTTPS_PROXY or NO_PROXY environment variables (the proxy is
// configured, not inherited).
package egress
