package saml

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
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

// envelope is what the injector learned of a SIH envelope.
type envelope struct {
	soapNS string
	// insertAt is where the assertion goes; wrap says which elements
	// must be created around it: "" (inside an existing Security),
	// "security" (inside an existing Header) or "header".
	insertAt int
	wrap     string
	// replaceStart/replaceEnd, when replaceEnd > 0, is a self-closing
	// start tag (Header or Security) to rewrite as an open/close pair.
	replaceStart, replaceEnd int
	selfClosedName           string // raw name of that element
	selfClosedTag            []byte // its start tag without "/>"
	envPrefix                string // raw prefix of Envelope
	// ns are the declarations of "" and "ds" in scope at insertAt, which
	// exclusive c14n with the PrefixList would render on the Assertion.
	ns map[string]string
}

// inspect validates a SIH envelope and finds where a token goes.
func inspect(body []byte) (*envelope, error) {
	if !utf8.Valid(body) {
		return nil, refuse("body is not valid UTF-8")
	}
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	// No CharsetReader: a declared non-UTF-8 encoding is refused. No
	// Entity map: entity references other than the five predefined ones
	// are errors.
	env := &envelope{}
	type frame struct {
		name    xml.Name
		rawName string
	}
	var stack []frame
	var header *frame
	securities, bodies := 0, 0
	inSecurity := false
	for {
		before := int(d.InputOffset())
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, refuse("not well-formed XML: %v", err)
		}
		after := int(d.InputOffset())
		switch t := tok.(type) {
		case xml.Directive:
			return nil, refuse("a DTD or entity declaration is not accepted")
		case xml.StartElement:
			if len(stack) >= maxDepth {
				return nil, refuse("nesting deeper than %d elements", maxDepth)
			}
			f := frame{name: t.Name, rawName: rawName(body[before:after])}
			depth := len(stack)
			opened := false // this element is the Header or the Security
			if t.Name.Space == NSAssertion && t.Name.Local == "Assertion" {
				return nil, refuse("the envelope already carries a SAML assertion")
			}
			if inSecurity && t.Name.Space == NSDSig && t.Name.Local == "Signature" {
				return nil, refuse("the Security header already carries a signature")
			}
			switch {
			case depth == 0:
				if t.Name.Local != "Envelope" || (t.Name.Space != NSSOAP11 && t.Name.Space != NSSOAP12) {
					return nil, refuse("not a SOAP 1.1 or 1.2 envelope")
				}
				env.soapNS = t.Name.Space
				env.envPrefix, _, _ = cutPrefix(f.rawName)
				env.insertAt, env.wrap = after, "header"
			case depth == 1 && t.Name.Space == env.soapNS && t.Name.Local == "Header":
				if header != nil {
					return nil, refuse("more than one SOAP Header")
				}
				if bodies > 0 {
					return nil, refuse("SOAP Header after Body")
				}
				env.insertAt, env.wrap = after, "security"
				header, opened = &f, true
			case depth == 1 && t.Name.Space == env.soapNS && t.Name.Local == "Body":
				bodies++
			case depth == 2 && header != nil && t.Name.Space == NSWSSE && t.Name.Local == "Security":
				securities++
				if securities > 1 {
					return nil, refuse("more than one WS-Security header")
				}
				env.insertAt, env.wrap = after, ""
				inSecurity, opened = true, true
			}
			if opened && isSelfClosing(body[before:after]) {
				env.replaceStart, env.replaceEnd = before, after
				env.selfClosedName = f.rawName
				env.selfClosedTag = bytes.TrimRight(bytes.TrimSuffix(bytes.TrimRight(body[before:after], " \t\r\n"), []byte("/>")), " \t\r\n")
			}
			stack = append(stack, f)
		case xml.EndElement:
			if len(stack) > 0 {
				top := stack[len(stack)-1]
				if top.name.Space == NSWSSE && top.name.Local == "Security" && len(stack) == 3 {
					inSecurity = false
				}
				stack = stack[:len(stack)-1]
			}
		}
	}
	if env.soapNS == "" {
		return nil, refuse("not a SOAP 1.1 or 1.2 envelope")
	}
	if bodies != 1 {
		return nil, refuse("a SOAP envelope needs exactly one Body")
	}
	env.ns = map[string]string{}
	if err := collectNS(body, env); err != nil {
		return nil, err
	}
	return env, nil
}

// collectNS records the "" and "ds" declarations in scope at the insertion
// point: those of the elements still open there.
func collectNS(body []byte, env *envelope) error {
	d := xml.NewDecoder(bytes.NewReader(body[:env.insertAt]))
	var scopes []map[string]string
	for {
		tok, err := d.Token()
		if err != nil {
			break // the prefix ends inside the open ancestors
		}
		switch t := tok.(type) {
		case xml.StartElement:
			decl := map[string]string{}
			for _, a := range t.Attr {
				switch {
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					decl[""] = a.Value
				case a.Name.Space == "xmlns" && a.Name.Local == "ds":
					decl["ds"] = a.Value
				}
			}
			scopes = append(scopes, decl)
		case xml.EndElement:
			scopes = scopes[:len(scopes)-1]
		}
	}
	for _, decl := range scopes {
		for k, v := range decl {
			env.ns[k] = v
		}
	}
	return nil
}

func rawName(tag []byte) string {
	tag = bytes.TrimPrefix(tag, []byte("<"))
	end := bytes.IndexAny(tag, " \t\r\n/>")
	if end < 0 {
		return string(tag)
	}
	return string(tag[:end])
}

func cutPrefix(name string) (prefix, local string, ok bool) {
	for i := 0; i < len(name); i++ {
		if name[i] == ':' {
			return name[:i], name[i+1:], true
		}
	}
	return "", name, false
}

func isSelfClosing(tag []byte) bool {
	return bytes.HasSuffix(bytes.TrimRight(tag, " \t\r\n"), []byte("/>"))
}

// splice returns body with assertion inserted at env's insertion point,
// creating the Header and Security elements it lacks.
func splice(body []byte, env *envelope, assertion []byte) []byte {
	var ins []byte
	switch env.wrap {
	case "":
		ins = assertion
	case "security":
		ins = securityElement(assertion)
	case "header":
		hdr := "Header"
		if env.envPrefix != "" {
			hdr = env.envPrefix + ":Header"
		}
		ins = append(append([]byte("<"+hdr+">"), securityElement(assertion)...), []byte("</"+hdr+">")...)
	}
	out := make([]byte, 0, len(body)+len(ins)+64)
	if env.replaceEnd > 0 && env.replaceEnd == env.insertAt {
		// <Header/> or <Security/>: open it, insert, close it.
		out = append(out, body[:env.replaceStart]...)
		out = append(out, env.selfClosedTag...)
		out = append(out, '>')
		out = append(out, ins...)
		out = append(out, "</"+env.selfClosedName+">"...)
		return append(out, body[env.replaceEnd:]...)
	}
	out = append(out, body[:env.insertAt]...)
	out = append(out, ins...)
	return append(out, body[env.insertAt:]...)
}

func securityElement(assertion []byte) []byte {
	b := []byte(`<wsse:Security xmlns:wsse="` + NSWSSE + `">`)
	b = append(b, assertion...)
	return append(b, "</wsse:Security>"...)
}
