package saml

import (
	"errors"
	"strings"
	"testing"

	"github.com/beevik/etree"
)

const s11 = `xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"`

// TestSecurityOnlyInHeader plays a SIH (or whoever writes its payload)
// putting a wsse:Security element at depth 2 outside the Header: the token
// must still go into the Header's Security, never into the Body.
func TestSecurityOnlyInHeader(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"Security in the Body after an empty Header",
			`<S:Envelope ` + s11 + `><S:Header/><S:Body><wsse:Security xmlns:wsse="` + NSWSSE + `"/></S:Body></S:Envelope>`},
		{"Security in the Body after a Header",
			`<S:Envelope ` + s11 + `><S:Header><x:h xmlns:x="urn:x"/></S:Header><S:Body><wsse:Security xmlns:wsse="` + NSWSSE + `"><x/></wsse:Security></S:Body></S:Envelope>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := newInjector(t, rocToken()).Inject(nil, []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			doc := etree.NewDocument()
			if err := doc.ReadFromBytes(tok.Body); err != nil {
				t.Fatal(err)
			}
			as := doc.FindElements("//Assertion")
			if len(as) != 1 {
				t.Fatalf("%d assertions", len(as))
			}
			sec := as[0].Parent()
			if sec.Tag != "Security" || sec.Parent() == nil || sec.Parent().Tag != "Header" || sec.Parent().Parent() != doc.Root() {
				t.Fatalf("the assertion is not in Envelope/Header/Security:\n%s", tok.Body)
			}
		})
	}
}

// TestIllFormedEnvelopesAreRefused plays a SIH sending envelopes that are
// not namespace-well-formed XML, or that carry what only roc-proxy may
// add: none may be signed.
func TestIllFormedEnvelopesAreRefused(t *testing.T) {
	in := newInjector(t, rocToken())
	env := func(inner string) string {
		return `<S:Envelope ` + s11 + `><S:Body>` + inner + `</S:Body></S:Envelope>`
	}
	for _, tc := range []struct{ name, body, want string }{
		{"trailing text after the root", env("<x/>") + "trailing", "text outside the root element"},
		{"a second root element", env("<x/>") + env("<y/>"), "a second root element"},
		{"a duplicated attribute", env(`<x a="1" a="2"/>`), "attribute a given twice"},
		{"the same attribute under two prefixes", env(`<x xmlns:p="urn:p" xmlns:q="urn:p" p:a="1" q:a="2"/>`), "attribute q:a given twice"},
		{"an undeclared element prefix", env(`<u:x/>`), "undeclared namespace prefix u"},
		{"an undeclared attribute prefix", env(`<x u:a="1"/>`), "undeclared namespace prefix u"},
		{"a prefix undeclared with an empty value", env(`<x xmlns:p=""/>`), "cannot be undeclared"},
		{"the xml prefix rebound", env(`<x xmlns:xml="urn:x"/>`), "the prefix xml cannot be bound"},
		{"a SAML 1.1 assertion", env(`<saml1:Assertion xmlns:saml1="urn:oasis:names:tc:SAML:1.0:assertion"/>`), "already carries a SAML assertion"},
		{"a SAML 2 encrypted assertion", env(`<saml:EncryptedAssertion xmlns:saml="` + NSAssertion + `"/>`), "already carries a SAML assertion"},
		{"a UsernameToken in the Security header", `<S:Envelope ` + s11 + `><S:Header><wsse:Security xmlns:wsse="` + NSWSSE + `"><wsse:UsernameToken><wsse:Username>admin</wsse:Username></wsse:UsernameToken></wsse:Security></S:Header><S:Body/></S:Envelope>`, "the Security header may only carry a wsu:Timestamp"},
		{"an element after the Body", `<S:Envelope ` + s11 + `><S:Body/><x:Extra xmlns:x="urn:x"><wsse:Security xmlns:wsse="` + NSWSSE + `"/></x:Extra></S:Envelope>`, "only a Header and a Body"},
		{"text in the Envelope", `<S:Envelope ` + s11 + `>text<S:Body/></S:Envelope>`, "text directly in the Envelope"},
		{"text in the Security header", `<S:Envelope ` + s11 + `><S:Header><wsse:Security xmlns:wsse="` + NSWSSE + `">forged</wsse:Security></S:Header><S:Body/></S:Envelope>`, "text directly in the Security header"},
		{"a character reference in the Security header", `<S:Envelope ` + s11 + `><S:Header><wsse:Security xmlns:wsse="` + NSWSSE + `">&#65;</wsse:Security></S:Header><S:Body/></S:Envelope>`, "text directly in the Security header"},
		{"a local name starting with a digit", env(`<p:0x xmlns:p="urn:p"/>`), "is not a qualified name"},
		{"a local name starting with a hyphen", env(`<x xmlns:p="urn:p" p:-a="1"/>`), "is not a qualified name"},
		{"a local name starting with a combining mark", env("<p:\u0300x xmlns:p=\"urn:p\"/>"), "is not a qualified name"},
		{"a prefix declared with a local name starting with a full stop", env(`<x xmlns:.p="urn:p"/>`), "is not a qualified name"},
		{"U+FFFF in the payload", env("<x>\uffff</x>"), "not an XML character"},
		{"a character reference to U+FFFE", env("<x>&#xFFFE;</x>"), "not an XML character"},
		{"a NUL character", env("<x>\x00</x>"), "not an XML character"},
		{"XML 1.1", `<?xml version="1.1"?>` + env(""), "not 1.0"},
		{"an XML declaration in the middle", env(`<?xml version="1.0"?>`), "XML declaration must be at the very start"},
		{"mismatched end tag", `<S:Envelope ` + s11 + `><S:Body></S:Envelope></S:Body>`, "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := in.Inject(nil, []byte(tc.body))
			var ee *EnvelopeError
			if !errors.As(err, &ee) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want an EnvelopeError with %q", err, tc.want)
			}
		})
	}
	// A Timestamp in the SIH's Security header stays, with the token beside it.
	ts := `<S:Envelope ` + s11 + `><S:Header><wsse:Security xmlns:wsse="` + NSWSSE + `"><wsu:Timestamp xmlns:wsu="` + NSWSU + `"><wsu:Created>2026-01-01T00:00:00Z</wsu:Created></wsu:Timestamp></wsse:Security></S:Header><S:Body/></S:Envelope>`
	if _, err := in.Inject(nil, []byte(ts)); err != nil {
		t.Fatalf("Security with a Timestamp: %v", err)
	}
}

