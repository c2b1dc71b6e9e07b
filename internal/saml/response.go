package saml

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"
	"github.com/russellhaering/goxmldsig/etreeutils"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// ErrNoSignature: a partner's response carries no ds:Signature.
var ErrNoSignature = errors.New("no signature in the response")

// QName is a namespace-qualified element name.
type QName struct{ Space, Local string }

func (q QName) String() string { return "{" + q.Space + "}" + q.Local }

// ParseClark reads "{namespace}local" (or "local", no namespace).
func ParseClark(s string) (QName, error) {
	if !strings.HasPrefix(s, "{") {
		if s == "" || strings.ContainsAny(s, "{}: ") {
			return QName{}, fmt.Errorf("%q is not {namespace}local", s)
		}
		return QName{Local: s}, nil
	}
	space, local, ok := strings.Cut(s[1:], "}")
	if !ok || space == "" || local == "" || strings.ContainsAny(local, "{}: ") {
		return QName{}, fmt.Errorf("%q is not {namespace}local", s)
	}
	return QName{Space: space, Local: local}, nil
}

// ResponsePolicy is what a route trusts of its partner's signed answers.
//
// Verify guarantees that what the SIH reads is what the partner signed:
// every ds:Signature verifies (references resolved by ID in this very
// document, IDs unique, SHA-1 only when allowed, exclusive or inclusive
// c14n 1.0 without comments), by a certificate chaining to Roots through
// Intermediates alone (not through certificates the answer carries), fit
// for signing (mtls.CheckSigningUsage: not the partner's TLS certificate),
// one of Signers when they are set, and not revoked (Revocation); the
// element the route trusts (the SOAP Body, or SignedElement below it) is,
// by its position in the tree, a node a verified reference points at or
// lies under one; and nothing the SIH would read lies outside the signed
// part: no other element beside the trusted one on its way from the Body,
// no unsigned Header entry but the WS-Security header (Signature,
// Timestamp, BinarySecurityToken), nothing but text in what no digest
// covers (an unsigned Timestamp or BinarySecurityToken, a signature's
// SignatureValue and KeyInfo), no text, comment or processing
// instruction where it could be read as data, no attribute but an Id on
// what no digest covers, no DTD; and the answer is no larger than MaxNodes
// and MaxDepth allow, counted before it is parsed.
type ResponsePolicy struct {
	Roots, Intermediates *x509.CertPool
	// SignedElement is the path below the SOAP Body of the element the
	// route trusts; empty: the Body itself.
	SignedElement []QName
	// AllowSHA1 accepts RSA-SHA1 signatures and SHA-1 digests.
	AllowSHA1 bool
	// Signers, when set, are the subjects (RFC 2253, in either order) of
	// the only certificates whose signatures are accepted: any
	// certificate the bundles issued is not enough.
	Signers []string
	// Revocation, when set, checks the revocation status of each
	// signer's verified chain (leaf first), under the route's revocation
	// policy: a revoked signer is refused, one of unknown status under a
	// hard policy too. It answers from the revocation cache; only a
	// first contact fetches, bounded by the context given to Verify.
	Revocation ChainChecker
	// MaxNodes bounds the elements, attributes and text nodes of an
	// answer, MaxDepth its nesting, checked before its tree is built
	// (a tree takes up to 40 times the bytes it is read from); zero:
	// config.DefaultResponseMaxNodes, config.DefaultResponseMaxDepth.
	MaxNodes, MaxDepth int
	Now                func() time.Time

	// verified caches signing certificates whose chain verified, until
	// the chain's first expiry (a route's answers come from a handful of
	// certificates; a configuration reload builds a new policy).
	mu       sync.Mutex
	verified map[[32]byte]verifiedSigner
}

// ChainChecker checks a verified chain's revocation status (leaf first):
// revocation.RouteChecker.
type ChainChecker interface {
	CheckChain(ctx context.Context, chain []*x509.Certificate) error
}

// maxVerifiedSigners bounds the cache of verified signing certificates.
const maxVerifiedSigners = 64

// ResponseError says why an answer's signatures are not trusted.
type ResponseError struct{ Reason string }

func (e *ResponseError) Error() string { return e.Reason }

func untrusted(format string, args ...any) error {
	return &ResponseError{Reason: fmt.Sprintf(format, args...)}
}

// Bounds of an answer: signatures, references (counted as the children of
// the signatures' children, a little more than the references). Its size
// and nesting are ResponsePolicy.MaxNodes and MaxDepth.
const (
	maxAnswerSignatures = 8
	maxAnswerReferences = 64
)

