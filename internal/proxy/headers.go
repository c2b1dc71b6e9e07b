package proxy

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/roc-proxy/roc-proxy/config"
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
const rocPrefix = config.RocHeaderPrefix

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

// The lists, in headerKey's form (config's): the spoofable headers are
// dropped in any spelling, with the X-Forwarded-* family; of the
// hop-by-hop ones ReverseProxy drops the canonical spellings (roc-proxy
// sets its own X-Request-Id), and their "_" spellings, which a CGI, PHP or
// WSGI partner reads as the same variable, are dropped here.
const forwardedPrefix = config.ForwardedHeaderPrefix

var ( // copies: nothing done to them here can change config's
	spoofableKeys = slices.Clone(config.SpoofableHeaders)
	hopKeys       = slices.Clone(config.HopHeaders)
)

// isPartnerForbidden reports whether a header the SIH sent may never
// reach a partner, however spelled: X-Roc-*, the spoofable ones and the
// underscore spellings of the hop-by-hop ones. It allocates nothing for
// ASCII names; others take headerKey's path.
func isPartnerForbidden(name string) bool {
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			return forbiddenKey(headerKey(name), strings.Contains(name, "_"))
		}
	}
	if isRocHeader(name) || len(name) >= len(forwardedPrefix) && sameHeaderKey(name[:len(forwardedPrefix)], forwardedPrefix) {
		return true
	}
	for _, k := range spoofableKeys {
		if sameHeaderKey(name, k) {
			return true
		}
	}
	if strings.IndexByte(name, '_') >= 0 {
		for _, k := range hopKeys {
			if sameHeaderKey(name, k) {
				return true
			}
		}
	}
	return false
}

// neverForwarded reports whether a header roc-proxy sets on a request
// (a token route's http_header) would be dropped or replaced on its way to
// the partner, in any spelling.
func neverForwarded(name string) bool { return config.NeverForwarded(headerKey(name)) }

// forbiddenKey is isPartnerForbidden for a name in headerKey's form.
func forbiddenKey(k string, underscore bool) bool {
	if strings.HasPrefix(k, rocPrefix) || strings.HasPrefix(k, forwardedPrefix) || slices.Contains(spoofableKeys, k) {
		return true
	}
	return underscore && slices.Contains(hopKeys, k)
}

// stripPartnerHeaders removes from a request to a partner what
// isPartnerForbidden names, and the headers the SIH's Connection header
// (connection, its values) lists in any spelling: ReverseProxy removes
// those by their canonical names only, so "Connection: X-A" left X_A.
func stripPartnerHeaders(h http.Header, connection []string) {
	for name := range h {
		if isPartnerForbidden(name) || len(connection) > 0 && listedIn(connection, name) {
			delete(h, name)
		}
	}
}

// listedIn reports whether one of the comma-separated names of values
// is name in headerKey's form.
func listedIn(values []string, name string) bool {
	for _, v := range values {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" && sameHeaderKey(name, headerKey(f)) {
				return true
			}
		}
	}
	return false
}
