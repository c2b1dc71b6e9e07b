package proxy

import (
	"net/http"
	"strings"
	"unicode/utf8"
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

// sameHeaderKey reports whether headerKey(name) == key for a key already
// in that form, without allocating for ASCII names (every request's
// headers pass here): net/http refuses other names from the SIH, and
// they take headerKey's path (Unicode case folding) all the same.
func sameHeaderKey(name, key string) bool {
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			return headerKey(name) == key
		}
	}
	if len(name) != len(key) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		if c != key[i] {
			return false
		}
	}
	return true
}

// rocPrefix is the prefix of the headers only roc-proxy reads, in
// headerKey's form.
const rocPrefix = "x-roc-"

// isRocHeader reports whether headerKey(name) starts with rocPrefix.
func isRocHeader(name string) bool {
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			return strings.HasPrefix(headerKey(name), rocPrefix)
		}
	}
	return len(name) >= len(rocPrefix) && sameHeaderKey(name[:len(rocPrefix)], rocPrefix)
}

// stripTokenHeaders removes, before the token is made, what only roc-proxy
// may say: the token headers of the route (any spelling) and the
// underscore spellings of X-Roc-* (the canonical ones carry the token's
// values and are removed after, by stripRocHeaders). tokenKeys are the
// route's token headers in headerKey's form (computed once, in New).
func stripTokenHeaders(h http.Header, tokenKeys []string) {
	for name := range h {
		if isRocHeader(name) && strings.Contains(name, "_") {
			delete(h, name)
			continue
		}
		for _, k := range tokenKeys {
			if sameHeaderKey(name, k) {
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
		if isRocHeader(name) {
			delete(h, name)
		}
	}
}