// Verify checks a partner's answer and returns how many signatures it
// verified. Errors are ErrNoSignature (nothing signed) or *ResponseError.
// ctx bounds what the revocation check of a signer may fetch.
func (p *ResponsePolicy) Verify(ctx context.Context, body []byte) (int, error) {
	maxNodes, maxDepth := p.MaxNodes, p.MaxDepth
	if maxNodes <= 0 {
		maxNodes = config.DefaultResponseMaxNodes
	}
	if maxDepth <= 0 {
		maxDepth = config.DefaultResponseMaxDepth
	}
	if err := checkAnswerSyntax(body, maxNodes, maxDepth); err != nil {
		return 0, err
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(body); err != nil {
		return 0, untrusted("the answer is not XML: %v", err)
	}
	root := doc.Root()
	header, soapBody, err := envelopeParts(root)
	if err != nil {
		return 0, err
	}
	ids, err := indexIDs(root)
	if err != nil {
		return 0, err
	}
	var sigs []*etree.Element
	walk(root, func(el *etree.Element) {
		if el.Tag == "Signature" && el.NamespaceURI() == NSDSig {
			sigs = append(sigs, el)
		}
	})
	if len(sigs) == 0 {
		return 0, ErrNoSignature
	}
	// Each reference canonicalizes what it points at: bounded, so that an
	// answer cannot make us digest its Body a thousand times.
	refs := 0
	for _, s := range sigs {
		for _, si := range s.ChildElements() {
			refs += len(si.ChildElements())
		}
	}
	if len(sigs) > maxAnswerSignatures || refs > maxAnswerReferences {
		return 0, untrusted("%d signatures with %d references: more than an answer needs", len(sigs), refs)
	}
	covered := map[*etree.Element]bool{}
	signed := make([][]*etree.Element, len(sigs))
	for i, s := range sigs {
		nodes, err := p.verifySignature(ctx, s, root, ids)
		if err != nil {
			return i, untrusted("signature %d: %v", i+1, err)
		}
		for _, n := range nodes {
			covered[n] = true
		}
		signed[i] = nodes
	}
	covers := func(el *etree.Element) bool {
		for e := el; e != nil; e = e.Parent() {
			if covered[e] {
				return true
			}
		}
		return false
	}
	if err := p.checkBody(soapBody, covers); err != nil {
		return len(sigs), err
	}
	if header != nil && !covers(header) {
		if err := checkHeader(header, covers); err != nil {
			return len(sigs), err
		}
	}
	// Every signature is this answer's: it signs the Body (by it, an
	// ancestor or a part of it), or only the Security header's Timestamp
	// and BinarySecurityTokens. Another answer's signed Body pasted with
	// its signature into the Header verifies, and is what a SIH reading
	// //S:Body or //montant finds first.
	for i, nodes := range signed {
		if !reachesBody(nodes, soapBody) && !securityOnly(nodes, header) {
			return len(sigs), untrusted("signature %d covers neither the Body nor only the Security header's Timestamp or BinarySecurityToken (another answer's signature?)", i+1)
		}
	}
	return len(sigs), nil
}

// reachesBody reports whether a node is the Body, holds it or lies in it.
func reachesBody(nodes []*etree.Element, body *etree.Element) bool {
	for _, n := range nodes {
		if n == body || isAncestor(n, body) || isAncestor(body, n) {
			return true
		}
	}
	return false
}

// securityOnly reports whether every node is a Timestamp or a
// BinarySecurityToken of a Security header of the Header.
func securityOnly(nodes []*etree.Element, header *etree.Element) bool {
	for _, n := range nodes {
		sec := n.Parent()
		ns := n.NamespaceURI()
		if header == nil || sec == nil || sec.Parent() != header || sec.Tag != "Security" || sec.NamespaceURI() != NSWSSE ||
			!(n.Tag == "Timestamp" && ns == NSWSU || n.Tag == "BinarySecurityToken" && ns == NSWSSE) {
			return false
		}
	}
	return true
}

// CheckAnswerCharset refuses a partner answer's Content-Type that would
// make a SIH decode the verified bytes (UTF-8: checkAnswerSyntax) as
// something else: a charset parameter names the encoding the SIH uses
// (RFC 7303), and the signature does not cover the header. No charset, or
// UTF-8, passes; an unparsable media type is refused (which parameter a
// reader believes is anyone's guess).
func CheckAnswerCharset(contentType string) error {
	if contentType == "" {
		return nil
	}
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return untrusted("the answer's Content-Type %q cannot be read: %v", contentType, err)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return untrusted("the answer's Content-Type names the charset %q: the signed bytes are UTF-8, the SIH would decode them as something else", cs)
	}
	return nil
}

