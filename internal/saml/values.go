package saml

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Request headers the SIH sets for a VIHF; roc-proxy removes them before
// forwarding.
const (
	HeaderUserID          = "X-Roc-User-Id"     // NameID: the user's identifier (idNat_PS, e.g. 8 + RPPS)
	HeaderUserName        = "X-Roc-User-Name"   // subject-id: name, first name (unit)
	HeaderUserRoles       = "X-Roc-User-Roles"  // 1 to 4 roles: code[^codeSystem[^displayName]], comma separated
	HeaderPatientINS      = "X-Roc-Patient-Ins" // the patient's INS
	HeaderPurposeOfUse    = "X-Roc-Purpose-Of-Use"
	HeaderAuthnContext    = "X-Roc-Authn-Context"
	HeaderConfidentiality = "X-Roc-Confidentiality"
)

// RequestHeaders lists every header above.
var RequestHeaders = []string{HeaderUserID, HeaderUserName, HeaderUserRoles, HeaderPatientINS, HeaderPurposeOfUse, HeaderAuthnContext, HeaderConfidentiality}

// Role is a coded role (HL7 CE).
type Role struct {
	Code, CodeSystem, DisplayName string
}

// Values are the per-request values of a VIHF.
type Values struct {
	UserID, UserName string
	Roles            []Role
	PatientINS       string
	PurposeOfUse     string
	AuthnContext     string
	Confidentiality  string
}

// appendKey writes what identifies the values in the token cache.
func (v *Values) appendKey(b []byte) []byte {
	for _, s := range [...]string{v.UserID, v.UserName, v.PatientINS, v.PurposeOfUse, v.AuthnContext, v.Confidentiality} {
		b = appendKeyPart(b, s)
	}
	for _, r := range v.Roles {
		b = appendKeyPart(b, r.Code)
		b = appendKeyPart(b, r.CodeSystem)
		b = appendKeyPart(b, r.DisplayName)
	}
	return b
}

// ValuesError lists every missing or malformed per-request value.
type ValuesError struct {
	Problems []string
}

func (e *ValuesError) Error() string {
	return "per-request token values: " + strings.Join(e.Problems, "; ")
}

var (
	codeRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	oidRE  = regexp.MustCompile(`^[0-2](\.[0-9]+)+$`)
	// INS (NIR or NIA): 13 characters (digits, 2A/2B for Corsica) and an
	// optional 2-digit key.
	insRE = regexp.MustCompile(`^[0-9]{5}(?:[0-9]{2}|2A|2B)[0-9]{6}(?:[0-9]{2})?$`)
	urnRE = regexp.MustCompile(`^urn:[A-Za-z0-9][A-Za-z0-9:._-]{1,250}$`)
	// userIDRE: the user's identifier (idNat_PS 8 + RPPS, 0 + ADELI, an
	// internal login) is printable ASCII without spaces: identifiers that
	// look alike are the same bytes in the token and the audit log.
	userIDRE = regexp.MustCompile(`^[!-~]+$`)
)

// ParseValues reads the VIHF values of a request. Every problem is reported.
func ParseValues(h http.Header, defaultCodeSystem string) (*Values, error) {
	var problems []string
	get := func(name string, required bool) string {
		vals := h.Values(name)
		switch {
		case len(vals) == 0 || strings.TrimSpace(vals[0]) == "":
			if required {
				problems = append(problems, name+" is required")
			}
			return ""
		case len(vals) > 1:
			problems = append(problems, name+" is given more than once")
			return ""
		}
		v := strings.TrimSpace(vals[0])
		// Only XML characters: others would be signed as U+FFFD while
		// the audit record kept them. No control character, C1 ones
		// included (U+009B starts a terminal escape sequence where
		// `audit show` prints the value).
		if !utf8.ValidString(v) || len(v) > 256 || strings.ContainsFunc(v, func(r rune) bool { return unicode.IsControl(r) || !isXMLChar(r) }) {
			problems = append(problems, name+" must be UTF-8 text of at most 256 bytes of XML characters without control characters")
			return ""
		}
		// Nor an invisible format character (Cf: bidirectional
		// overrides and isolates, zero-width characters, the BOM, tag
		// characters): `audit show` and the logs would display the
		// value as something else than what is signed ("DUPONT
		// \u202eenneaJ" shows as "DUPONT Jeanne").
		if i := strings.IndexFunc(v, func(r rune) bool { return unicode.Is(unicode.Cf, r) }); i >= 0 {
			r, _ := utf8.DecodeRuneInString(v[i:])
			problems = append(problems, fmt.Sprintf("%s holds the invisible format character U+%04X (bidirectional control, zero-width or tag character): logs and audit records would show it misleadingly", name, r))
			return ""
		}
		return v
	}
	v := &Values{
		UserID:          get(HeaderUserID, true),
		UserName:        get(HeaderUserName, true),
		PatientINS:      get(HeaderPatientINS, true),
		PurposeOfUse:    get(HeaderPurposeOfUse, false),
		AuthnContext:    get(HeaderAuthnContext, false),
		Confidentiality: get(HeaderConfidentiality, false),
	}
	if v.UserID != "" && !userIDRE.MatchString(v.UserID) {
		problems = append(problems, HeaderUserID+" must be printable ASCII without spaces (an identifier: 8 + RPPS, 0 + ADELI, a login)")
	}
	if v.PatientINS != "" && !insRE.MatchString(v.PatientINS) {
		problems = append(problems, HeaderPatientINS+" is not an INS (13 characters and an optional 2-digit key)")
	}
	if v.AuthnContext != "" && !urnRE.MatchString(v.AuthnContext) {
		problems = append(problems, HeaderAuthnContext+" must be a URN")
	}
	if v.PurposeOfUse != "" && !codeRE.MatchString(v.PurposeOfUse) {
		problems = append(problems, HeaderPurposeOfUse+" must be a code")
	}
	if v.Confidentiality != "" && !codeRE.MatchString(v.Confidentiality) {
		problems = append(problems, HeaderConfidentiality+" must be a code")
	}
	if roles := get(HeaderUserRoles, true); roles != "" {
		parts := strings.Split(roles, ",")
		if len(parts) > 4 {
			problems = append(problems, HeaderUserRoles+" lists more than 4 roles")
		}
		for i, part := range parts {
			f := strings.Split(strings.TrimSpace(part), "^")
			r := Role{Code: f[0], CodeSystem: defaultCodeSystem}
			if len(f) > 1 && f[1] != "" {
				r.CodeSystem = f[1]
			}
			if len(f) > 2 {
				r.DisplayName = f[2]
			}
			if len(f) > 3 || !codeRE.MatchString(r.Code) || !oidRE.MatchString(r.CodeSystem) {
				problems = append(problems, fmt.Sprintf("%s role %d must be code[^codeSystem OID[^displayName]]", HeaderUserRoles, i+1))
				continue
			}
			v.Roles = append(v.Roles, r)
		}
	}
	if len(problems) > 0 {
		return nil, &ValuesError{Problems: problems}
	}
	return v, nil
}
