package saml

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"unicode"
	"unicode/utf8"
)

// scanner is a strict, allocation-light XML 1.0 tokenizer with namespace
// well-formedness (Namespaces in XML 1.0): what it accepts, encoding/xml
// accepts too, and more is refused (FuzzScanner holds it to that against
// encoding/xml as the oracle). It refuses: a DTD, a second root element,
// text or CDATA outside the root, a duplicated attribute (by raw name or by
// namespace and local name), an undeclared prefix, a declaration of the
// reserved prefixes, an empty prefixed declaration, characters that are
// not XML characters (U+FFFE, U+FFFF, C0 controls but tab, CR and LF),
// entity references other than the five predefined ones, "]]>" in text,
// "--" in a comment, an XML declaration anywhere but at the start or with
// another version than 1.0 or another encoding than UTF-8, and nesting
// deeper than maxDepth. The input must be valid UTF-8 (checked by start).
//
// Names and values are slices of the input; only a namespace declaration
// holding a character or entity reference is decoded into a new buffer.
type scanner struct {
	b   []byte
	pos int

	maxDepth   int
	rootSeen   bool
	rootClosed bool

	// Current token. The scanner's state holds offsets into b, not
	// slices: no pointer is written per token (no GC write barrier).
	kind        tokenKind
	tagStart    int // offset of '<' (start and end tags)
	tagEnd      int // offset after '>'
	selfClosing bool
	name        span  // raw qualified name of the element
	colon       int   // offset of the name's ':' or -1
	nsRef       int32 // the element's namespace (see nsRef)
	nonSpace    bool  // a text token holds more than white space
	attrs       []scanAttr

	open []openElement
	ns   []nsBinding
	// ext holds decoded namespace names (a declaration with references).
	ext [][]byte
	// popTo, when >= 0, is the namespace mark to restore before the next
	// token (the bindings of a self-closing element stay in scope for the
	// caller until then).
	popTo int
}

// span is b[start:end].
type span struct{ start, end int32 }

// nsRef values: an index into scanner.ns, or one of these.
const (
	nsNone int32 = -1 // no namespace
	nsXML  int32 = -2 // the xml prefix's
)

type tokenKind uint8

const (
	tokEOF tokenKind = iota
	tokStart
	tokEnd
	tokText
	tokComment
	tokPI
)

type scanAttr struct {
	name   span
	colon  int32 // offset of ':' or -1
	value  span  // raw, between the quotes
	hasRef bool  // value holds a character or entity reference
	nsRef  int32 // of a prefixed attribute
}

type openElement struct {
	name   span
	nsMark int32
}

// nsBinding binds a prefix (prefix.start < 0: the default namespace) to
// b[uri] or, when ext >= 0, to scanner.ext[ext].
type nsBinding struct {
	prefix, uri span
	ext         int32
}

// Reserved namespace names (Namespaces in XML 1.0, section 3).
var (
	nsXMLBytes   = []byte("http://www.w3.org/XML/1998/namespace")
	nsXMLNSBytes = []byte("http://www.w3.org/2000/xmlns/")
)

// errDTD: a document type declaration, refused wherever it is.
var errDTD = errors.New("a DTD or entity declaration is not accepted")

