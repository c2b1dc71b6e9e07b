package sim

import (
	"io"
	"net/http"

	"github.com/beevik/etree"

	"github.com/roc-proxy/roc-proxy/internal/saml"
)

// VIHFRequired are the VIHF attributes the simulated DMP requires.
var VIHFRequired = []string{saml.AttrVIHFVersion, saml.AttrAuthMode, saml.AttrStructureID, saml.AttrActivitySector,
	saml.AttrSubjectID, saml.AttrRole, saml.AttrPurposeOfUse, saml.AttrResourceID, saml.AttrResourceURN,
	saml.AttrLPSName, saml.AttrLPSVersion}

// StartDMP starts a simulated DMP endpoint: SOAP 1.2, a VIHF in indirect
// mode required in the WS-Security header (Options.TokenRoots must be set).
func StartDMP(o Options) (*Server, error) {
	return start(o, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(io.LimitReader(r.Body, maxSOAPBody))
		if err != nil || r.Method != http.MethodPost {
			fault12(w, "soap:Sender", "POST d'une enveloppe SOAP 1.2 attendu")
			return
		}
		doc := etree.NewDocument()
		if err := doc.ReadFromBytes(data); err != nil || doc.Root() == nil || doc.Root().NamespaceURI() != NSSOAP12 {
			fault12(w, "soap:Sender", "enveloppe SOAP 1.2 attendue")
			return
		}
		nameID, err := checkToken(data, o, VIHFRequired)
		if err != nil {
			fault12(w, "soap:Sender", "VIHF refusé: "+err.Error())
			return
		}
		if mode := authMode(doc); mode != "INDIRECTE" {
			fault12(w, "soap:Sender", "mode d'authentification "+mode+" refusé")
			return
		}
		w.Header().Set(HeaderTokenSubject, nameID)
		out := etree.NewDocument()
		env := out.CreateElement("soap:Envelope")
		env.CreateAttr("xmlns:soap", NSSOAP12)
		rr := env.CreateElement("soap:Body").CreateElement("rs:RegistryResponse")
		rr.CreateAttr("xmlns:rs", "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0")
		rr.CreateAttr("status", "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success")
		w.Header().Set("Content-Type", "application/soap+xml; charset=utf-8")
		_, _ = out.WriteTo(w)
	}))
}

func authMode(doc *etree.Document) string {
	for _, at := range doc.FindElements("//Assertion/AttributeStatement/Attribute") {
		if at.SelectAttrValue("Name", "") == saml.AttrAuthMode {
			if v := at.FindElement("AttributeValue"); v != nil {
				return v.Text()
			}
		}
	}
	return ""
}

// fault12 writes a SOAP 1.2 fault.
func fault12(w http.ResponseWriter, code, reason string) {
	doc := etree.NewDocument()
	env := doc.CreateElement("soap:Envelope")
	env.CreateAttr("xmlns:soap", NSSOAP12)
	f := env.CreateElement("soap:Body").CreateElement("soap:Fault")
	f.CreateElement("soap:Code").CreateElement("soap:Value").SetText(code)
	t := f.CreateElement("soap:Reason").CreateElement("soap:Text")
	t.CreateAttr("xml:lang", "fr")
	t.SetText(reason)
	w.Header().Set("Content-Type", "application/soap+xml; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = doc.WriteTo(w)
}

// DMPRequest is a SOAP 1.2 ProvideAndRegister-style request with
// WS-Addressing, as a SIH sends it to the proxy.
func DMPRequest() []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing">
  <soap:Header>
    <wsa:MessageID>urn:uuid:7b0e1c2a-4f3d-4a8e-9b1c-2d3e4f5a6b7c</wsa:MessageID>
    <wsa:To>https://dmp.sim.test/si-dmp-server/v2/services</wsa:To>
    <wsa:Action soap:mustUnderstand="true">urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b</wsa:Action>
  </soap:Header>
  <soap:Body>
    <xdsb:ProvideAndRegisterDocumentSetRequest xmlns:xdsb="urn:ihe:iti:xds-b:2007">
      <xdsb:Document id="doc1">PD94bWwgdmVyc2lvbj0iMS4wIj8+</xdsb:Document>
    </xdsb:ProvideAndRegisterDocumentSetRequest>
  </soap:Body>
</soap:Envelope>
`)
}