// checkAnswerSyntax holds the answer to the scanner's well-formedness
// (DTD refused) and refuses comments and processing instructions inside
// it: c14n without comments leaves them out of what is signed, and a
// parser may read "1<!---->2.50" as "1". It bounds the answer's tree
// before one is built: at most maxNodes elements, attributes and text
// nodes (each costs the tree 100 to 200 bytes, whatever its size in the
// answer: 4 bytes for <a/>), nested at most maxDepth deep.
func checkAnswerSyntax(body []byte, maxNodes, maxDepth int) error {
	s := newScanner(body, maxDepth)
	defer s.release()
	if err := s.start(); err != nil {
		return untrusted("the answer is not well-formed XML: %v", err)
	}
	nodes := 0
	for {
		if err := s.next(); err != nil {
			var se *SyntaxError
			switch {
			case errors.Is(err, errDTD):
				return untrusted("a DTD in the answer is not accepted")
			case errors.As(err, &se) && se.tooDeep:
				return untrusted("the answer has %v (response_signature.max_depth)", err)
			}
			return untrusted("the answer is not well-formed XML: %v", err)
		}
		if s.kind != tokEOF && s.kind != tokEnd {
			if nodes++; s.kind == tokStart {
				nodes += len(s.attrs)
			}
			if nodes > maxNodes {
				return untrusted("the answer has more than %d elements, attributes and text nodes (response_signature.max_nodes)", maxNodes)
			}
		}
		switch s.kind {
		case tokEOF:
			return nil
		case tokStart:
			// A conforming parser reads a raw tab, CR or LF in an
			// attribute value as a space; encoding/xml (under etree)
			// keeps it: what we digest and what the SIH reads differ.
			for k := range s.attrs {
				a := &s.attrs[k]
				if bytes.ContainsAny(s.at(a.value), "\t\r\n") {
					return untrusted("a tab, CR or LF written as such in the value of attribute %s (parsers read a space): write it as a character reference", s.at(a.name))
				}
			}
		case tokComment:
			if s.depth() > 0 {
				return untrusted("a comment inside the answer (comments are outside what is signed)")
			}
		case tokPI:
			return untrusted("a processing instruction in the answer (outside what is signed)")
		}
	}
}

// envelopeParts checks the SOAP structure: an Envelope holding an optional
// Header then one Body, nothing else, no text.
func envelopeParts(root *etree.Element) (header, body *etree.Element, err error) {
	soapNS := root.NamespaceURI()
	if root.Tag != "Envelope" || soapNS != NSSOAP11 && soapNS != NSSOAP12 {
		return nil, nil, untrusted("the answer is not a SOAP 1.1 or 1.2 envelope")
	}
	if hasText(root) {
		return nil, nil, untrusted("text directly in the Envelope")
	}
	for _, c := range root.ChildElements() {
		switch {
		case c.NamespaceURI() == soapNS && c.Tag == "Header" && header == nil && body == nil:
			header = c
		case c.NamespaceURI() == soapNS && c.Tag == "Body" && body == nil:
			body = c
		default:
			return nil, nil, untrusted("the Envelope holds only a Header and a Body: found <%s>", c.FullTag())
		}
	}
	if body == nil {
		return nil, nil, untrusted("the answer has no SOAP Body")
	}
	return header, body, nil
}

// hasText reports character data directly in el that is not XML white
// space (space, tab, CR, LF: a no-break space is text to a reader).
func hasText(el *etree.Element) bool {
	for _, t := range el.Child {
		if cd, ok := t.(*etree.CharData); ok && strings.Trim(cd.Data, " \t\r\n") != "" {
			return true
		}
	}
	return false
}

// leaf refuses child elements in el, whose content is text (a value, a
// certificate) no digest covers: an element hidden there is what a SIH
// searching the answer by name (//montant, getElementsByTagName) would
// find before or beside the signed one.
func leaf(el *etree.Element) error {
	if kids := el.ChildElements(); len(kids) > 0 {
		return fmt.Errorf("%s holds <%s> where only text may be (nothing signs it)", el.FullTag(), kids[0].FullTag())
	}
	return nil
}

// textChildren checks that el holds only elements of namespace ns named
// as listed, each a leaf, and no text.
func textChildren(el *etree.Element, ns string, names ...string) error {
	if hasText(el) {
		return fmt.Errorf("text in %s", el.FullTag())
	}
	for _, c := range el.ChildElements() {
		if c.NamespaceURI() != ns || !slices.Contains(names, c.Tag) {
			return fmt.Errorf("%s holds <%s>, which it may not (nothing signs it)", el.FullTag(), c.FullTag())
		}
		allowed := []QName(nil)
		if ns == NSWSU {
			allowed = []QName{attrWSUID} // wsu:Created, wsu:Expires
		}
		if err := unsignedAttrs(c, allowed...); err != nil {
			return err
		}
		if err := leaf(c); err != nil {
			return err
		}
	}
	return nil
}

// Attributes what no digest covers may carry: the Id the XML-DSig schema
// gives a signature and its parts, wsu:Id, and what the WS-Security
// schemas require.
var (
	attrID        = QName{Local: "Id"}
	attrWSUID     = QName{Space: NSWSU, Local: "Id"}
	attrURI       = QName{Local: "URI"}
	attrValueType = QName{Local: "ValueType"}
	attrEncType   = QName{Local: "EncodingType"}
	// attrTokenType is WSS 1.1's wsse11:TokenType of a
	// SecurityTokenReference.
	attrTokenType = QName{Space: "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd", Local: "TokenType"}
)