// SyntaxError is a well-formedness violation, with its byte offset.
type SyntaxError struct {
	Offset int
	Msg    string
	// tooDeep: the document nests deeper than the scanner's maxDepth
	// (a limit, not a well-formedness violation).
	tooDeep bool
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s at byte %d", e.Msg, e.Offset) }

var scanners = sync.Pool{New: func() any {
	return &scanner{attrs: make([]scanAttr, 0, 16), open: make([]openElement, 0, 16), ns: make([]nsBinding, 0, 16)}
}}

// newScanner takes a scanner from the pool; release gives it back.
func newScanner(b []byte, maxDepth int) *scanner {
	s := scanners.Get().(*scanner)
	*s = scanner{b: b, maxDepth: maxDepth, popTo: -1, attrs: s.attrs[:0], open: s.open[:0], ns: s.ns[:0], ext: s.ext[:0]}
	return s
}

func (s *scanner) release() {
	s.b = nil
	clear(s.ext[:cap(s.ext)])
	scanners.Put(s)
}

func (s *scanner) at(sp span) []byte { return s.b[sp.start:sp.end] }

// rawName, prefix and local are the current element's names.
func (s *scanner) rawName() []byte { return s.at(s.name) }

func (s *scanner) prefix() []byte {
	if s.colon < 0 {
		return nil
	}
	return s.b[s.name.start:s.colon]
}

func (s *scanner) local() []byte {
	if s.colon < 0 {
		return s.at(s.name)
	}
	return s.b[s.colon+1 : s.name.end]
}

// space is the current element's namespace name.
func (s *scanner) space() []byte { return s.uri(s.nsRef) }

func (s *scanner) uri(ref int32) []byte {
	switch {
	case ref == nsNone:
		return nil
	case ref == nsXML:
		return nsXMLBytes
	case s.ns[ref].ext >= 0:
		return s.ext[s.ns[ref].ext]
	}
	return s.at(s.ns[ref].uri)
}

func (s *scanner) fail(off int, format string, args ...any) error {
	return &SyntaxError{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// start checks the encoding and skips a byte-order mark and the XML
// declaration.
func (s *scanner) start() error {
	if !utf8.Valid(s.b) {
		return s.fail(0, "not valid UTF-8")
	}
	if bytes.HasPrefix(s.b, []byte("\xef\xbb\xbf")) {
		s.pos = 3
	}
	if bytes.HasPrefix(s.b[s.pos:], []byte("<?xml")) && len(s.b) > s.pos+5 && isSpace(s.b[s.pos+5]) {
		return s.xmlDecl()
	}
	return nil
}

// depth is the number of open elements.
func (s *scanner) depth() int { return len(s.open) }

// next reads the next token.
func (s *scanner) next() error {
	if s.popTo >= 0 {
		s.ns = s.ns[:s.popTo]
		s.popTo = -1
	}
	b := s.b
	if s.pos >= len(b) {
		if len(s.open) > 0 {
			return s.fail(s.pos, "unexpected end of input: <%s> is not closed", s.at(s.open[len(s.open)-1].name))
		}
		if !s.rootSeen {
			return s.fail(s.pos, "no root element")
		}
		s.kind = tokEOF
		return nil
	}
	if b[s.pos] != '<' {
		return s.text()
	}
	if s.pos+1 >= len(b) {
		return s.fail(s.pos, "unexpected end of input after '<'")
	}
	switch b[s.pos+1] {
	case '/':
		return s.endTag()
	case '!':
		switch {
		case bytes.HasPrefix(b[s.pos:], []byte("<!--")):
			return s.comment()
		case bytes.HasPrefix(b[s.pos:], []byte("<![CDATA[")):
			return s.cdata()
		case bytes.HasPrefix(b[s.pos:], []byte("<!DOCTYPE")):
			return errDTD
		}
		return s.fail(s.pos, "unexpected markup <!")
	case '?':
		return s.procInst()
	}
	return s.startTag()
}

// Byte classes.
const (
	clPlain   = 0
	clSpecial = 1
)

// textClass marks the bytes that stop the scan of character data: markup
// and references, ']' (for "]]>"), C0 controls but tab, LF and CR, and the
// first byte of U+FFFE and U+FFFF (EF BF BE/BF).
var textClass, attrClass [256]uint8

func init() {
	for c := 0; c < 0x20; c++ {
		if c != '\t' && c != '\n' && c != '\r' {
			textClass[c], attrClass[c] = clSpecial, clSpecial
		}
	}
	for _, c := range []byte{'<', '&', ']', 0xEF} {
		textClass[c] = clSpecial
	}
	for _, c := range []byte{'<', '&', '"', '\'', 0xEF} {
		attrClass[c] = clSpecial
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// notXMLChar reports whether b[i:] starts with U+FFFE or U+FFFF (b[i] is
// 0xEF).
func notXMLChar(b []byte, i int) bool {
	return i+2 < len(b) && b[i+1] == 0xBF && (b[i+2] == 0xBE || b[i+2] == 0xBF)
}

func (s *scanner) text() error {
	b, i := s.b, s.pos
	start := i
	for i < len(b) {
		// Four bytes a step: the class of most text is plain.
		for i+4 <= len(b) && textClass[b[i]]|textClass[b[i+1]]|textClass[b[i+2]]|textClass[b[i+3]] == clPlain {
			i += 4
		}
		for i < len(b) && textClass[b[i]] == clPlain {
			i++
		}
		if i >= len(b) {
			break
		}
		switch c := b[i]; c {
		case '<':
			goto done
		case '&':
			n, err := s.reference(i)
			if err != nil {
				return err
			}
			i = n
		case ']':
			if bytes.HasPrefix(b[i:], []byte("]]>")) {
				return s.fail(i, "\"]]>\" in character data")
			}
			i++
		case 0xEF:
			if notXMLChar(b, i) {
				return s.fail(i, "U+FFFE or U+FFFF is not an XML character")
			}
			i++
		default:
			return s.fail(i, "control character %#02x is not an XML character", c)
		}
	}
done:
	s.kind, s.nonSpace = tokText, false
	if len(s.open) <= 3 {
		// Only the callers' structural levels (outside the root, in
		// Envelope, Header and Security) care whether text is white
		// space.
		for _, c := range b[start:i] {
			if !isSpace(c) {
				s.nonSpace = true
				break
			}
		}
		if len(s.open) == 0 && s.nonSpace {
			return s.fail(start, "text outside the root element")
		}
	}
	s.pos = i
	return nil
}

// reference checks the reference at b[i] ('&') and returns the offset
// after it.
func (s *scanner) reference(i int) (int, error) {
	b := s.b
	end := bytes.IndexByte(b[i:min(len(b), i+16)], ';')
	if end < 0 {
		return 0, s.fail(i, "'&' that starts no reference")
	}
	ref := b[i+1 : i+end]
	switch string(ref) {
	case "amp", "lt", "gt", "apos", "quot":
		return i + end + 1, nil
	}
	if len(ref) < 2 || ref[0] != '#' {
		return 0, s.fail(i, "entity reference &%s; is not one of the five predefined ones", ref)
	}
	var n uint64
	var err error
	if ref[1] == 'x' {
		n, err = parseDigits(ref[2:], 16)
	} else {
		n, err = parseDigits(ref[1:], 10)
	}
	if err != nil || !isXMLChar(rune(n)) || n > unicode.MaxRune {
		return 0, s.fail(i, "character reference &%s; is not an XML character", ref)
	}
	return i + end + 1, nil
}

func parseDigits(d []byte, base int) (uint64, error) {
	if len(d) == 0 {
		return 0, strconv.ErrSyntax
	}
	for _, c := range d {
		ok := c >= '0' && c <= '9' || base == 16 && (c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F')
		if !ok {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseUint(string(d), base, 32)
}

// isXMLChar is the Char production of XML 1.0.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}

// checkChars checks that b[from:to] holds only XML characters.
func (s *scanner) checkChars(from, to int) error {
	b := s.b
	for i := from; i < to; i++ {
		c := b[i]
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return s.fail(i, "control character %#02x is not an XML character", c)
		}
		if c == 0xEF && notXMLChar(b, i) {
			return s.fail(i, "U+FFFE or U+FFFF is not an XML character")
		}
	}
	return nil
}

func (s *scanner) comment() error {
	start := s.pos + 4
	end := bytes.Index(s.b[start:], []byte("--"))
	if end < 0 {
		return s.fail(s.pos, "unterminated comment")
	}
	end += start
	if end+2 >= len(s.b) || s.b[end+2] != '>' {
		return s.fail(end, "\"--\" inside a comment")
	}
	if err := s.checkChars(start, end); err != nil {
		return err
	}
	s.kind, s.pos = tokComment, end+3
	return nil
}

func (s *scanner) cdata() error {
	if len(s.open) == 0 {
		return s.fail(s.pos, "CDATA outside the root element")
	}
	start := s.pos + 9
	end := bytes.Index(s.b[start:], []byte("]]>"))
	if end < 0 {
		return s.fail(s.pos, "unterminated CDATA section")
	}
	end += start
	if err := s.checkChars(start, end); err != nil {
		return err
	}
	s.kind, s.nonSpace, s.pos = tokText, true, end+3
	return nil
}

func (s *scanner) procInst() error {
	i := s.pos + 2
	n, err := s.scanName(i)
	if err != nil {
		return err
	}
	target := s.b[i:n]
	if bytes.IndexByte(target, ':') >= 0 {
		return s.fail(i, "processing instruction target %q holds a colon", target)
	}
	if len(target) == 3 && bytes.EqualFold(target, []byte("xml")) {
		return s.fail(s.pos, "an XML declaration must be at the very start")
	}
	end := bytes.Index(s.b[n:], []byte("?>"))
	if end < 0 {
		return s.fail(s.pos, "unterminated processing instruction")
	}
	end += n
	if end > n && !isSpace(s.b[n]) {
		return s.fail(n, "white space expected after the processing instruction target")
	}
	if err := s.checkChars(n, end); err != nil {
		return err
	}
	s.kind, s.pos = tokPI, end+2
	return nil
}

// xmlDecl checks <?xml version="1.0" [encoding="UTF-8"] [standalone="yes|no"]?>
// at s.pos.
func (s *scanner) xmlDecl() error {
	b := s.b
	i := s.pos + 5
	end := bytes.Index(b[i:], []byte("?>"))
	if end < 0 {
		return s.fail(s.pos, "unterminated XML declaration")
	}
	end += i
	for _, want := range []string{"version", "encoding", "standalone"} {
		j := i
		for j < end && isSpace(b[j]) {
			j++
		}
		if j == i || !bytes.HasPrefix(b[j:end], []byte(want)) {
			if want == "version" {
				return s.fail(i, "the XML declaration has no version")
			}
			continue
		}
		j += len(want)
		for j < end && isSpace(b[j]) {
			j++
		}
		if j >= end || b[j] != '=' {
			return s.fail(j, "'=' expected in the XML declaration")
		}
		j++
		for j < end && isSpace(b[j]) {
			j++
		}
		if j >= end || b[j] != '"' && b[j] != '\'' {
			return s.fail(j, "quoted value expected in the XML declaration")
		}
		q := b[j]
		k := bytes.IndexByte(b[j+1:end], q)
		if k < 0 {
			return s.fail(j, "unterminated value in the XML declaration")
		}
		v := b[j+1 : j+1+k]
		switch want {
		case "version":
			if string(v) != "1.0" {
				return s.fail(j, "XML version %q is not 1.0", v)
			}
		case "encoding":
			if !bytes.EqualFold(v, []byte("utf-8")) {
				return s.fail(j, "encoding %q is not UTF-8", v)
			}
		case "standalone":
			if string(v) != "yes" && string(v) != "no" {
				return s.fail(j, "standalone %q is not yes or no", v)
			}
		}
		i = j + 2 + k
	}
	for i < end && isSpace(b[i]) {
		i++
	}
	if i != end {
		return s.fail(i, "unexpected content in the XML declaration")
	}
	s.pos = end + 2
	return nil
}

// Name characters of ASCII: nameStart may start a name, nameChar follow.
const (
	nameStart = 1
	nameChar  = 2
)

var nameClass = func() (t [128]uint8) {
	for c := 0; c < 128; c++ {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == ':':
			t[c] = nameStart | nameChar
		case c >= '0' && c <= '9', c == '.', c == '-':
			t[c] = nameChar
		}
	}
	return t
}()

// scanName reads a Name at b[i] (with the same character tables as
// encoding/xml) and returns the offset after it.
func (s *scanner) scanName(i int) (int, error) {
	b := s.b
	start := i
	want := uint8(nameStart)
	for i < len(b) {
		c := b[i]
		if c < utf8.RuneSelf {
			if nameClass[c]&want == 0 {
				break
			}
			i++
			want = nameChar
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if !unicode.Is(xmlNameFirst, r) && (i == start || !unicode.Is(xmlNameSecond, r)) {
			break
		}
		i += n
		want = nameChar
	}
	if i == start {
		return 0, s.fail(start, "name expected")
	}
	return i, nil
}

// qname checks the qualified name b[start:end] and returns the offset of
// its colon (-1: none); it refuses more than one colon, an empty prefix or
// local part, and a local part that does not start as a name does (a
// digit, '-', '.', a combining mark: not an NCName, a namespace error to
// libxml2, which then reads the element in no namespace).
func (s *scanner) qname(start, end int) (int, error) {
	c := bytes.IndexByte(s.b[start:end], ':')
	if c < 0 {
		return -1, nil
	}
	c += start
	if c == start || c == end-1 || bytes.IndexByte(s.b[c+1:end], ':') >= 0 || !startsName(s.b[c+1:end]) {
		return 0, s.fail(start, "%q is not a qualified name", s.b[start:end])
	}
	return c, nil
}

// startsName reports whether b (not empty) starts with a character that
// may start a name.
func startsName(b []byte) bool {
	if b[0] < utf8.RuneSelf {
		return nameClass[b[0]]&nameStart != 0
	}
	r, _ := utf8.DecodeRune(b)
	return unicode.Is(xmlNameFirst, r)
}

func (s *scanner) startTag() error {
	b := s.b
	if s.rootClosed {
		return s.fail(s.pos, "a second root element")
	}
	if len(s.open) >= s.maxDepth {
		return &SyntaxError{Offset: s.pos, Msg: fmt.Sprintf("nesting deeper than %d elements", s.maxDepth), tooDeep: true}
	}
	s.tagStart = s.pos
	i := s.pos + 1
	n, err := s.scanName(i)
	if err != nil {
		return err
	}
	s.name = span{int32(i), int32(n)}
	if s.colon, err = s.qname(i, n); err != nil {
		return err
	}
	i = n
	s.attrs = s.attrs[:0]
	for {
		sp := i
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i >= len(b) {
			return s.fail(s.tagStart, "unterminated start tag <%s", s.rawName())
		}
		if b[i] == '>' {
			s.selfClosing = false
			i++
			break
		}
		if b[i] == '/' {
			if i+1 >= len(b) || b[i+1] != '>' {
				return s.fail(i, "'/' not followed by '>'")
			}
			s.selfClosing = true
			i += 2
			break
		}
		if i == sp {
			return s.fail(i, "white space expected between attributes")
		}
		n, err := s.scanName(i)
		if err != nil {
			return err
		}
		a := scanAttr{name: span{int32(i), int32(n)}, nsRef: nsNone}
		colon, err := s.qname(i, n)
		if err != nil {
			return err
		}
		a.colon = int32(colon)
		i = n
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i >= len(b) || b[i] != '=' {
			return s.fail(i, "'=' expected after attribute %s", s.at(a.name))
		}
		i++
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i >= len(b) || b[i] != '"' && b[i] != '\'' {
			return s.fail(i, "quoted value expected for attribute %s", s.at(a.name))
		}
		q := b[i]
		i++
		vs := i
		for {
			for i+4 <= len(b) && attrClass[b[i]]|attrClass[b[i+1]]|attrClass[b[i+2]]|attrClass[b[i+3]] == clPlain {
				i += 4
			}
			for i < len(b) && attrClass[b[i]] == clPlain {
				i++
			}
			if i >= len(b) {
				return s.fail(vs, "unterminated value of attribute %s", s.at(a.name))
			}
			c := b[i]
			if c == q {
				break
			}
			switch c {
			case '"', '\'':
				i++
			case '&':
				n, err := s.reference(i)
				if err != nil {
					return err
				}
				a.hasRef = true
				i = n
			case '<':
				return s.fail(i, "'<' in the value of attribute %s", s.at(a.name))
			case 0xEF:
				if notXMLChar(b, i) {
					return s.fail(i, "U+FFFE or U+FFFF is not an XML character")
				}
				i++
			default:
				return s.fail(i, "control character %#02x is not an XML character", c)
			}
		}
		a.value = span{int32(vs), int32(i)}
		i++
		s.attrs = append(s.attrs, a)
	}
	s.tagEnd = i
	s.pos = i
	if err := s.bindNamespaces(); err != nil {
		return err
	}
	s.kind = tokStart
	s.rootSeen = true
	if s.selfClosing {
		if len(s.open) == 0 {
			s.rootClosed = true
		}
	} else {
		s.open = append(s.open, openElement{name: s.name, nsMark: int32(s.popTo)})
		s.popTo = -1
	}
	return nil
}

// attrPrefix is a's prefix (nil: none).
func (s *scanner) attrPrefix(a *scanAttr) []byte {
	if a.colon < 0 {
		return nil
	}
	return s.b[a.name.start:a.colon]
}

func (s *scanner) attrLocal(a *scanAttr) []byte {
	if a.colon < 0 {
		return s.at(a.name)
	}
	return s.b[a.colon+1 : a.name.end]
}

// bindNamespaces declares the start tag's namespaces, resolves its names
// and checks its attributes are unique. The bindings it adds are undone
// at the element's end (s.popTo keeps the mark meanwhile).
func (s *scanner) bindNamespaces() error {
	mark := len(s.ns)
	if len(s.attrs) == 0 {
		s.popTo = mark
		if s.colon < 0 {
			s.nsRef = s.defaultNS()
			return nil
		}
		prefix := s.prefix()
		var ok bool
		if s.nsRef, ok = s.lookup(prefix); !ok || string(prefix) == "xmlns" {
			return s.fail(s.tagStart, "undeclared namespace prefix %s in <%s>", prefix, s.rawName())
		}
		return nil
	}
	qualified := 0
	for k := range s.attrs {
		a := &s.attrs[k]
		prefix := s.attrPrefix(a)
		isDefault := a.colon < 0 && string(s.at(a.name)) == "xmlns"
		if !isDefault && string(prefix) != "xmlns" {
			if a.colon >= 0 {
				qualified++
			}
			continue
		}
		binding := nsBinding{prefix: span{-1, -1}, uri: a.value, ext: -1}
		uri := s.at(a.value)
		if a.hasRef {
			uri = unescape(uri)
			binding.ext = int32(len(s.ext))
			s.ext = append(s.ext, uri)
		}
		if !isDefault {
			declared := s.attrLocal(a)
			binding.prefix = span{a.colon + 1, a.name.end}
			switch {
			case string(declared) == "xmlns":
				return s.fail(s.tagStart, "the prefix xmlns cannot be declared")
			case len(uri) == 0:
				return s.fail(s.tagStart, "prefix %s cannot be undeclared (xmlns:%s=\"\")", declared, declared)
			case string(declared) == "xml" && !bytes.Equal(uri, nsXMLBytes):
				return s.fail(s.tagStart, "the prefix xml cannot be bound to another namespace")
			case string(declared) == "xml":
				// A redundant declaration of xml: nothing to bind.
				continue
			}
		}
		if bytes.Equal(uri, nsXMLBytes) || bytes.Equal(uri, nsXMLNSBytes) {
			return s.fail(s.tagStart, "the reserved namespace %s cannot be bound to another prefix", uri)
		}
		s.ns = append(s.ns, binding)
	}
	// The mark to restore when the element ends.
	s.popTo = mark

	prefix := s.prefix()
	if string(prefix) == "xmlns" {
		return s.fail(s.tagStart, "an element cannot use the prefix xmlns")
	}
	var ok bool
	if s.nsRef, ok = s.lookup(prefix); !ok {
		return s.fail(s.tagStart, "undeclared namespace prefix %s in <%s>", prefix, s.rawName())
	}
	if qualified == 0 {
		if len(s.attrs) == 1 {
			return nil
		}
		return s.uniqueRawNames()
	}
	for k := range s.attrs {
		a := &s.attrs[k]
		p := s.attrPrefix(a)
		if p == nil || string(p) == "xmlns" {
			continue
		}
		if a.nsRef, ok = s.lookup(p); !ok {
			return s.fail(s.tagStart, "undeclared namespace prefix %s in attribute %s of <%s>", p, s.at(a.name), s.rawName())
		}
	}
	return s.uniqueAttributes()
}

// uniqueRawNames refuses two attributes with the same name (none is
// prefixed, but for namespace declarations).
func (s *scanner) uniqueRawNames() error {
	as := s.attrs
	if len(as) > 32 {
		return s.uniqueAttributes()
	}
	for i := 1; i < len(as); i++ {
		for j := 0; j < i; j++ {
			if bytes.Equal(s.at(as[i].name), s.at(as[j].name)) {
				return s.fail(s.tagStart, "attribute %s given twice in <%s>", s.at(as[i].name), s.rawName())
			}
		}
	}
	return nil
}

// uniqueAttributes refuses two attributes with the same raw name, or with
// the same local name in the same namespace.
func (s *scanner) uniqueAttributes() error {
	as := s.attrs
	if len(as) <= 32 {
		for i := 1; i < len(as); i++ {
			for j := 0; j < i; j++ {
				if s.sameAttr(&as[i], &as[j]) {
					return s.fail(s.tagStart, "attribute %s given twice in <%s>", s.at(as[i].name), s.rawName())
				}
			}
		}
		return nil
	}
	// Many attributes: a map keeps this linear.
	seen := make(map[string]struct{}, len(as))
	for i := range as {
		a := &as[i]
		key := string(s.at(a.name))
		if p := s.attrPrefix(a); p != nil && string(p) != "xmlns" {
			key = "{" + string(s.uri(a.nsRef)) + "}" + string(s.attrLocal(a))
		}
		if _, dup := seen[key]; dup {
			return s.fail(s.tagStart, "attribute %s given twice in <%s>", s.at(a.name), s.rawName())
		}
		seen[key] = struct{}{}
	}
	return nil
}

func (s *scanner) sameAttr(a, b *scanAttr) bool {
	if bytes.Equal(s.at(a.name), s.at(b.name)) {
		return true
	}
	pa, pb := s.attrPrefix(a), s.attrPrefix(b)
	qa := pa != nil && string(pa) != "xmlns"
	qb := pb != nil && string(pb) != "xmlns"
	return qa && qb && bytes.Equal(s.attrLocal(a), s.attrLocal(b)) && bytes.Equal(s.uri(a.nsRef), s.uri(b.nsRef))
}

// lookup resolves a prefix (nil: the default namespace) to a nsRef.
func (s *scanner) lookup(prefix []byte) (int32, bool) {
	for i := len(s.ns) - 1; i >= 0; i-- {
		p := s.ns[i].prefix
		if p.start < 0 {
			if prefix == nil {
				return s.defaultRef(int32(i)), true
			}
			continue
		}
		if prefix != nil && bytes.Equal(s.at(p), prefix) {
			return int32(i), true
		}
	}
	switch {
	case prefix == nil:
		return nsNone, true
	case string(prefix) == "xml":
		return nsXML, true
	}
	return 0, false
}

// defaultNS is the default namespace in scope (a nsRef).
func (s *scanner) defaultNS() int32 {
	for i := len(s.ns) - 1; i >= 0; i-- {
		if s.ns[i].prefix.start < 0 {
			return s.defaultRef(int32(i))
		}
	}
	return nsNone
}

// defaultRef is binding i of the default namespace, or nsNone when it
// undeclares it (xmlns="").
func (s *scanner) defaultRef(i int32) int32 {
	if len(s.uri(i)) == 0 {
		return nsNone
	}
	return i
}

func (s *scanner) endTag() error {
	b := s.b
	s.tagStart = s.pos
	i := s.pos + 2
	if len(s.open) == 0 {
		return s.fail(s.pos, "end tag without a start tag")
	}
	top := s.open[len(s.open)-1]
	// The name must be the open element's, byte for byte, followed by
	// white space or '>': no need to scan it as a name again.
	open := s.at(top.name)
	n := i + len(open)
	if n > len(b) || !bytes.Equal(b[i:n], open) || n < len(b) && b[n] != '>' && !isSpace(b[n]) {
		end, err := s.scanName(i)
		if err != nil {
			return err
		}
		return s.fail(s.pos, "end tag </%s> does not match <%s>", b[i:end], open)
	}
	for n < len(b) && isSpace(b[n]) {
		n++
	}
	if n >= len(b) || b[n] != '>' {
		return s.fail(n, "'>' expected to end </%s", open)
	}
	s.open = s.open[:len(s.open)-1]
	s.popTo = int(top.nsMark)
	if len(s.open) == 0 {
		s.rootClosed = true
	}
	s.name = top.name
	s.kind, s.tagEnd, s.pos = tokEnd, n+1, n+1
	return nil
}

// unescape decodes the references of an attribute value already checked
// by the scanner.
func unescape(v []byte) []byte {
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); {
		if v[i] != '&' {
			out = append(out, v[i])
			i++
			continue
		}
		end := bytes.IndexByte(v[i:], ';') + i
		ref := v[i+1 : end]
		switch string(ref) {
		case "amp":
			out = append(out, '&')
		case "lt":
			out = append(out, '<')
		case "gt":
			out = append(out, '>')
		case "apos":
			out = append(out, '\'')
		case "quot":
			out = append(out, '"')
		default:
			var n uint64
			if ref[1] == 'x' {
				n, _ = strconv.ParseUint(string(ref[2:]), 16, 32)
			} else {
				n, _ = strconv.ParseUint(string(ref[1:]), 10, 32)
			}
			out = utf8.AppendRune(out, rune(n))
		}
		i = end + 1
	}
	return out
}
