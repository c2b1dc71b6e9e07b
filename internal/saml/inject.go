package saml

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf8"
)

// SOAP envelope namespaces.
const (
	NSSOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
	NSSOAP12 = "http://www.w3.org/2003/05/soap-envelope"
)

// maxDepth bounds the nesting of a SIH envelope.
const maxDepth = 64

// EnvelopeError says why a SIH request cannot carry a token.
type EnvelopeError struct{ Reason string }

func (e *EnvelopeError) Error() string { return "SOAP envelope refused: " + e.Reason }

func refuse(format string, args ...any) error {
	return &EnvelopeError{Reason: fmt.Sprintf(format, args...)}
}

// Where the assertion goes: into the existing Security, into a new Security
// in the existing Header, or into a new Header.
const (
	wrapNone = iota
	wrapSecurity
	wrapHeader
)

// envelope is what the injector learned of a SIH envelope. Its byte
// slices point into the SIH's body.
type envelope struct {
	// insertAt is where the assertion goes; wrap says which elements
	// must be created around it.
	insertAt int
	wrap     int
	// replaceStart/replaceEnd, when replaceEnd > 0, is a self-closing
	// start tag (Header or Security) to rewrite as an open/close pair.
	replaceStart, replaceEnd int
	selfClosedName           []byte // raw name of that element
	selfClosedTag            []byte // its start tag without "/>"
	envPrefix                []byte // raw prefix of Envelope
	// defaultNS and dsNS are the default namespace and the namespace of
	// the prefix ds in scope at insertAt (nil: none), which exclusive
	// c14n with the PrefixList would render on the Assertion.
	defaultNS, dsNS []byte
}

var (
	bEnvelope  = []byte("Envelope")
	bHeader    = []byte("Header")
	bBody      = []byte("Body")
	bSecurity  = []byte("Security")
	bTimestamp = []byte("Timestamp")
	bSignature = []byte("Signature")
	bAssertion = []byte("Assertion")
	bEncrypted = []byte("EncryptedAssertion")
	bDS        = []byte("ds")
	bNSSOAP11  = []byte(NSSOAP11)
	bNSSOAP12  = []byte(NSSOAP12)
	bNSWSSE    = []byte(NSWSSE)
	bNSWSU     = []byte(NSWSU)
	bNSDSig    = []byte(NSDSig)
	bNSSAML2   = []byte(NSAssertion)
	bNSSAML1   = []byte(NSSAML1)
)

