package proxy

import (
	"crypto/rand"
	"encoding/hex"
)

// HeaderRequestID carries the request identifier to the upstream and back to
// the SIH.
const HeaderRequestID = "X-Request-Id"

// requestID returns the SIH's identifier when it is safe to log and forward
// (1 to 128 characters of [A-Za-z0-9._:-]), or a new random one.
func requestID(in string) string {
	if validRequestID(in) {
		return in
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}