// unsignedAttrs refuses el's attributes but namespace declarations and
// those allowed: el lies outside what any digest covers, and a value
// forged there is what a SIH reading the attribute would take for the
// partner's.
func unsignedAttrs(el *etree.Element, allowed ...QName) error {
	for i := range el.Attr {
		a := &el.Attr[i]
		if a.Space == "xmlns" || a.Space == "" && a.Key == "xmlns" {
			continue
		}
		q := QName{Local: a.Key}
		if a.Space != "" {
			// Prefixes are declared (checkAnswerSyntax) but xml's,
			// which no allowed name is in.
			if q.Space = a.NamespaceURI(); q.Space == "" {
				return fmt.Errorf("%s carries the unsigned attribute %s", el.FullTag(), a.FullKey())
			}
		}
		if !slices.Contains(allowed, q) {
			return fmt.Errorf("%s carries the unsigned attribute %s", el.FullTag(), a.FullKey())
		}
	}
	return nil
}

func walk(el *etree.Element, f func(*etree.Element)) {
	f(el)
	for _, c := range el.ChildElements() {
		walk(c, f)
	}
}

// idIndex resolves same-document references.
type idIndex struct {
	strong map[string]*idEntry // ID, Id (any namespace, wsu:Id), xml:id
	weak   map[string]*idEntry // id
}

// idEntry is the first element carrying an ID value and how many carry
// it. Counting (rather than listing) keeps the index linear in the size
// of the answer, whatever an attacker repeats.
type idEntry struct {
	el, last *etree.Element
	n        int
}

// indexIDs collects the ID attributes; a value carried by two elements
// makes a reference to it ambiguous (signature wrapping): refused.
func indexIDs(root *etree.Element) (*idIndex, error) {
	ix := &idIndex{strong: map[string]*idEntry{}, weak: map[string]*idEntry{}}
	add := func(m map[string]*idEntry, v string, el *etree.Element) {
		e := m[v]
		switch {
		case e == nil:
			m[v] = &idEntry{el: el, last: el, n: 1}
		case e.last != el: // an element's attributes come together
			e.last, e.n = el, e.n+1
		}
	}
	walk(root, func(el *etree.Element) {
		for _, a := range el.Attr {
			switch {
			case a.Space == "xmlns" || a.Space == "" && a.Key == "xmlns":
			case a.Key == "ID" || a.Key == "Id" || a.Space == "xml" && a.Key == "id":
				add(ix.strong, a.Value, el)
			case a.Key == "id":
				add(ix.weak, a.Value, el)
			}
		}
	})
	for v, e := range ix.strong {
		if e.n > 1 {
			return nil, untrusted("ID %q is carried by %d elements", v, e.n)
		}
	}
	return ix, nil
}

// resolve finds the one element a "#id" reference names.
func (ix *idIndex) resolve(id string) (*etree.Element, error) {
	s, w := ix.strong[id], ix.weak[id]
	switch {
	case s == nil && w == nil:
		return nil, fmt.Errorf("no element has ID %q", id)
	case w == nil:
		return s.el, nil // strong IDs are unique (indexIDs)
	case s == nil && w.n == 1:
		return w.el, nil
	case s != nil && w.n == 1 && w.el == s.el:
		return s.el, nil // one element with both ID and id
	}
	n := w.n
	if s != nil {
		n++
	}
	return nil, fmt.Errorf("ID %q is carried by %d elements", id, n)
}

// Algorithms.
const (
	algC14N10    = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
	algRSASHA1   = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
	algRSASHA384 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
	algRSASHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
	algSHA1      = "http://www.w3.org/2000/09/xmldsig#sha1"
	algSHA384    = "http://www.w3.org/2001/04/xmldsig-more#sha384"
	algSHA512    = "http://www.w3.org/2001/04/xmlenc#sha512"
	valueX509v3  = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
	encBase64    = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
)

func (p *ResponsePolicy) signatureMethod(uri string) (x509.SignatureAlgorithm, error) {
	switch uri {
	case algRSASHA256:
		return x509.SHA256WithRSA, nil
	case algRSASHA384:
		return x509.SHA384WithRSA, nil
	case algRSASHA512:
		return x509.SHA512WithRSA, nil
	case algRSASHA1:
		if p.AllowSHA1 {
			return x509.SHA1WithRSA, nil
		}
		return 0, errors.New("signature method rsa-sha1 is refused (response_signature.allow_sha1)")
	}
	return 0, fmt.Errorf("signature method %q is not accepted (RSA with SHA-256, -384, -512)", uri)
}

