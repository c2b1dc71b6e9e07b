package proxy

import (
	"net/http"
	"strings"
)

// DefaultTokenHeader is where a token route's partner might look for a
// token in a header (the default of token.http_header): a SIH never sets
// it on such a route.
const DefaultTokenHeader = "X-Saml-Token"

// headerKey is a header name as servers that treat "_" like "-" and
// ignore case (CGI, PHP, some gateways) read it.
func headerKey(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// stripTokenHeaders removes, before the token is made, what only roc-proxy
// may say: the token headers of the route (any spelling) and the
// underscore spellings of X-Roc-* (the canonical ones carry the token's
// values and are removed after, by stripRocHeaders).
func stripTokenHeaders(h http.Header, tokenHeaders []string) {
	for name := range h {
		k := headerKey(name)
		if strings.HasPrefix(k, "x-roc-") && strings.Contains(name, "_") {
			delete(h, name)
			continue
		}
		for _, t := range tokenHeaders {
			if k == headerKey(t) {
				delete(h, name)
				break
			}
		}
	}
}

// stripRocHeaders removes every X-Roc-* header, whatever its spelling:
// they are for roc-proxy, never for a partner.
func stripRocHeaders(h http.Header) {
	for name := range h {
		if strings.HasPrefix(headerKey(name), "x-roc-") {
			delete(h, name)
		}
	}
}
