package saml

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/roc-proxy/roc-proxy/internal/referee"
)

// oracleWellFormed is the reference the scanner is held to: encoding/xml
// in strict mode reads the whole input, and a second pass adds what
// encoding/xml does not check: namespace well-formedness (every prefix
// declared, no attribute twice by raw or expanded name) and one root
// element with no text around it.
func oracleWellFormed(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("not UTF-8")
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	for {
		_, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	d = xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	var scopes []map[string]string
	declared := func(prefix string) (string, bool) {
		for i := len(scopes) - 1; i >= 0; i-- {
			if uri, ok := scopes[i][prefix]; ok {
				return uri, true
			}
		}
		switch prefix {
		case "":
			return "", true
		case "xml":
			return "http://www.w3.org/XML/1998/namespace", true
		}
		return "", false
	}
	roots, depth := 0, 0
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
			}
			depth++
			scope := map[string]string{}
			for _, a := range t.Attr {
				switch {
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					scope[""] = a.Value
				case a.Name.Space == "xmlns":
					scope[a.Name.Local] = a.Value
				}
			}
			scopes = append(scopes, scope)
			if _, ok := declared(t.Name.Space); !ok {
				return fmt.Errorf("undeclared prefix %q", t.Name.Space)
			}
			raw, expanded := map[string]bool{}, map[string]bool{}
			for _, a := range t.Attr {
				r := a.Name.Space + ":" + a.Name.Local
				if raw[r] {
					return fmt.Errorf("attribute %s twice", r)
				}
				raw[r] = true
				if a.Name.Space == "" || a.Name.Space == "xmlns" {
					continue
				}
				uri, ok := declared(a.Name.Space)
				if !ok {
					return fmt.Errorf("undeclared prefix %q", a.Name.Space)
				}
				if e := uri + " " + a.Name.Local; expanded[e] {
					return fmt.Errorf("attribute %s twice by expanded name", r)
				} else {
					expanded[e] = true
				}
			}
		case xml.EndElement:
			depth--
			scopes = scopes[:len(scopes)-1]
		case xml.CharData:
			if depth == 0 && len(bytes.Trim(t, " \t\r\n\ufeff")) > 0 {
				return errors.New("text outside the root")
			}
		}
	}
	if roots != 1 {
		return fmt.Errorf("%d root elements", roots)
	}
	return nil
}

// oracleInsertion computes the injection point with encoding/xml (the
// implementation the scanner replaced): the end of the Envelope's start
// tag, else of the Header's, else of the Header's Security child, and the
// default and ds namespaces in scope there.
func oracleInsertion(b []byte) (at, wrap int, defaultNS, dsNS string, err error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	var scopes []map[string]string
	var names []xml.Name
	inScope := func() (def, ds string) {
		for _, s := range scopes {
			if v, ok := s[""]; ok {
				def = v
			}
			if v, ok := s["ds"]; ok {
				ds = v
			}
		}
		return def, ds
	}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return at, wrap, defaultNS, dsNS, nil
		}
		if err != nil {
			return 0, 0, "", "", err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			scope := map[string]string{}
			for _, a := range t.Attr {
				switch {
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					scope[""] = a.Value
				case a.Name.Space == "xmlns" && a.Name.Local == "ds":
					scope["ds"] = a.Value
				}
			}
			scopes = append(scopes, scope)
			names = append(names, t.Name)
			off := int(d.InputOffset())
			switch {
			case len(names) == 1:
				at, wrap = off, wrapHeader
				defaultNS, dsNS = inScope()
			case len(names) == 2 && t.Name.Local == "Header" && t.Name.Space == names[0].Space:
				at, wrap = off, wrapSecurity
				defaultNS, dsNS = inScope()
			case len(names) == 3 && t.Name.Space == NSWSSE && t.Name.Local == "Security" && names[1].Local == "Header" && names[1].Space == names[0].Space:
				at, wrap = off, wrapNone
				defaultNS, dsNS = inScope()
			}
		case xml.EndElement:
			scopes, names = scopes[:len(scopes)-1], names[:len(names)-1]
		}
	}
}