func (p *ResponsePolicy) digestMethod(uri string) (crypto.Hash, error) {
	switch uri {
	case algSHA256:
		return crypto.SHA256, nil
	case algSHA384:
		return crypto.SHA384, nil
	case algSHA512:
		return crypto.SHA512, nil
	case algSHA1:
		if p.AllowSHA1 {
			return crypto.SHA1, nil
		}
		return 0, errors.New("digest method sha1 is refused (response_signature.allow_sha1)")
	}
	return 0, fmt.Errorf("digest method %q is not accepted (SHA-256, -384, -512)", uri)
}

// dsChildren returns el's child elements, which must all be in the
// XML-DSig namespace and named as listed, in order (a name ending in "+"
// repeats, "?" is optional). Non-white-space text is refused.
func dsChildren(el *etree.Element, names ...string) (map[string][]*etree.Element, error) {
	if hasText(el) {
		return nil, fmt.Errorf("text in ds:%s", el.Tag)
	}
	out := map[string][]*etree.Element{}
	kids := el.ChildElements()
	k := 0
	for _, n := range names {
		name := strings.TrimRight(n, "+?")
		for k < len(kids) && kids[k].Tag == name && kids[k].NamespaceURI() == NSDSig {
			out[name] = append(out[name], kids[k])
			k++
			if !strings.HasSuffix(n, "+") {
				break
			}
		}
		if len(out[name]) == 0 && !strings.HasSuffix(n, "?") {
			return nil, fmt.Errorf("ds:%s lacks ds:%s", el.Tag, name)
		}
	}
	if k < len(kids) {
		return nil, fmt.Errorf("<%s> is not accepted in ds:%s", kids[k].FullTag(), el.Tag)
	}
	return out, nil
}

// verifySignature checks one signature and returns the nodes its
// references point at.
func (p *ResponsePolicy) verifySignature(ctx context.Context, sig, root *etree.Element, ids *idIndex) ([]*etree.Element, error) {
	for _, c := range sig.ChildElements() {
		if c.Tag == "Object" && c.NamespaceURI() == NSDSig {
			return nil, errors.New("ds:Object is not accepted: nothing the SIH reads may travel beside the signature")
		}
	}
	parts, err := dsChildren(sig, "SignedInfo", "SignatureValue", "KeyInfo")
	if err != nil {
		return nil, err
	}
	// The Signature element, its SignatureValue and KeyInfo are outside
	// what the signature signs, even when it lies inside the signed
	// element (enveloped-signature): text only, where the schema says
	// so, and no attribute but their Id.
	for _, el := range []*etree.Element{sig, parts["SignatureValue"][0], parts["KeyInfo"][0]} {
		if err := unsignedAttrs(el, attrID); err != nil {
			return nil, err
		}
	}
	if err := leaf(parts["SignatureValue"][0]); err != nil {
		return nil, err
	}
	si := parts["SignedInfo"][0]
	info, err := dsChildren(si, "CanonicalizationMethod", "SignatureMethod", "Reference+")
	if err != nil {
		return nil, err
	}
	c14n := info["CanonicalizationMethod"][0]
	sm := info["SignatureMethod"][0]
	if len(sm.ChildElements()) > 0 {
		return nil, errors.New("ds:SignatureMethod with parameters is not accepted")
	}
	alg, err := p.signatureMethod(sm.SelectAttrValue("Algorithm", ""))
	if err != nil {
		return nil, err
	}
	chain, err := p.signingCertificate(parts["KeyInfo"][0], ids)
	if err != nil {
		return nil, err
	}
	cert := chain[0] // the signer: Verify puts the leaf first
	canon, err := canonicalize(si, c14n, nil)
	if err != nil {
		return nil, fmt.Errorf("SignedInfo: %w", err)
	}
	value, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(parts["SignatureValue"][0].Text()), ""))
	if err != nil {
		return nil, errors.New("SignatureValue is not base64")
	}
	if err := cert.CheckSignature(alg, canon, value); err != nil {
		return nil, fmt.Errorf("the signature value does not verify: %v", err)
	}
	// SignedInfo verified: its references are what the partner signed.
	var nodes []*etree.Element
	for i, ref := range info["Reference"] {
		n, err := p.verifyReference(ref, sig, root, ids)
		if err != nil {
			return nil, fmt.Errorf("reference %d (%s): %w", i+1, ref.SelectAttrValue("URI", ""), err)
		}
		nodes = append(nodes, n)
	}
	// Asked only of a signature whose value and digests verify: a forged
	// or tampered answer makes no revocation fetch.
	if p.Revocation != nil {
		if err := p.Revocation.CheckChain(ctx, chain); err != nil {
			return nil, fmt.Errorf("signing certificate: %w", err)
		}
	}
	return nodes, nil
}

