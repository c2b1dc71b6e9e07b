// Package samltest builds signed partner answers with xmlsec1 (an
// implementation independent of ours) and the signature-wrapping variants
// an attacker on the path, or a compromised relay, would send. Tests only:
// it imports testing.
package samltest

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roc-proxy/roc-proxy/internal/referee"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// Namespaces and algorithms of the answers.
const (
	NSSOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
	NSSOAP12 = "http://www.w3.org/2003/05/soap-envelope"
	NSWSSE   = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
	NSWSU    = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
	NSDSig   = "http://www.w3.org/2000/09/xmldsig#"
	NSWSA    = "http://www.w3.org/2005/08/addressing"
	NSIDB    = "urn:roc-proxy:sim:idb"

	algExc       = "http://www.w3.org/2001/10/xml-exc-c14n#"
	algEnveloped = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
	algRSASHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
	algRSASHA1   = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
	algSHA256    = "http://www.w3.org/2001/04/xmlenc#sha256"
	algSHA1      = "http://www.w3.org/2000/09/xmldsig#sha1"
	valueX509v3  = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
	encBase64    = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
)

// SignedElement is the Clark name of the response element routes with a
// configured signed_element trust.
const SignedElement = "{" + NSIDB + "}reponseDroits"

// Amounts: what the partner signed, and what a forger wants the SIH to
// read.
const (
	Amount       = "12.50"
	ForgedAmount = "9999.00"
)

// XMLSec1 is the path of xmlsec1; t is skipped without it (the Debian
// package xmlsec1, which .ci/run installs), or fails where referees are
// required (internal/referee).
func XMLSec1(t testing.TB) string {
	t.Helper()
	return referee.Path(t, "xmlsec1", "Debian package xmlsec1; signed answers are built with it")
}

// Sign signs the signature templates of doc with xmlsec1, with signer's key
// (its certificate fills X509Data templates). args are extra xmlsec1
// arguments (--id-attr...).
func Sign(t testing.TB, doc string, signer *testpki.Cert, args ...string) []byte {
	t.Helper()
	bin := XMLSec1(t)
	dir := t.TempDir()
	key, err := signer.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyArg := write("key.pem", key) + "," + write("cert.pem", testpki.PEM(signer.Cert))
	argv := append([]string{"--sign", "--privkey-pem", keyArg}, args...)
	argv = append(argv, write("doc.xml", []byte(doc)))
	out, err := exec.Command(bin, argv...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("xmlsec1 --sign: %v\n%s\n--- template:\n%s", err, stderr, doc)
	}
	return out
}

