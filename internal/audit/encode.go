package audit

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// The writer encodes every record, and the next record hashes the exact
// bytes: the encoding is part of the chain format. It is encoding/json's
// (struct order, omitempty, HTML-safe escaping, sorted map keys, base64
// bytes, RFC 3339 times), written here without reflection into a buffer
// the writer reuses: json.Marshal cost more than the rest of a record's
// write. TestEncodeRecordIsJSONMarshal and FuzzEncodeRecord hold the two
// byte for byte; anything this encoder does not reproduce exactly (a time
// outside years 0-9999, a NaN latency) is handed to json.Marshal.

// appendRecord appends r's line (without newline) to b.
func appendRecord(b []byte, r *Record) ([]byte, error) {
	if !plainEncodable(r) {
		line, err := json.Marshal(r)
		if err != nil {
			return b, err
		}
		return append(b, line...), nil
	}
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(r.Version), 10)
	b = append(b, `,"chain":`...)
	b = appendString(b, r.Chain)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"time":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","type":`...)
	b = appendString(b, r.Type)
	b = append(b, `,"prev":`...)
	b = appendString(b, r.Prev)
	b = appendOptString(b, `,"request_id":`, r.RequestID)
	b = appendOptString(b, `,"route":`, r.Route)
	b = appendOptString(b, `,"assertion_id":`, r.AssertionID)
	b = appendOptString(b, `,"profile":`, r.Profile)
	b = appendOptString(b, `,"issuer":`, r.Issuer)
	b = appendOptString(b, `,"name_id":`, r.NameID)
	if len(r.Attributes) > 0 {
		b = append(b, `,"attributes":{`...)
		var small [8]string
		keys := small[:0]
		for k := range r.Attributes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, r.Attributes[k])
		}
		b = append(b, '}')
	}
	b = appendOptString(b, `,"signer_sha256":`, r.SignerSHA256)
	b = appendOptString(b, `,"assertion_sha256":`, r.AssertionSHA256)
	if r.Cached {
		b = append(b, `,"cached":true`...)
	}
	b = appendOptString(b, `,"upstream":`, r.Upstream)
	b = appendOptString(b, `,"client":`, r.Client)
	b = appendOptBytes(b, `,"assertion":`, r.Assertion)
	if r.Status != 0 {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(r.Status), 10)
	}
	if r.LatencyMS != 0 {
		b = append(b, `,"latency_ms":`...)
		b = appendFloat(b, r.LatencyMS)
	}
	b = appendOptString(b, `,"error":`, r.ErrorClass)
	b = appendOptString(b, `,"head":`, r.Head)
	b = appendOptBytes(b, `,"signature":`, r.Signature)
	b = appendOptBytes(b, `,"cert":`, r.Cert)
	if r.Every != 0 {
		b = append(b, `,"every":`...)
		b = strconv.AppendInt(b, int64(r.Every), 10)
	}
	b = appendOptString(b, `,"note":`, r.Note)
	return append(b, '}'), nil
}

// plainEncodable reports whether appendRecord's own encoding is
// encoding/json's for r: a time json.Marshal accepts and writes as
// RFC 3339 (year 0 to 9999, zone offset under 24 hours, whole minutes)
// and a finite latency. Anything else goes to json.Marshal, which also
// returns its error.
func plainEncodable(r *Record) bool {
	if math.IsNaN(r.LatencyMS) || math.IsInf(r.LatencyMS, 0) {
		return false
	}
	if y := r.Time.Year(); y < 0 || y > 9999 {
		return false
	}
	_, off := r.Time.Zone()
	return off%60 == 0 && off > -24*3600 && off < 24*3600
}

func appendOptString(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(append(b, key...), s)
}

func appendOptBytes(b []byte, key string, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = append(b, key...)
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

// appendFloat is encoding/json's float64 encoding: shortest
// representation, exponent form below 1e-6 and from 1e21, two-digit
// negative exponents trimmed (1e-07 -> 1e-7).
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString is encoding/json's string encoding with HTML escaping (its
// default): ", \ and control characters escaped (\b \f \n \r \t short),
// <, > and & as \u003c \u003e \u0026, invalid UTF-8 as \ufffd, U+2028 and
// U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