func (p *ResponsePolicy) verifyReference(ref, sig, root *etree.Element, ids *idIndex) (*etree.Element, error) {
	uri := ref.SelectAttr("URI")
	var node *etree.Element
	switch {
	case uri == nil:
		return nil, errors.New("a reference without URI is not accepted")
	case uri.Value == "":
		node = root // the whole document: no PI or comment is accepted around the root
	case strings.HasPrefix(uri.Value, "#") && !strings.HasPrefix(uri.Value, "#xpointer("):
		var err error
		if node, err = ids.resolve(uri.Value[1:]); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("reference URI %q is not a same-document ID reference", uri.Value)
	}
	parts, err := dsChildren(ref, "Transforms?", "DigestMethod", "DigestValue")
	if err != nil {
		return nil, err
	}
	var c14n *etree.Element
	var removeSig *etree.Element
	if tr := parts["Transforms"]; len(tr) == 1 {
		ts, err := dsChildren(tr[0], "Transform+")
		if err != nil {
			return nil, err
		}
		for k, t := range ts["Transform"] {
			switch a := t.SelectAttrValue("Algorithm", ""); {
			case a == algEnveloped && k == 0 && len(t.ChildElements()) == 0:
				if !isAncestor(node, sig) {
					return nil, errors.New("enveloped-signature transform of an element that does not hold the signature")
				}
				removeSig = sig
			case (a == algExcC14N || a == algC14N10) && k == len(ts["Transform"])-1:
				c14n = t
			default:
				return nil, fmt.Errorf("transform %q is not accepted here (enveloped-signature first, then exclusive or inclusive c14n 1.0)", a)
			}
		}
	}
	if removeSig == nil && isAncestor(node, sig) {
		return nil, errors.New("the signature lies inside what it signs without the enveloped-signature transform")
	}
	hash, err := p.digestMethod(parts["DigestMethod"][0].SelectAttrValue("Algorithm", ""))
	if err != nil {
		return nil, err
	}
	want, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(parts["DigestValue"][0].Text()), ""))
	if err != nil {
		return nil, errors.New("DigestValue is not base64")
	}
	canon, err := canonicalize(node, c14n, removeSig)
	if err != nil {
		return nil, err
	}
	h := hash.New()
	h.Write(canon)
	if !bytes.Equal(h.Sum(nil), want) {
		return nil, errors.New("the digest does not match: the signed content was changed")
	}
	return node, nil
}

func isAncestor(anc, el *etree.Element) bool {
	for e := el.Parent(); e != nil; e = e.Parent() {
		if e == anc {
			return true
		}
	}
	return false
}

// canonicalize writes el in canonical form, in its document's namespace
// context, as method (a CanonicalizationMethod or Transform element; nil:
// inclusive c14n 1.0, the default of a reference) says, without the
// signature removeSig (enveloped-signature transform). goxmldsig's
// canonicalizers on a detached copy: nothing is re-serialized through
// encoding/xml.
func canonicalize(el, method, removeSig *etree.Element) ([]byte, error) {
	alg, prefixes := algC14N10, ""
	if method != nil {
		alg = method.SelectAttrValue("Algorithm", "")
		for _, c := range method.ChildElements() {
			if alg != algExcC14N || c.Tag != "InclusiveNamespaces" || c.NamespaceURI() != algExcC14N || len(c.ChildElements()) > 0 {
				return nil, fmt.Errorf("<%s> is not accepted in the canonicalization method", c.FullTag())
			}
			prefixes = c.SelectAttrValue("PrefixList", "")
		}
	}
	var canon dsig.Canonicalizer
	switch alg {
	case algExcC14N:
		canon = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList(prefixes)
	case algC14N10:
		canon = dsig.MakeC14N10RecCanonicalizer()
	default:
		return nil, fmt.Errorf("canonicalization %q is not accepted (exclusive or inclusive c14n 1.0, without comments)", alg)
	}
	detached, err := detach(el)
	if err != nil {
		return nil, err
	}
	if removeSig != nil {
		path := childPath(el, removeSig)
		target := detached
		for _, i := range path[:len(path)-1] {
			target = target.Child[i].(*etree.Element)
		}
		target.RemoveChildAt(path[len(path)-1])
	}
	return canon.Canonicalize(detached)
}

// detach copies el with the namespace declarations in scope at el put on
// the copy: etreeutils.NSDetatch, without its limit of 1,000 elements,
// which refused legitimate answers of a few hundred lines (the answer's
// size is bounded before its tree is built: ResponsePolicy.MaxNodes).
func detach(el *etree.Element) (*etree.Element, error) {
	ctx, err := etreeutils.NSBuildParentContext(el)
	if err != nil {
		return nil, err
	}
	if ctx, err = ctx.SubContext(el); err != nil {
		return nil, err
	}
	cp := el.Copy()
	attrs := make([]etree.Attr, 0, len(cp.Attr)+4)
	for _, a := range cp.Attr {
		if a.Space != "xmlns" && !(a.Space == "" && a.Key == "xmlns") {
			attrs = append(attrs, a)
		}
	}
	for prefix, ns := range ctx.Prefixes() {
		switch {
		case prefix == "xmlns" || prefix == "xml":
		case prefix == "":
			// NSContext maps the default prefix to the XML namespace
			// while no default namespace is declared.
			if ns != etreeutils.XMLNamespace {
				attrs = append(attrs, etree.Attr{Key: "xmlns", Value: ns})
			}
		default:
			attrs = append(attrs, etree.Attr{Space: "xmlns", Key: prefix, Value: ns})
		}
	}
	sort.Sort(etreeutils.SortedAttrs(attrs))
	cp.Attr = attrs
	return cp, nil
}