// TestNonXMLCharactersInValues plays a SIH sending U+FFFE / U+FFFF in an
// identity header: the XML writer would sign U+FFFD while the audit record
// kept the original. Refused, so that what is signed and what is audited
// are the same bytes.
func TestNonXMLCharactersInValues(t *testing.T) {
	in := newInjector(t, vihfToken())
	body := []byte(`<S:Envelope ` + s11 + `><S:Body/></S:Envelope>`)
	for _, tc := range []struct{ header, value string }{
		{HeaderUserName, "DUPONT\uffffJeanne"},
		{HeaderUserName, "DUPONT\ufffeJeanne"},
		{HeaderUserRoles, "10^1.2.250.1.71.1.2.7^M\uffffdecin"},
		{HeaderUserID, "8100\ufffe02345678"},
	} {
		h := vihfHeaders()
		h.Set(tc.header, tc.value)
		_, err := in.Inject(h, body)
		var ve *ValuesError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.header) {
			t.Errorf("%s=%q: error %v, want a ValuesError naming the header", tc.header, tc.value, err)
		}
	}
}

// TestC1ControlsInValues plays a SIH (or a user whose name it copies)
// putting C1 control characters (U+0080-U+009F) in identity headers:
// net/http lets them through (they are not ASCII controls), the token
// would carry them and `audit show` would print them raw in the security
// team's terminal, where U+009B is the 8-bit CSI that starts an escape
// sequence and U+0085 a line break. The error promises "without control
// characters": refused like the C0 ones.
func TestC1ControlsInValues(t *testing.T) {
	in := newInjector(t, vihfToken())
	body := []byte(`<S:Envelope ` + s11 + `><S:Body/></S:Envelope>`)
	for _, tc := range []struct{ header, value string }{
		{HeaderUserName, "DUPONT\u009b31mJeanne"},
		{HeaderUserName, "DUPONT\u0085Jeanne"},
		{HeaderUserID, "8100\u008002345678"},
		{HeaderUserRoles, "10^1.2.250.1.71.1.2.7^M\u009fdecin"},
	} {
		h := vihfHeaders()
		h.Set(tc.header, tc.value)
		_, err := in.Inject(h, body)
		var ve *ValuesError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.header) {
			t.Errorf("%s=%q: error %v, want a ValuesError naming the header", tc.header, tc.value, err)
		}
	}
	// Letters beyond ASCII stay accepted.
	h := vihfHeaders()
	h.Set(HeaderUserName, "DUPONT Jeanne-Éloïse (Médecine interne)")
	if _, err := in.Inject(h, body); err != nil {
		t.Errorf("accented name refused: %v", err)
	}
}