// Verify checks doc's signatures with xmlsec1 (the referee of what a
// legitimate answer is), trusting root, with intermediates untrusted;
// args are xmlsec1's --id-attr arguments.
func Verify(t testing.TB, doc []byte, root *x509.Certificate, intermediates []*x509.Certificate, args ...string) error {
	t.Helper()
	bin := XMLSec1(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	argv := []string{"--verify", "--trusted-pem", write("root.pem", testpki.PEM(root))}
	for i, c := range intermediates {
		argv = append(argv, "--untrusted-pem", write(fmt.Sprintf("ca%d.pem", i), testpki.PEM(c)))
	}
	argv = append(append(argv, args...), write("doc.xml", doc))
	if out, err := exec.Command(bin, argv...).CombinedOutput(); err != nil {
		return fmt.Errorf("xmlsec1 --verify: %v\n%s", err, out)
	}
	return nil
}

// KnownLimit is a legitimate answer (xmlsec1 signs and verifies it) that
// the verifier refuses: goxmldsig's canonicalization differs from the
// standard's there, and the digest does not match (it fails closed).
type KnownLimit struct {
	Name string
	Body []byte
	// IDArgs are xmlsec1's --id-attr arguments to verify Body.
	IDArgs []string
}

// KnownLimits builds the answers the "honest limits" of
// docs/security-model.md describe, signed by signer.
func KnownLimits(t testing.TB, signer *testpki.Cert) []KnownLimit {
	t.Helper()
	const algInc = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
	answer := func(envAttrs, c14n, body string) []byte {
		s := sig{uris: []string{"#body-1"}}.String()
		s = strings.Replace(s, `<ds:Transform Algorithm="`+algExc+`"/></ds:Transforms>`, `<ds:Transform Algorithm="`+c14n+`"/></ds:Transforms>`, 1)
		return Sign(t, xmlDecl+`<S:Envelope xmlns:S="`+NSSOAP11+`" xmlns:wsu="`+NSWSU+`"`+envAttrs+`><S:Header>`+secOpen+s+`</wsse:Security></S:Header>`+
			`<S:Body wsu:Id="body-1">`+body+`</S:Body></S:Envelope>`, signer, idArgs(idBody)...)
	}
	ids := idArgs(idBody)
	return []KnownLimit{
		{"exclusive c14n: a redundant xmlns=\"\" in the signed element",
			answer("", algExc, `<idb:reponseDroits xmlns:idb="`+NSIDB+`"><montant xmlns="">`+Amount+`</montant></idb:reponseDroits>`), ids},
		{"inclusive c14n: an xml:lang inherited from the Envelope",
			answer(` xml:lang="fr"`, algInc, response("", Amount, "")), ids},
	}
}

// sig is a ds:Signature template.
type sig struct {
	uris      []string
	enveloped bool
	sha1      bool
	keyInfo   string // default X509Data
	// ids puts an Id on the Signature, its SignatureValue and KeyInfo,
	// as some toolkits (WSS4J) write them.
	ids bool
}

func (s sig) String() string {
	sm, dm := algRSASHA256, algSHA256
	if s.sha1 {
		sm, dm = algRSASHA1, algSHA1
	}
	sigID, valueID, keyInfoID := "", "", ""
	if s.ids {
		sigID, valueID, keyInfoID = ` Id="SIG-1"`, ` Id="SV-1"`, ` Id="KI-1"`
	}
	var b strings.Builder
	b.WriteString(`<ds:Signature` + sigID + ` xmlns:ds="` + NSDSig + `"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="` + algExc + `"/>`)
	b.WriteString(`<ds:SignatureMethod Algorithm="` + sm + `"/>`)
	for _, uri := range s.uris {
		b.WriteString(`<ds:Reference URI="` + uri + `"><ds:Transforms>`)
		if s.enveloped {
			b.WriteString(`<ds:Transform Algorithm="` + algEnveloped + `"/>`)
		}
		b.WriteString(`<ds:Transform Algorithm="` + algExc + `"/></ds:Transforms><ds:DigestMethod Algorithm="` + dm + `"/><ds:DigestValue/></ds:Reference>`)
	}
	ki := s.keyInfo
	if ki == "" {
		ki = `<ds:X509Data><ds:X509Certificate/></ds:X509Data>`
	}
	b.WriteString(`</ds:SignedInfo><ds:SignatureValue` + valueID + `/><ds:KeyInfo` + keyInfoID + `>` + ki + `</ds:KeyInfo></ds:Signature>`)
	return b.String()
}

// Response elements (children of the Body).
func response(attrs, amount, inner string) string {
	return `<idb:reponseDroits xmlns:idb="` + NSIDB + `"` + attrs + `><idb:numero_adherent>0102030405</idb:numero_adherent><idb:montant>` +
		amount + `</idb:montant>` + inner + `</idb:reponseDroits>`
}

const (
	xmlDecl  = `<?xml version="1.0" encoding="UTF-8"?>` + "\n"
	env11    = `<S:Envelope xmlns:S="` + NSSOAP11 + `" xmlns:wsu="` + NSWSU + `">`
	secOpen  = `<wsse:Security xmlns:wsse="` + NSWSSE + `" S:mustUnderstand="1">`
	idBody   = "Id:" + NSSOAP11 + ":Body"
	idResp   = "ID:" + NSIDB + ":reponseDroits"
	idHeader = "ID:urn:x:h:Info"
)

// idArgs turns "attr:ns:node" into xmlsec1's --id-attr arguments.
func idArgs(specs ...string) []string {
	var out []string
	for _, s := range specs {
		attr, node, _ := strings.Cut(s, ":")
		out = append(out, "--id-attr:"+attr, node)
	}
	return out
}

// Answer is a partner answer and what a route must make of it.
type Answer struct {
	Name string
	Body []byte
	// SignedElement, when true, is a route trusting SignedElement rather
	// than the whole Body; AllowSHA1 a route accepting RSA-SHA1.
	SignedElement bool
	AllowSHA1     bool
	// Refusal is empty for an answer to pass, else a part of the
	// verifier's error.
	Refusal string
}

// Legit answers, signed by signer (an AC-SERVICES-APPLICATIFS leaf).
type Legit struct {
	// Detached is WS-Security: the Signature in Header/Security
	// references the Body by wsu:Id.
	Detached []byte
	// Enveloped is the response element signed by an enveloped
	// signature it holds (URI="#_r1").
	Enveloped []byte
	// WholeDocument is a URI="" signature of the whole envelope, placed
	// in the Security header.
	WholeDocument []byte
	// HeaderSigned is a header element (h:Info) signed alone, the Body
	// left unsigned: legitimate XML, but not what a route may trust.
	HeaderSigned []byte
}

// Build signs the legit answers.
func Build(t testing.TB, signer *testpki.Cert) *Legit {
	t.Helper()
	l := &Legit{}
	l.Detached = detached(t, signer, sig{uris: []string{"#body-1"}}, "")
	l.Enveloped = Sign(t, xmlDecl+env11+`<S:Body>`+response(` ID="_r1"`, Amount, sig{uris: []string{"#_r1"}, enveloped: true}.String())+
		`</S:Body></S:Envelope>`, signer, idArgs(idResp)...)
	l.WholeDocument = Sign(t, xmlDecl+env11+`<S:Header>`+secOpen+sig{uris: []string{""}, enveloped: true}.String()+`</wsse:Security></S:Header>`+
		`<S:Body>`+response("", Amount, "")+`</S:Body></S:Envelope>`, signer)
	l.HeaderSigned = Sign(t, xmlDecl+env11+`<S:Header><h:Info xmlns:h="urn:x:h" ID="_h1"><h:ok>true</h:ok>`+
		sig{uris: []string{"#_h1"}, enveloped: true}.String()+`</h:Info></S:Header><S:Body>`+response("", ForgedAmount, "")+`</S:Body></S:Envelope>`,
		signer, idArgs(idHeader)...)
	return l
}

// SignDetached is the WS-Security answer of Legit.Detached signed by
// signer, with extra certificates (an intermediate, another authority)
// after the signer's in X509Data, which no digest covers.
func SignDetached(t testing.TB, signer *testpki.Cert, extra ...*x509.Certificate) []byte {
	t.Helper()
	b := detached(t, signer, sig{uris: []string{"#body-1"}}, "")
	var more strings.Builder
	for _, c := range extra {
		more.WriteString("<ds:X509Certificate>" + base64.StdEncoding.EncodeToString(c.Raw) + "</ds:X509Certificate>")
	}
	return replace(b, "</ds:X509Data>", more.String()+"</ds:X509Data>")
}

// SignLarge is a WS-Security answer signed by signer whose response
// element lists n lines (five nodes each: two elements in one, and their
// text), about 90 bytes a line: a large answer of small elements, where
// a parsed tree costs the most per byte.
func SignLarge(t testing.TB, signer *testpki.Cert, n int) []byte {
	t.Helper()
	var lines strings.Builder
	lines.WriteString("<idb:lignes>")
	for i := range n {
		fmt.Fprintf(&lines, "<idb:ligne><idb:code>%06d</idb:code><idb:montant>1.00</idb:montant></idb:ligne>", i)
	}
	lines.WriteString("</idb:lignes>")
	return detached(t, signer, sig{uris: []string{"#body-1"}}, lines.String())
}

// detached is a WS-Security answer whose signature s (in the Security
// header) covers the Body, signed by signer; inner goes into its response
// element after the amount.
func detached(t testing.TB, signer *testpki.Cert, s sig, inner string) []byte {
	t.Helper()
	return Sign(t, xmlDecl+env11+`<S:Header>`+secOpen+s.String()+`</wsse:Security></S:Header>`+
		`<S:Body wsu:Id="body-1">`+response("", Amount, inner)+`</S:Body></S:Envelope>`, signer, idArgs(idBody)...)
}

// between returns the part of b from the first from to the end of the
// first to after it.
func between(t testing.TB, b []byte, from, to string) []byte {
	t.Helper()
	i := bytes.Index(b, []byte(from))
	j := bytes.Index(b[max(i, 0):], []byte(to))
	if i < 0 || j < 0 {
		t.Fatalf("%q...%q not found in:\n%s", from, to, b)
	}
	return append([]byte(nil), b[i:i+j+len(to)]...)
}

func replace(b []byte, old, new string) []byte {
	return bytes.Replace(append([]byte(nil), b...), []byte(old), []byte(new), 1)
}

// Answers are the legit answers and the attacks on them, each with what a
// route under enforce must make of it.
func Answers(t testing.TB, signer, foreign *testpki.Cert) []Answer {
	t.Helper()
	l := Build(t, signer)
	signedResp := between(t, l.Enveloped, "<idb:reponseDroits", "</idb:reponseDroits>")
	signedBody := between(t, l.Detached, "<S:Body", "</S:Body>")
	forgedBody := `<S:Body wsu:Id="body-1">` + response("", ForgedAmount, "") + `</S:Body>`
	var out []Answer
	add := func(a Answer) { out = append(out, a) }

	// Legitimate answers.
	add(Answer{Name: "legit: WS-Security signature of the Body", Body: l.Detached})
	add(Answer{Name: "legit: enveloped signature of the configured element", Body: l.Enveloped, SignedElement: true})
	add(Answer{Name: "legit: whole-document URI=\"\" signature", Body: l.WholeDocument})
	add(Answer{Name: "legit: whole-document signature, configured element", Body: l.WholeDocument, SignedElement: true})
	bst := strings.ReplaceAll(string(testpki.PEM(signer.Cert)), "\n", "")
	bst = strings.TrimSuffix(strings.TrimPrefix(bst, "-----BEGIN CERTIFICATE-----"), "-----END CERTIFICATE-----")
	withBST := Sign(t, xmlDecl+env11+`<S:Header>`+secOpen+
		`<wsu:Timestamp wsu:Id="ts-1"><wsu:Created>2026-01-01T00:00:00Z</wsu:Created></wsu:Timestamp>`+
		`<wsse:BinarySecurityToken wsu:Id="bst-1" ValueType="`+valueX509v3+`" EncodingType="`+encBase64+`">`+bst+`</wsse:BinarySecurityToken>`+
		sig{uris: []string{"#body-1", "#ts-1"}, keyInfo: `<wsse:SecurityTokenReference><wsse:Reference URI="#bst-1" ValueType="` + valueX509v3 + `"/></wsse:SecurityTokenReference>`}.String()+
		`</wsse:Security></S:Header><S:Body wsu:Id="body-1">`+response("", Amount, "")+`</S:Body></S:Envelope>`,
		signer, idArgs(idBody, "Id:"+NSWSU+":Timestamp")...)
	add(Answer{Name: "legit: BinarySecurityToken and a signed Timestamp", Body: withBST})
	wsa := func(relates string, uris ...string) string {
		return xmlDecl + `<S:Envelope xmlns:S="` + NSSOAP12 + `" xmlns:wsu="` + NSWSU + `" xmlns:wsa="` + NSWSA + `"><S:Header>` +
			`<wsa:Action wsu:Id="act">urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse</wsa:Action>` +
			`<wsa:RelatesTo` + relates + `>urn:uuid:7b0e1c2a-4f3d-4a8e-9b1c-2d3e4f5a6b7c</wsa:RelatesTo>` + secOpen +
			sig{uris: uris}.String() + `</wsse:Security></S:Header><S:Body wsu:Id="body-1">` +
			response("", Amount, "") + `</S:Body></S:Envelope>`
	}
	signedWSA := Sign(t, wsa(` wsu:Id="rel"`, "#body-1", "#act", "#rel"), signer, idArgs("Id:"+NSSOAP12+":Body", "Id:"+NSWSA+":Action", "Id:"+NSWSA+":RelatesTo")...)
	add(Answer{Name: "legit: SOAP 1.2 with signed WS-Addressing headers", Body: signedWSA})
	sha1 := Sign(t, xmlDecl+env11+`<S:Body>`+response(` ID="_r1"`, Amount, sig{uris: []string{"#_r1"}, enveloped: true, sha1: true}.String())+
		`</S:Body></S:Envelope>`, signer, idArgs(idResp)...)
	add(Answer{Name: "legit: RSA-SHA1 on a route that allows it", Body: sha1, SignedElement: true, AllowSHA1: true})

	// Signature wrapping and other attacks.
	add(Answer{Name: "wrapping: signed element moved into the Header, forged one with the same ID in the Body", SignedElement: true,
		Body: []byte(xmlDecl + env11 + `<S:Header><x:Moved xmlns:x="urn:x">` + string(signedResp) + `</x:Moved></S:Header><S:Body>` +
			response(` ID="_r1"`, ForgedAmount, "") + `</S:Body></S:Envelope>`), Refusal: `ID "_r1" is carried by 2 elements`})
	add(Answer{Name: "wrapping: signed Body moved into the Security header, forged Body with the same wsu:Id",
		Body: replace(replace(l.Detached, string(signedBody), forgedBody), "</wsse:Security>",
			`<x:Kept xmlns:x="urn:x"`+strings.TrimSuffix(strings.TrimPrefix(string(signedBody), "<S:Body"), "</S:Body>")+"</x:Kept></wsse:Security>"),
		Refusal: `ID "body-1" is carried by 2 elements`})
	add(Answer{Name: "wrapping: unsigned sibling with a duplicate ID before the signed element", SignedElement: true,
		Body: replace(l.Enveloped, "<S:Body>", "<S:Body>"+response(` ID="_r1"`, ForgedAmount, "")), Refusal: `ID "_r1" is carried by 2 elements`})
	add(Answer{Name: "wrapping: only a header element signed, forged Body", Body: l.HeaderSigned, Refusal: "the SOAP Body is not covered by a verified signature"})
	add(Answer{Name: "wrapping: only a header element signed, forged response element", Body: l.HeaderSigned, SignedElement: true,
		Refusal: "reponseDroits is not covered by a verified signature"})
	add(Answer{Name: "wrapping: signed element hidden inside a forged one", SignedElement: true,
		Body:    replace(l.Enveloped, string(signedResp), response("", ForgedAmount, `<x:hidden xmlns:x="urn:x">`+string(signedResp)+`</x:hidden>`)),
		Refusal: "reponseDroits is not covered by a verified signature"})
	add(Answer{Name: "wrapping: forged sibling after the signed element", SignedElement: true,
		Body:    replace(l.Enveloped, "</S:Body>", response("", ForgedAmount, "")+"</S:Body>"),
		Refusal: "holds more than the element"})
	add(Answer{Name: "wrapping: signed Body moved into the Header, forged Body without an ID",
		Body:    replace(replace(l.Detached, string(signedBody), strings.Replace(forgedBody, ` wsu:Id="body-1"`, "", 1)), "<S:Header>", `<S:Header><x:W xmlns:x="urn:x">`+string(signedBody)+`</x:W>`),
		Refusal: "is not covered by a verified signature"})
	// A URI="" signature made over a lone header element, pasted into a
	// forged envelope: URI="" is the whole document, which it does not
	// match (goxmldsig read it as "the signature's parent").
	lone := Sign(t, `<h:Info xmlns:h="urn:x:h"><h:ok>true</h:ok>`+sig{uris: []string{""}, enveloped: true}.String()+`</h:Info>`, signer)
	lone = bytes.TrimPrefix(bytes.TrimSpace(lone), []byte(`<?xml version="1.0"?>`))
	add(Answer{Name: "wrapping: URI=\"\" signature of a lone header element in a forged envelope",
		Body:    []byte(xmlDecl + env11 + `<S:Header>` + string(bytes.TrimSpace(lone)) + `</S:Header><S:Body>` + response("", ForgedAmount, "") + `</S:Body></S:Envelope>`),
		Refusal: "digest"})
	add(Answer{Name: "wrapping: signed element carried in a ds:Object, forged Body",
		Body: replace(replace(l.Detached, string(signedBody), strings.Replace(forgedBody, ` wsu:Id="body-1"`, "", 1)), "</ds:KeyInfo>",
			"</ds:KeyInfo><ds:Object>"+string(signedBody)+"</ds:Object>"),
		Refusal: "ds:Object"})
	add(Answer{Name: "unsigned WS-Addressing header beside signed ones", Body: func() []byte {
		b := Sign(t, wsa("", "#body-1", "#act"), signer, idArgs("Id:"+NSSOAP12+":Body", "Id:"+NSWSA+":Action")...)
		return b
	}(), Refusal: "RelatesTo> in the Header is not covered by a verified signature"})
	add(Answer{Name: "element after the Body", Body: replace(l.Detached, "</S:Body>", `</S:Body><x:Extra xmlns:x="urn:x">`+ForgedAmount+`</x:Extra>`),
		Refusal: "only a Header and a Body"})
	add(Answer{Name: "comment inside signed text", SignedElement: true, Body: replace(l.Enveloped, ">"+Amount+"<", ">1<!---->2.50<"),
		Refusal: "comment"})
	add(Answer{Name: "processing instruction inside signed content", SignedElement: true, Body: replace(l.Enveloped, ">"+Amount+"<", "><?x y?>"+Amount+"<"),
		Refusal: "processing instruction"})
	add(Answer{Name: "RSA-SHA1 on a route that refuses it", Body: sha1, SignedElement: true, Refusal: "rsa-sha1"})
	add(Answer{Name: "DOCTYPE", SignedElement: true, Body: replace(l.Enveloped, xmlDecl, xmlDecl+"<!DOCTYPE S:Envelope>"), Refusal: "DTD"})
	add(Answer{Name: "tampered amount", Body: replace(l.Detached, ">"+Amount+"<", ">"+ForgedAmount+"<"), Refusal: "digest"})
	add(Answer{Name: "XPointer reference", Body: Sign(t, xmlDecl+env11+`<S:Header>`+secOpen+sig{uris: []string{"#xpointer(/)"}, enveloped: true}.String()+
		`</wsse:Security></S:Header><S:Body>`+response("", Amount, "")+`</S:Body></S:Envelope>`, signer), Refusal: "reference URI"})
	add(Answer{Name: "signer from another PKI", Body: Build(t, foreign).Detached, Refusal: "signing certificate"})
	ref := between(t, l.Detached, "<ds:Reference", "</ds:Reference>")
	add(Answer{Name: "a hundred references to the Body (work amplification)",
		Body:    replace(l.Detached, string(ref), strings.Repeat(string(ref), 100)),
		Refusal: "more than an answer needs"})
	// The unsigned parts an answer may carry (the WS-Security header's
	// Timestamp and BinarySecurityToken, a signature's SignatureValue and
	// KeyInfo, which no digest covers even when the signature lies inside
	// the signed element) are text where the schemas say so: an element
	// hidden there is what a SIH reading //montant or
	// getElementsByTagName("montant") finds, before or beside the signed
	// one.
	forged := `<idb:montant xmlns:idb="` + NSIDB + `">` + ForgedAmount + `</idb:montant>`
	add(Answer{Name: "wrapping: forged amount in an unsigned wsu:Timestamp, before the Body",
		Body:    replace(l.Detached, secOpen, secOpen+`<wsu:Timestamp><wsu:Created>2026-01-01T00:00:00Z</wsu:Created>`+forged+`</wsu:Timestamp>`),
		Refusal: "wsu:Timestamp holds <idb:montant>"})
	add(Answer{Name: "wrapping: forged amount in an unsigned wsu:Created",
		Body:    replace(l.Detached, secOpen, secOpen+`<wsu:Timestamp><wsu:Created>2026-01-01T00:00:00Z`+forged+`</wsu:Created></wsu:Timestamp>`),
		Refusal: "wsu:Created holds <idb:montant>"})
	add(Answer{Name: "wrapping: forged amount in the BinarySecurityToken", Body: replace(withBST, "</wsse:BinarySecurityToken>", forged+"</wsse:BinarySecurityToken>"),
		Refusal: "wsse:BinarySecurityToken holds <idb:montant>"})
	add(Answer{Name: "wrapping: forged amount in the SignatureValue of a WS-Security signature",
		Body: replace(l.Detached, "</ds:SignatureValue>", forged+"</ds:SignatureValue>"), Refusal: "ds:SignatureValue holds <idb:montant>"})
	add(Answer{Name: "wrapping: forged amount in the SignatureValue of the enveloped signature, inside the signed element", SignedElement: true,
		Body: replace(l.Enveloped, "</ds:SignatureValue>", forged+"</ds:SignatureValue>"), Refusal: "ds:SignatureValue holds <idb:montant>"})
	add(Answer{Name: "wrapping: forged amount in the X509Certificate of the enveloped signature", SignedElement: true,
		Body: replace(l.Enveloped, "</ds:X509Certificate>", forged+"</ds:X509Certificate>"), Refusal: "ds:X509Certificate holds <idb:montant>"})
	add(Answer{Name: "wrapping: forged amount in an X509IssuerSerial of the enveloped signature", SignedElement: true,
		Body:    replace(l.Enveloped, "</ds:X509Data>", `<ds:X509IssuerSerial><ds:X509IssuerName>CN=x</ds:X509IssuerName>`+forged+`</ds:X509IssuerSerial></ds:X509Data>`),
		Refusal: "ds:X509IssuerSerial holds <idb:montant>"})
	add(Answer{Name: "wrapping: forged amount as text of the X509Data", SignedElement: true,
		Body: replace(l.Enveloped, "</ds:X509Data>", ForgedAmount+"</ds:X509Data>"), Refusal: "text in ds:X509Data"})
	add(Answer{Name: "wrapping: forged amount in the wsse:Reference of a SecurityTokenReference",
		Body:    replace(withBST, `ValueType="`+valueX509v3+`"/></wsse:SecurityTokenReference>`, `ValueType="`+valueX509v3+`">`+forged+`</wsse:Reference></wsse:SecurityTokenReference>`),
		Refusal: "wsse:Reference holds <idb:montant>"})
	// Another answer of the same partner (an earlier exchange, another
	// patient), its Body signed under another wsu:Id: pasted whole with
	// its signature into this answer, it verifies, and a SIH reading
	// //S:Body or //montant finds it before the Body of this answer.
	other := Sign(t, xmlDecl+env11+`<S:Header>`+secOpen+sig{uris: []string{"#body-2"}}.String()+`</wsse:Security></S:Header>`+
		`<S:Body wsu:Id="body-2">`+response("", ForgedAmount, "")+`</S:Body></S:Envelope>`, signer, idArgs(idBody)...)
	otherSig := string(between(t, other, "<ds:Signature", "</ds:Signature>"))
	otherBody := string(between(t, other, "<S:Body", "</S:Body>"))
	add(Answer{Name: "replay inside: another answer's signed Body and its signature pasted as a Header entry",
		Body:    replace(replace(l.Detached, "</wsse:Security>", otherSig+"</wsse:Security>"), "</S:Header>", otherBody+"</S:Header>"),
		Refusal: "signature 2 covers neither"})
	add(Answer{Name: "replay inside: another answer's signed Body and its signature pasted into the Security header",
		Body:    replace(l.Detached, "</wsse:Security>", otherSig+otherBody+"</wsse:Security>"),
		Refusal: "signature 2 covers neither"})
	add(Answer{Name: "replay inside: another answer's signed Body and its signature pasted into the signed element's enveloped signature", SignedElement: true,
		Body:    replace(l.Enveloped, "</ds:X509Data>", "</ds:X509Data>"+otherSig+otherBody),
		Refusal: "ds:KeyInfo must hold one"})

	// What no digest covers carries no attribute a SIH could read (a
	// forged amount in an attribute of the signature, of its KeyInfo...),
	// only the Id the schemas give them, namespace declarations, and the
	// few the WS-Security schemas require.
	withIDs := detached(t, signer, sig{uris: []string{"#body-1"}, ids: true}, "")
	add(Answer{Name: "legit: Id attributes on the Signature, its SignatureValue and KeyInfo", Body: withIDs})
	attr := ` montant="` + ForgedAmount + `"`
	nsAttr := ` xmlns:idb="` + NSIDB + `" idb:montant="` + ForgedAmount + `"`
	for _, c := range []struct {
		name, old, new, refusal string
		body                    []byte
		signedElement           bool
	}{
		{"ds:Signature", `<ds:Signature xmlns:ds=`, `<ds:Signature` + attr + ` xmlns:ds=`, "ds:Signature carries the unsigned attribute montant", l.Detached, false},
		{"ds:Signature with an Id", ` Id="SIG-1">`, ` Id="SIG-1"` + attr + `>`, "ds:Signature carries the unsigned attribute montant", withIDs, false},
		{"ds:Signature of an enveloped signature (removed from what is signed)", `<ds:Signature xmlns:ds=`, `<ds:Signature` + attr + ` xmlns:ds=`,
			"ds:Signature carries the unsigned attribute montant", l.Enveloped, true},
		{"ds:SignatureValue", `<ds:SignatureValue>`, `<ds:SignatureValue` + attr + `>`, "ds:SignatureValue carries the unsigned attribute montant", l.Detached, false},
		{"ds:KeyInfo", `<ds:KeyInfo>`, `<ds:KeyInfo` + nsAttr + `>`, "ds:KeyInfo carries the unsigned attribute idb:montant", l.Detached, false},
		{"ds:KeyInfo, as xml:lang", `<ds:KeyInfo>`, `<ds:KeyInfo xml:lang="` + ForgedAmount + `">`, "ds:KeyInfo carries the unsigned attribute xml:lang", l.Detached, false},
		{"ds:X509Data", `<ds:X509Data>`, `<ds:X509Data` + attr + `>`, "ds:X509Data carries the unsigned attribute montant", l.Detached, false},
		{"ds:X509Certificate", `<ds:X509Certificate>`, `<ds:X509Certificate` + attr + `>`, "ds:X509Certificate carries the unsigned attribute montant", l.Enveloped, true},
		{"wsse:SecurityTokenReference", `<wsse:SecurityTokenReference>`, `<wsse:SecurityTokenReference` + attr + `>`,
			"wsse:SecurityTokenReference carries the unsigned attribute montant", withBST, false},
		{"wsse:Reference", `<wsse:Reference URI=`, `<wsse:Reference` + attr + ` URI=`, "wsse:Reference carries the unsigned attribute montant", withBST, false},
		{"an unsigned wsse:BinarySecurityToken", `<wsse:BinarySecurityToken wsu:Id="bst-1"`, `<wsse:BinarySecurityToken wsu:Id="bst-1"` + nsAttr,
			"wsse:BinarySecurityToken carries the unsigned attribute idb:montant", withBST, false},
		{"an unsigned wsu:Timestamp", secOpen, secOpen + `<wsu:Timestamp` + attr + `><wsu:Created>2026-01-01T00:00:00Z</wsu:Created></wsu:Timestamp>`,
			"wsu:Timestamp carries the unsigned attribute montant", l.Detached, false},
		{"an unsigned wsu:Created", secOpen, secOpen + `<wsu:Timestamp><wsu:Created` + attr + `>2026-01-01T00:00:00Z</wsu:Created></wsu:Timestamp>`,
			"wsu:Created carries the unsigned attribute montant", l.Detached, false},
		{"the unsigned wsse:Security header", secOpen, strings.Replace(secOpen, ">", attr+">", 1), "wsse:Security carries the unsigned attribute montant", l.Detached, false},
	} {
		if !bytes.Contains(c.body, []byte(c.old)) {
			t.Fatalf("%s: %q not found in:\n%s", c.name, c.old, c.body)
		}
		add(Answer{Name: "unsigned attribute on " + c.name, Body: replace(c.body, c.old, c.new), SignedElement: c.signedElement, Refusal: c.refusal})
	}

	// White space is space, tab, CR and LF: a no-break space (or another
	// Unicode space) is text a reader of the Envelope or the Body gets.
	add(Answer{Name: "unsigned no-break spaces directly in the Envelope", Body: replace(l.Detached, "<S:Body", "\u00a0\u2003<S:Body"),
		Refusal: "text directly in the Envelope"})
	add(Answer{Name: "unsigned no-break space in the Body beside the signed element", SignedElement: true,
		Body: replace(l.Enveloped, "<S:Body>", "<S:Body>\u00a0"), Refusal: "the SOAP Body holds unsigned text"})
	// XML parsers normalize a tab, CR or LF written as such in an attribute
	// value to a space (XML 1.0 section 3.3.3), encoding/xml (under etree)
	// does not: rewritten from "&#10;" to a raw line break, a signed value
	// would still digest as "A\nB" for us while xmllint, xmlsec1 and the
	// SIH read "A B".
	withRef := Sign(t, xmlDecl+env11+`<S:Header>`+secOpen+sig{uris: []string{"#body-1"}}.String()+`</wsse:Security></S:Header>`+
		`<S:Body wsu:Id="body-1">`+response(` motif="A&#10;B&#9;C"`, Amount, "")+`</S:Body></S:Envelope>`, signer, idArgs(idBody)...)
	add(Answer{Name: "legit: line break and tab written as references in a signed attribute", Body: withRef})
	add(Answer{Name: "raw line break in a signed attribute value (a parser reads a space)", Body: replace(withRef, "&#10;", "\n"),
		Refusal: "tab, CR or LF written as such in the value of attribute motif"})
	add(Answer{Name: "raw tab in a signed attribute value (a parser reads a space)", Body: replace(withRef, "&#9;", "\t"),
		Refusal: "tab, CR or LF written as such in the value of attribute motif"})
	add(Answer{Name: "unsigned answer", Body: []byte(xmlDecl + env11 + `<S:Body>` + response("", ForgedAmount, "") + `</S:Body></S:Envelope>`),
		Refusal: "no signature"})
	return out
}