// childPath is the list of child indexes from anc down to el.
func childPath(anc, el *etree.Element) []int {
	var path []int
	for e := el; e != anc; e = e.Parent() {
		path = append([]int{e.Index()}, path...)
	}
	return path
}

// signingCertificate reads the signer's certificate from KeyInfo (X509Data,
// or a WS-Security reference to a BinarySecurityToken of this answer),
// and verifies its chain: it returns the chain, leaf first.
func (p *ResponsePolicy) signingCertificate(ki *etree.Element, ids *idIndex) ([]*x509.Certificate, error) {
	if hasText(ki) {
		return nil, errors.New("text in ds:KeyInfo")
	}
	kids := ki.ChildElements()
	if len(kids) != 1 {
		return nil, errors.New("ds:KeyInfo must hold one X509Data or one wsse:SecurityTokenReference")
	}
	var ders [][]byte
	decode := func(s string) ([]byte, error) {
		return base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
	}
	switch k := kids[0]; {
	case k.Tag == "X509Data" && k.NamespaceURI() == NSDSig:
		if hasText(k) {
			return nil, fmt.Errorf("text in %s", k.FullTag())
		}
		if err := unsignedAttrs(k); err != nil {
			return nil, err
		}
		for _, c := range k.ChildElements() {
			if c.NamespaceURI() != NSDSig {
				return nil, fmt.Errorf("<%s> is not accepted in ds:X509Data", c.FullTag())
			}
			err := unsignedAttrs(c)
			if err == nil && c.Tag == "X509IssuerSerial" {
				err = textChildren(c, NSDSig, "X509IssuerName", "X509SerialNumber")
			} else if err == nil {
				err = leaf(c)
			}
			if err != nil {
				return nil, err
			}
			switch c.Tag {
			case "X509Certificate":
				der, err := decode(c.Text())
				if err != nil {
					return nil, errors.New("X509Certificate is not base64")
				}
				ders = append(ders, der)
			case "X509IssuerSerial", "X509SubjectName", "X509SKI":
			default:
				return nil, fmt.Errorf("<%s> is not accepted in ds:X509Data", c.FullTag())
			}
		}
	case k.Tag == "SecurityTokenReference" && k.NamespaceURI() == NSWSSE:
		refs := k.ChildElements()
		if hasText(k) || len(refs) != 1 || refs[0].Tag != "Reference" || refs[0].NamespaceURI() != NSWSSE {
			return nil, errors.New("wsse:SecurityTokenReference must hold one wsse:Reference")
		}
		if err := unsignedAttrs(k, attrWSUID, attrTokenType); err != nil {
			return nil, err
		}
		if err := unsignedAttrs(refs[0], attrURI, attrValueType); err != nil {
			return nil, err
		}
		if err := leaf(refs[0]); err != nil {
			return nil, err
		}
		uri := refs[0].SelectAttrValue("URI", "")
		if !strings.HasPrefix(uri, "#") {
			return nil, fmt.Errorf("wsse:Reference %q is not a same-document reference", uri)
		}
		bst, err := ids.resolve(uri[1:])
		if err != nil {
			return nil, err
		}
		if bst.Tag != "BinarySecurityToken" || bst.NamespaceURI() != NSWSSE || bst.SelectAttrValue("ValueType", "") != valueX509v3 ||
			bst.SelectAttrValue("EncodingType", encBase64) != encBase64 {
			return nil, errors.New("the wsse:Reference does not point at an X.509 v3 BinarySecurityToken")
		}
		der, err := decode(bst.Text())
		if err != nil {
			return nil, errors.New("BinarySecurityToken is not base64")
		}
		ders = append(ders, der)
	default:
		return nil, fmt.Errorf("<%s> is not accepted in ds:KeyInfo", k.FullTag())
	}
	if len(ders) == 0 {
		return nil, errors.New("no signing certificate in KeyInfo")
	}
	// The signer's certificate comes first. Others (the partner's
	// intermediates) are not used: the chain is built from the bundles
	// alone, so that a bundle holding only the signing authority
	// (AC-SERVICES-APPLICATIFS) keeps out certificates another authority
	// of the same PKI (AC-SERVEUR) issued, whatever the answer carries.
	for _, der := range ders[1:] {
		if _, err := x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("certificate in KeyInfo: %w", err)
		}
	}
	signer, err := x509.ParseCertificate(ders[0])
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	return p.verifyChain(signer, now)
}