// TestFormatCharactersInValues plays a SIH (or a user whose name it copies
// from a directory) putting invisible Unicode format characters (category
// Cf) in identity headers: a right-to-left override makes `audit show`
// and the logs display "DUPONT Jeanne" for a name signed as something
// else, a zero-width space makes two identifiers that look the same
// differ. Refused with a 400 naming the header and the character.
func TestFormatCharactersInValues(t *testing.T) {
	in := newInjector(t, vihfToken())
	body := []byte(`<S:Envelope ` + s11 + `><S:Body/></S:Envelope>`)
	for _, tc := range []struct{ header, value, char string }{
		{HeaderUserName, "DUPONT \u202eenneaJ", "U+202E"}, // right-to-left override
		{HeaderUserName, "DUPONT\u2066 Jeanne\u2069", "U+2066"},
		{HeaderUserName, "DUPONT\u200b Jeanne", "U+200B"}, // zero-width space
		{HeaderUserName, "\ufeffDUPONT Jeanne", "U+FEFF"},
		{HeaderUserName, "DU\u00adPONT Jeanne", "U+00AD"},      // soft hyphen
		{HeaderUserName, "DUPONT Jeanne\U000e0041", "U+E0041"}, // tag character
		{HeaderUserRoles, "10^1.2.250.1.71.1.2.7^M\u200ddecin", "U+200D"},
		{HeaderUserID, "8100\u200c02345678", "U+200C"},
	} {
		h := vihfHeaders()
		h.Set(tc.header, tc.value)
		_, err := in.Inject(h, body)
		var ve *ValuesError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.header) || !strings.Contains(err.Error(), tc.char) {
			t.Errorf("%s=%q: error %v, want a ValuesError naming the header and %s", tc.header, tc.value, err, tc.char)
		}
	}
}

// TestUserIDCharacters: X-Roc-User-Id is an identifier (idNat_PS: 8 +
// RPPS, 0 + ADELI, an internal login): printable ASCII without spaces. A
// space, a no-break space or a letter beyond ASCII makes identifiers that
// look alike differ in the signed token and the audit log.
func TestUserIDCharacters(t *testing.T) {
	in := newInjector(t, vihfToken())
	body := []byte(`<S:Envelope ` + s11 + `><S:Body/></S:Envelope>`)
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"810002345678", true},
		{"0751234567", true},
		{"jdupont", true},
		{"j.dupont@chu-exemple.fr", true},
		{`CHU\jdupont`, true},
		{"8 10002345678", false},
		{"8100\u00a002345678", false},
		{"hélène.dupont", false},
		{"8100\uff1002345678", false}, // fullwidth digit
	} {
		h := vihfHeaders()
		h.Set(HeaderUserID, tc.value)
		_, err := in.Inject(h, body)
		var ve *ValuesError
		switch {
		case tc.ok && err != nil:
			t.Errorf("%q refused: %v", tc.value, err)
		case !tc.ok && (!errors.As(err, &ve) || !strings.Contains(err.Error(), HeaderUserID+" must be printable ASCII without spaces")):
			t.Errorf("%q: %v, want a ValuesError naming %s", tc.value, err, HeaderUserID)
		}
	}
}