// scanAll runs the scanner over b, SOAP rules aside.
func scanAll(b []byte) error {
	s := newScanner(b, maxDepth)
	defer s.release()
	if err := s.start(); err != nil {
		return err
	}
	for {
		if err := s.next(); err != nil {
			return err
		}
		if s.kind == tokEOF {
			return nil
		}
	}
}

func fuzzSeeds(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.xml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"\ufeff<S:Envelope " + s11 + "><S:Body/></S:Envelope>",
		`<?xml version="1.0" encoding="utf-8" standalone="yes"?><S:Envelope ` + s11 + ` xmlns="urn:d"><S:Header><w:Security xmlns:w="` + NSWSSE + `"/></S:Header><S:Body><a b="&amp;&#x41;" c='"'/><![CDATA[<x>]]></S:Body></S:Envelope>`,
		`<S:Envelope ` + s11 + `><S:Header xmlns:ds="urn:&amp;"/><S:Body><?pi data?><!-- c --></S:Body></S:Envelope>` + "\n<!-- after -->\n",
		`<S:Envelope ` + s11 + `><S:Body><x xmlns:p="urn:p" xmlns:q="urn:p" p:a="1" q:a="2"/></S:Body></S:Envelope>`,
		`<a xmlns:p="urn:p"><p:b p:c="1" c="2"/></a>`,
		`<é:x xmlns:é="urn:e"/>`,
	} {
		f.Add([]byte(s))
	}
}

// FuzzScanner holds the scanner to encoding/xml as the oracle: whatever
// the scanner accepts, encoding/xml with namespace checks accepts; and
// whatever envelope inspect accepts gets the same injection point and
// namespaces as the encoding/xml implementation computes.
func FuzzScanner(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if scanAll(b) == nil {
			if err := oracleWellFormed(b); err != nil {
				t.Fatalf("the scanner accepted what encoding/xml refuses (%v):\n%q", err, b)
			}
		}
		env, err := inspect(b)
		if err != nil {
			return
		}
		if err := oracleWellFormed(b); err != nil {
			t.Fatalf("inspect accepted what encoding/xml refuses (%v):\n%q", err, b)
		}
		at, wrap, def, ds, err := oracleInsertion(b)
		if err != nil {
			t.Fatalf("oracle: %v", err)
		}
		if at != env.insertAt || wrap != env.wrap || def != string(env.defaultNS) || ds != string(env.dsNS) {
			t.Fatalf("injection point: scanner %d/%d ns %q %q, encoding/xml %d/%d ns %q %q\n%q",
				env.insertAt, env.wrap, env.defaultNS, env.dsNS, at, wrap, def, ds, b)
		}
	})
}

// TestScannerRefusesWhatTheOracleRefuses: the cases encoding/xml alone
// lets through are refused by both the scanner and the oracle.
func TestScannerAgreesOnKnownCases(t *testing.T) {
	for _, doc := range []string{
		`<a/>trailing`, `<a/><b/>`, `<a x="1" x="2"/>`, `<p:a/>`, `<a p:x="1"/>`,
		`<a xmlns:p="urn:p" xmlns:q="urn:p" p:x="1" q:x="2"/>`,
	} {
		if scanAll([]byte(doc)) == nil {
			t.Errorf("scanner accepted %q", doc)
		}
		if oracleWellFormed([]byte(doc)) == nil {
			t.Errorf("oracle accepted %q", doc)
		}
	}
	for _, doc := range []string{`<a/>`, "\ufeff<a/>\n", `<?xml version="1.0"?><a:b xmlns:a="urn:a" a:c="1" c="2"><![CDATA[x]]>&lt;</a:b>`} {
		if err := scanAll([]byte(doc)); err != nil {
			t.Errorf("scanner refused %q: %v", doc, err)
		}
		if err := oracleWellFormed([]byte(doc)); err != nil {
			t.Errorf("oracle refused %q: %v", doc, err)
		}
	}
	if !strings.Contains(fmt.Sprint(scanAll([]byte(`<!DOCTYPE a><a/>`))), "DTD") {
		t.Error("DOCTYPE not refused as a DTD")
	}
}