// inspect validates a SIH envelope and finds where a token goes: strictly
// well-formed XML with namespaces (see scanner), a SOAP 1.1 or 1.2 Envelope
// holding an optional Header then one Body and nothing else, no SAML
// assertion anywhere, at most one wsse:Security among the Header's
// children carrying nothing but a wsu:Timestamp.
func inspect(body []byte) (envelope, error) {
	var env envelope
	if !utf8.Valid(body) {
		return env, refuse("body is not valid UTF-8")
	}
	s := newScanner(body, maxDepth)
	defer s.release()
	if err := s.start(); err != nil {
		return env, scanRefusal(err)
	}
	var soapNS []byte
	headers, bodies, securities := 0, 0, 0
	inHeader, inSecurity := false, false
	for {
		if err := s.next(); err != nil {
			return env, scanRefusal(err)
		}
		switch s.kind {
		case tokEOF:
			if soapNS == nil {
				return env, refuse("not a SOAP 1.1 or 1.2 envelope")
			}
			if bodies != 1 {
				return env, refuse("a SOAP envelope needs exactly one Body")
			}
			return env, nil
		case tokText:
			switch {
			case !s.nonSpace:
			case s.depth() == 1:
				return env, refuse("text directly in the Envelope")
			case s.depth() == 2 && inHeader:
				return env, refuse("text directly in the Header")
			case s.depth() == 3 && inSecurity:
				return env, refuse("text directly in the Security header")
			}
		case tokEnd:
			switch s.depth() {
			case 1:
				inHeader = false
			case 2:
				inSecurity = false
			}
		case tokStart:
			level := s.depth() // of the element: 0 for the root
			if !s.selfClosing {
				level--
			}
			local := s.local()
			if level > 3 && len(local) != len(bAssertion) && len(local) != len(bEncrypted) {
				continue // the SIH's payload: only an assertion would matter
			}
			space := s.space()
			if (bytes.Equal(local, bAssertion) || bytes.Equal(local, bEncrypted)) &&
				(bytes.Equal(space, bNSSAML2) || bytes.Equal(space, bNSSAML1) && bytes.Equal(local, bAssertion)) {
				return env, refuse("the envelope already carries a SAML assertion")
			}
			opened := false // this element is the Header or the Security
			switch {
			case level == 0:
				if !bytes.Equal(local, bEnvelope) || !bytes.Equal(space, bNSSOAP11) && !bytes.Equal(space, bNSSOAP12) {
					return env, refuse("not a SOAP 1.1 or 1.2 envelope")
				}
				soapNS = space
				env.envPrefix = s.prefix()
				env.insertAt, env.wrap = s.tagEnd, wrapHeader
				env.defaultNS, env.dsNS = s.inScope()
			case level == 1 && bytes.Equal(space, soapNS) && bytes.Equal(local, bHeader):
				if headers++; headers > 1 {
					return env, refuse("more than one SOAP Header")
				}
				if bodies > 0 {
					return env, refuse("SOAP Header after Body")
				}
				env.insertAt, env.wrap = s.tagEnd, wrapSecurity
				env.defaultNS, env.dsNS = s.inScope()
				inHeader, opened = !s.selfClosing, true
			case level == 1 && bytes.Equal(space, soapNS) && bytes.Equal(local, bBody):
				if bodies++; bodies > 1 {
					return env, refuse("a SOAP envelope needs exactly one Body")
				}
			case level == 1:
				return env, refuse("<%s> in the Envelope: a SOAP envelope holds only a Header and a Body", s.rawName())
			case level == 2 && inHeader && bytes.Equal(space, bNSWSSE) && bytes.Equal(local, bSecurity):
				if securities++; securities > 1 {
					return env, refuse("more than one WS-Security header")
				}
				env.insertAt, env.wrap = s.tagEnd, wrapNone
				env.defaultNS, env.dsNS = s.inScope()
				inSecurity, opened = !s.selfClosing, true
			case level == 3 && inSecurity:
				if bytes.Equal(space, bNSDSig) && bytes.Equal(local, bSignature) {
					return env, refuse("the Security header already carries a signature")
				}
				if !bytes.Equal(space, bNSWSU) || !bytes.Equal(local, bTimestamp) {
					return env, refuse("the Security header may only carry a wsu:Timestamp (roc-proxy adds the token): found <%s>", s.rawName())
				}
			}
			if opened && s.selfClosing {
				env.replaceStart, env.replaceEnd = s.tagStart, s.tagEnd
				env.selfClosedName = s.rawName()
				tag := bytes.TrimRight(body[s.tagStart:s.tagEnd-2], " \t\r\n")
				env.selfClosedTag = tag
			}
		}
	}
}

// inScope is the default namespace and the ds prefix's namespace in scope.
func (s *scanner) inScope() (defaultNS, ds []byte) {
	ref, _ := s.lookup(nil)
	defaultNS = s.uri(ref)
	if ref, ok := s.lookup(bDS); ok {
		ds = s.uri(ref)
	}
	return defaultNS, ds
}

func scanRefusal(err error) error {
	var se *SyntaxError
	switch {
	case errors.Is(err, errDTD):
		return refuse("%v", err)
	case errors.As(err, &se):
		return refuse("not well-formed XML: %v", se)
	}
	return refuse("%v", err)
}

// splice returns body with assertion inserted at env's insertion point,
// creating the Header and Security elements it lacks, in one allocation.
func splice(body []byte, env *envelope, assertion []byte) []byte {
	const secOpen = `<wsse:Security xmlns:wsse="` + NSWSSE + `">`
	const secClose = "</wsse:Security>"
	n := len(body) + len(assertion) + len(secOpen) + len(secClose) + 2*len(env.envPrefix) + 24 + len(env.selfClosedName)
	out := make([]byte, 0, n)
	at := env.insertAt
	if env.replaceEnd > 0 && env.replaceEnd == env.insertAt {
		// <Header/> or <Security/>: open it, insert, close it.
		out = append(out, body[:env.replaceStart]...)
		out = append(out, env.selfClosedTag...)
		out = append(out, '>')
	} else {
		out = append(out, body[:at]...)
	}
	if env.wrap == wrapHeader {
		out = append(out, '<')
		out = appendQName(out, env.envPrefix, "Header")
		out = append(out, '>')
	}
	if env.wrap != wrapNone {
		out = append(out, secOpen...)
	}
	out = append(out, assertion...)
	if env.wrap != wrapNone {
		out = append(out, secClose...)
	}
	if env.wrap == wrapHeader {
		out = append(out, "</"...)
		out = appendQName(out, env.envPrefix, "Header")
		out = append(out, '>')
	}
	if env.replaceEnd > 0 && env.replaceEnd == env.insertAt {
		out = append(out, "</"...)
		out = append(out, env.selfClosedName...)
		out = append(out, '>')
	}
	return append(out, body[at:]...)
}

func appendQName(b, prefix []byte, local string) []byte {
	if len(prefix) > 0 {
		b = append(b, prefix...)
		b = append(b, ':')
	}
	return append(b, local...)
}
