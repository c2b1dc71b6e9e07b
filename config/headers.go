package config

import (
	"slices"
	"strings"
)

// The headers roc-proxy never lets reach a partner, in lower case with
// "-" (internal/proxy drops them from every request, in any spelling;
// route validation refuses a token http_header among them).
const (
	// RocHeaderPrefix is the prefix of the headers only roc-proxy reads.
	RocHeaderPrefix = "x-roc-"
	// ForwardedHeaderPrefix is the prefix of the X-Forwarded-* family.
	ForwardedHeaderPrefix = "x-forwarded-"
)

// SpoofableHeaders would let the SIH speak for another client or a TLS
// identity towards a partner ("proxy" is httpoxy: CGI's HTTP_PROXY).
var SpoofableHeaders = []string{
	"forwarded", "x-real-ip", "x-client-ip", "x-client-cert", "x-ssl-client-cert",
	"ssl-client-cert", "true-client-ip", "x-original-forwarded-for", "proxy",
}

// HopHeaders are the hop-by-hop headers, and X-Request-Id (roc-proxy sets
// its own).
var HopHeaders = []string{
	"connection", "proxy-connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
	"te", "trailer", "transfer-encoding", "upgrade", "x-request-id",
}

// NeverForwarded reports whether a header roc-proxy would set on a
// request, named by key (lower case, "-" for "_"), would be dropped or
// replaced on its way to the partner: X-Roc-*, X-Forwarded-*, a spoofable
// or hop-by-hop header, or one the proxy sets itself.
func NeverForwarded(key string) bool {
	return strings.HasPrefix(key, RocHeaderPrefix) || strings.HasPrefix(key, ForwardedHeaderPrefix) ||
		slices.Contains(SpoofableHeaders, key) || slices.Contains(HopHeaders, key) ||
		key == "host" || key == "content-length" || key == "expect"
}