// TestScannerAgreesWithLibxml2 holds the scanner to a second, independent
// referee: libxml2 (xmllint, what many partners' and SIH stacks parse
// with). Deterministic mutations of the fuzz seeds; whatever the scanner
// accepts, libxml2 must read without an error (its warnings about
// namespace names that are not URIs, or PI targets starting with "xml",
// are warnings). Encoding/xml, the fuzz oracle, accepts a local name such
// as "p:0x" that libxml2 refuses as a namespace error and then reads in
// no namespace.
func TestScannerAgreesWithLibxml2(t *testing.T) {
	xmllint := referee.Path(t, "xmllint", "Debian package libxml2-utils")
	seeds := []string{
		"\ufeff<S:Envelope " + s11 + "><S:Body/></S:Envelope>",
		`<?xml version="1.0" encoding="utf-8" standalone="yes"?><S:Envelope ` + s11 + ` xmlns="urn:d"><S:Header><w:Security xmlns:w="` + NSWSSE + `"/></S:Header><S:Body><a b="&amp;&#x41;" c='"'/><![CDATA[<x>]]></S:Body></S:Envelope>`,
		`<S:Envelope ` + s11 + `><S:Header xmlns:ds="urn:&amp;"/><S:Body><?pi data?><!-- c --></S:Body></S:Envelope>` + "\n<!-- after -->\n",
		`<a xmlns:p="urn:p"><p:b p:c="1" c="2"/></a>`,
		`<é:x xmlns:é="urn:e" xml:lang="fr"/>`,
		`<a>&#x10FFFF;&#65;&lt;x&gt;</a>`,
	}
	pieces := []string{"<", ">", "&", ";", ":", "xmlns", `xmlns:p="u"`, "p:", `"`, "'", "=", " ", "]]>", "--", "<!--", "-->", "<?", "?>",
		"<![CDATA[", "#", "x", "&#", "\u0300", "\u00b7", "\u0e2f", "\u203f", "é", "\u2028", "\ufeff", "\r", "\t", "\n", "/", "xml",
		`<?xml version="1.0"?>`, "\u00d7", "\u037e", "\u3005", "\u0640", "0", "-", "."}
	rng := rand.New(rand.NewPCG(11, 11))
	dir := t.TempDir()
	accepted := map[string][]byte{}
	var files []string
	for i := 0; i < 20000; i++ {
		b := []byte(seeds[rng.IntN(len(seeds))])
		for range 1 + rng.IntN(3) {
			at := rng.IntN(len(b) + 1)
			switch rng.IntN(3) {
			case 0:
				b = append(b[:at:at], append([]byte(pieces[rng.IntN(len(pieces))]), b[at:]...)...)
			case 1:
				if at < len(b) {
					b = append(b[:at:at], b[at+1:]...)
				}
			default:
				if at < len(b) {
					b[at] = pieces[rng.IntN(len(pieces))][0]
				}
			}
		}
		if scanAll(b) != nil {
			continue
		}
		name := filepath.Join(dir, fmt.Sprintf("%d.xml", i))
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
		files, accepted[name] = append(files, name), b
	}
	if len(files) < 1000 {
		t.Fatalf("only %d inputs accepted: the mutations no longer exercise the scanner", len(files))
	}
	differ := 0
	for i := 0; i < len(files); i += 500 {
		// xmllint exits non-zero when any file has an error: its
		// messages ("file:line: kind : text") say which.
		out, _ := exec.Command(xmllint, append([]string{"--noout", "--nonet"}, files[i:min(i+500, len(files))]...)...).CombinedOutput()
		seen := map[string]bool{}
		for _, line := range strings.Split(string(out), "\n") {
			name, rest, ok := strings.Cut(line, ":")
			if !ok || accepted[name] == nil || seen[name] || strings.Contains(rest, "warning") ||
				strings.Contains(rest, "is not a valid URI") || strings.Contains(rest, "is not absolute") {
				continue
			}
			seen[name] = true
			if differ++; differ <= 10 {
				t.Errorf("the scanner accepts what libxml2 refuses (%s):\n%q", strings.TrimSpace(rest), accepted[name])
			}
		}
	}
	if differ > 0 {
		t.Errorf("%d of %d accepted inputs refused by libxml2", differ, len(files))
	}
}