// verifiedSigner is a signing certificate found fit, and its chain.
type verifiedSigner struct {
	until time.Time // the chain's first expiry
	chain []*x509.Certificate
}

// verifyChain verifies signer's chain up to Roots at now, its fitness for
// signing and the route's list of signers, or finds it verified before and
// not expired since. It returns the verified chain, leaf first.
func (p *ResponsePolicy) verifyChain(signer *x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	key := sha256.Sum256(signer.Raw)
	p.mu.Lock()
	v, ok := p.verified[key]
	p.mu.Unlock()
	if ok && now.Before(v.until) && !now.Before(signer.NotBefore) {
		return v.chain, nil
	}
	chains, err := signer.Verify(x509.VerifyOptions{Roots: p.Roots, Intermediates: p.Intermediates, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	if err := mtls.CheckSigningUsage(signer); err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	if len(p.Signers) > 0 && !slices.ContainsFunc(p.Signers, func(dn string) bool { return config.DNMatches(dn, signer.RawSubject) }) {
		return nil, fmt.Errorf("signing certificate %s is not one of response_signature.signers", trust.SubjectDN(signer))
	}
	v = verifiedSigner{until: signer.NotAfter, chain: chains[0]}
	for _, c := range chains[0] {
		if c.NotAfter.Before(v.until) {
			v.until = c.NotAfter
		}
	}
	p.mu.Lock()
	if p.verified == nil || len(p.verified) >= maxVerifiedSigners {
		p.verified = map[[32]byte]verifiedSigner{}
	}
	p.verified[key] = v
	p.mu.Unlock()
	return v.chain, nil
}

// checkBody: the trusted element is covered, and on its way from the Body
// the SIH reads nothing unsigned.
func (p *ResponsePolicy) checkBody(body *etree.Element, covers func(*etree.Element) bool) error {
	node, name := body, "the SOAP Body"
	for _, q := range p.SignedElement {
		if covers(node) {
			return nil // everything below is signed
		}
		if hasText(node) {
			return untrusted("%s holds unsigned text", name)
		}
		for _, a := range node.Attr {
			if a.Space != "xmlns" && !(a.Space == "" && a.Key == "xmlns") && a.Key != "Id" && a.Key != "ID" {
				return untrusted("%s carries an unsigned attribute %s", name, a.FullKey())
			}
		}
		kids := node.ChildElements()
		if len(kids) != 1 || kids[0].Tag != q.Local || kids[0].NamespaceURI() != q.Space {
			return untrusted("%s holds more than the element %s (or not it): only that element may be read, and it must be signed", name, q)
		}
		node, name = kids[0], "the answer's "+q.Local
	}
	if !covers(node) {
		return untrusted("%s is not covered by a verified signature", name)
	}
	return nil
}

// checkHeader: every entry of an unsigned Header is signed, but the
// WS-Security header, which may hold only signatures, a timestamp and
// binary security tokens.
func checkHeader(header *etree.Element, covers func(*etree.Element) bool) error {
	if hasText(header) {
		return untrusted("the Header holds unsigned text")
	}
	securities := 0
	for _, c := range header.ChildElements() {
		if covers(c) {
			continue
		}
		if c.Tag != "Security" || c.NamespaceURI() != NSWSSE {
			return untrusted("<%s> in the Header is not covered by a verified signature", c.FullTag())
		}
		if securities++; securities > 1 {
			return untrusted("more than one unsigned WS-Security header")
		}
		if hasText(c) {
			return untrusted("the WS-Security header holds unsigned text")
		}
		soapNS := header.NamespaceURI()
		if err := unsignedAttrs(c, QName{Space: soapNS, Local: "mustUnderstand"}, QName{Space: soapNS, Local: "actor"},
			QName{Space: soapNS, Local: "role"}, attrWSUID); err != nil {
			return untrusted("%v", err)
		}
		for _, e := range c.ChildElements() {
			if covers(e) {
				continue
			}
			// Unsigned, these hold text only (a signature's unsigned
			// parts are checked with it): an element hidden in them is
			// what a SIH searching the answer by name would read.
			var err error
			switch ns := e.NamespaceURI(); {
			case e.Tag == "Signature" && ns == NSDSig:
			case e.Tag == "Timestamp" && ns == NSWSU:
				if err = unsignedAttrs(e, attrWSUID); err == nil {
					err = textChildren(e, NSWSU, "Created", "Expires")
				}
			case e.Tag == "BinarySecurityToken" && ns == NSWSSE:
				if err = unsignedAttrs(e, attrWSUID, attrValueType, attrEncType); err == nil {
					err = leaf(e)
				}
			default:
				return untrusted("<%s> in the WS-Security header is not covered by a verified signature", e.FullTag())
			}
			if err != nil {
				return untrusted("%v", err)
			}
		}
	}
	return nil
}
