package config

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// dnAttributes maps the attribute names people write in distinguished names
// (RFC 4514, OpenSSL's and Windows' spellings) to their OIDs.
var dnAttributes = map[string]asn1.ObjectIdentifier{
	"CN": {2, 5, 4, 3}, "SN": {2, 5, 4, 4}, "SERIALNUMBER": {2, 5, 4, 5}, "C": {2, 5, 4, 6},
	"L": {2, 5, 4, 7}, "ST": {2, 5, 4, 8}, "S": {2, 5, 4, 8}, "STREET": {2, 5, 4, 9}, "O": {2, 5, 4, 10},
	"OU": {2, 5, 4, 11}, "T": {2, 5, 4, 12}, "TITLE": {2, 5, 4, 12}, "G": {2, 5, 4, 42}, "GN": {2, 5, 4, 42},
	"GIVENNAME": {2, 5, 4, 42}, "ORGANIZATIONIDENTIFIER": {2, 5, 4, 97},
	"E": {1, 2, 840, 113549, 1, 9, 1}, "EMAIL": {1, 2, 840, 113549, 1, 9, 1}, "EMAILADDRESS": {1, 2, 840, 113549, 1, 9, 1},
	"DC": {0, 9, 2342, 19200300, 100, 1, 25}, "UID": {0, 9, 2342, 19200300, 100, 1, 1},
}

// DNAttribute is one attribute of a parsed distinguished name.
type DNAttribute struct {
	Type  asn1.ObjectIdentifier
	Value string
}

// ParseDN parses a distinguished name written as text, in RFC 4514 order
// (CN first) or the reverse (C first) alike, with "," or ";" between RDNs
// (spaces allowed around them), "+" inside a multi-valued RDN, and RFC 4514
// escapes or quoted values. It returns the RDNs in the order written.
func ParseDN(s string) ([][]DNAttribute, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty distinguished name")
	}
	var rdns [][]DNAttribute
	var rdn []DNAttribute
	i := 0
	for {
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return nil, fmt.Errorf("%q: attribute without =", strings.TrimSpace(s[i:]))
		}
		name := strings.TrimSpace(s[i : i+eq])
		oid, err := attributeOID(name)
		if err != nil {
			return nil, err
		}
		i += eq + 1
		value, n, err := dnValue(s[i:])
		if err != nil {
			return nil, fmt.Errorf("value of %s: %w", name, err)
		}
		i += n
		rdn = append(rdn, DNAttribute{Type: oid, Value: value})
		if i >= len(s) {
			rdns = append(rdns, rdn)
			return rdns, nil
		}
		switch s[i] {
		case '+':
		case ',', ';':
			rdns = append(rdns, rdn)
			rdn = nil
		}
		i++
	}
}

func attributeOID(name string) (asn1.ObjectIdentifier, error) {
	if oid, ok := dnAttributes[strings.ToUpper(name)]; ok {
		return oid, nil
	}
	var oid asn1.ObjectIdentifier
	for _, part := range strings.Split(strings.TrimPrefix(strings.ToUpper(name), "OID."), ".") {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("unknown attribute %q (use CN, OU, O, C, L, ST, E... or a dotted OID)", name)
		}
		oid = append(oid, n)
	}
	if len(oid) < 2 {
		return nil, fmt.Errorf("unknown attribute %q", name)
	}
	return oid, nil
}

// dnValue reads one attribute value up to an unescaped ",", ";" or "+",
// returning the unescaped value and the bytes consumed.
func dnValue(s string) (string, int, error) {
	i := 0
	for i < len(s) && s[i] == ' ' {
		i++
	}
	var b strings.Builder
	if i < len(s) && s[i] == '"' {
		i++
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			b.WriteByte(s[i])
		}
		if i >= len(s) {
			return "", 0, errors.New("unterminated quote")
		}
		i++
		for i < len(s) && s[i] == ' ' {
			i++
		}
		if i < len(s) && !strings.ContainsRune(",;+", rune(s[i])) {
			return "", 0, errors.New("text after a quoted value")
		}
		return b.String(), i, nil
	}
	for ; i < len(s); i++ {
		c := s[i]
		if c == ',' || c == ';' || c == '+' {
			break
		}
		if c == '\\' {
			if i+1 >= len(s) {
				return "", 0, errors.New("trailing backslash")
			}
			if i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
				v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
				b.WriteByte(byte(v))
				i += 2
				continue
			}
			i++
			c = s[i]
		}
		b.WriteByte(c)
	}
	return strings.TrimRight(b.String(), " "), i, nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// DNMatches reports whether the distinguished name written as text names
// the DER-encoded name raw, read in either order (RFC 4514's CN-first or
// the C-first order certificates are encoded in). Attribute values compare
// case-insensitively with surrounding spaces ignored, as LDAP's
// caseIgnoreMatch does for directory strings.
func DNMatches(text string, raw []byte) bool {
	want, err := ParseDN(text)
	if err != nil {
		return false
	}
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(raw, &seq); err != nil || len(rest) > 0 {
		return false
	}
	if len(seq) != len(want) {
		return false
	}
	same := func(reversed bool) bool {
		for i := range want {
			j := i
			if reversed {
				j = len(want) - 1 - i
			}
			if !sameRDN(want[j], seq[i]) {
				return false
			}
		}
		return true
	}
	return same(false) || same(true)
}

func sameRDN(want []DNAttribute, got pkix.RelativeDistinguishedNameSET) bool {
	if len(want) != len(got) {
		return false
	}
	used := make([]bool, len(got))
	for _, w := range want {
		found := false
		for k, g := range got {
			if used[k] || !g.Type.Equal(w.Type) {
				continue
			}
			if v, ok := g.Value.(string); ok && strings.EqualFold(strings.TrimSpace(v), strings.TrimSpace(w.Value)) {
				used[k], found = true, true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
