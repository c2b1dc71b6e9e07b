package sim

import (
	"io"
	"net/http"
	"strings"

	"github.com/beevik/etree"
)

// SOAP namespaces.
const (
	NSSOAP11    = "http://schemas.xmlsoap.org/soap/envelope/"
	NSSOAP12    = "http://www.w3.org/2003/05/soap-envelope"
	NSAnnuaire  = "https://ws.annuaireamc.fr/"
	NSSimIDB    = "urn:roc-proxy:sim:idb"
	maxSOAPBody = 1 << 20
)

// readEnvelope reads a SOAP 1.1 request and returns its Body's first child,
// or writes a SOAP fault and returns nil. When o requires a token, the
// envelope must carry a valid ROC token.
func readEnvelope(w http.ResponseWriter, r *http.Request, o Options) *etree.Element {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		fault(w, http.StatusMethodNotAllowed, "soap:Client", "POST expected")
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxSOAPBody))
	if err != nil {
		fault(w, http.StatusBadRequest, "soap:Client", "unreadable body")
		return nil
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(data); err != nil {
		fault(w, http.StatusBadRequest, "soap:Client", "body is not XML")
		return nil
	}
	if o.TokenRoots != nil {
		a, err := checkToken(data, o, nil)
		if err != nil {
			fault(w, http.StatusInternalServerError, "soap:Client", "jeton SAML refusé: "+err.Error())
			return nil
		}
		w.Header().Set(HeaderTokenSubject, a)
	}
	env := doc.Root()
	if env == nil || env.Tag != "Envelope" || env.NamespaceURI() != NSSOAP11 {
		fault(w, http.StatusBadRequest, "soap:Client", "not a SOAP 1.1 envelope")
		return nil
	}
	var body *etree.Element
	for _, c := range env.ChildElements() {
		if c.Tag == "Body" && c.NamespaceURI() == NSSOAP11 {
			body = c
		}
	}
	if body == nil || len(body.ChildElements()) == 0 {
		fault(w, http.StatusBadRequest, "soap:Client", "empty SOAP Body")
		return nil
	}
	return body.ChildElements()[0]
}

func text(e *etree.Element, path string) string {
	if f := e.FindElement(path); f != nil {
		return strings.TrimSpace(f.Text())
	}
	return ""
}

// envelope wraps payload in a SOAP 1.1 envelope.
func envelope() (*etree.Document, *etree.Element) {
	doc := etree.NewDocument()
	doc.CreateProcInst("xml", `version="1.0" encoding="UTF-8"`)
	env := doc.CreateElement("soap:Envelope")
	env.CreateAttr("xmlns:soap", NSSOAP11)
	return doc, env.CreateElement("soap:Body")
}

func writeSOAP(w http.ResponseWriter, status int, doc *etree.Document) {
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(status)
	_, _ = doc.WriteTo(w)
}

// fault writes a SOAP 1.1 fault.
func fault(w http.ResponseWriter, status int, code, msg string) {
	doc, body := envelope()
	f := body.CreateElement("soap:Fault")
	f.CreateElement("faultcode").SetText(code)
	f.CreateElement("faultstring").SetText(msg)
	writeSOAP(w, status, doc)
}
