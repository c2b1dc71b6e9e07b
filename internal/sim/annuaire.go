package sim

import (
	"net/http"
	"sort"

	"github.com/beevik/etree"
)

// Address is one service address of an AMC, as the directory returns it.
type Address struct {
	CodeService string // e.g. IDB, CLC
	URL         string
}

// StartAnnuaire starts the AMC directory: numero_amc -> service addresses.
func StartAnnuaire(o Options, directory map[string][]Address) (*Server, error) {
	return start(o, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := readEnvelope(w, r, o)
		if op == nil {
			return
		}
		if op.Tag != "search" || op.NamespaceURI() != NSAnnuaire {
			fault(w, http.StatusInternalServerError, "soap:Client", "unknown operation "+op.Tag)
			return
		}
		amc := text(op, "paramsObj/adressage/numero_amc")
		service := text(op, "paramsObj/adressage/code_service")
		addrs, ok := directory[amc]
		if amc == "" || !ok {
			fault(w, http.StatusInternalServerError, "soap:Client", "AMC inconnue: "+amc)
			return
		}
		doc, body := envelope()
		resp := body.CreateElement("ns:searchResponse")
		resp.CreateAttr("xmlns:ns", NSAnnuaire)
		ret := resp.CreateElement("return")
		ret.CreateElement("statut").SetText("OK")
		ret.CreateElement("numero_amc").SetText(amc)
		list := ret.CreateElement("adresses")
		sorted := append([]Address(nil), addrs...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i].CodeService < sorted[j].CodeService })
		for _, a := range sorted {
			if service != "" && a.CodeService != service {
				continue
			}
			item := list.CreateElement("item")
			item.CreateElement("code_service").SetText(a.CodeService)
			item.CreateElement("url").SetText(a.URL)
		}
		writeSOAP(w, http.StatusOK, doc)
	}))
}

// AnnuaireSearchRequest is a SOAP 1.1 "search" request for an AMC number
// and service code, shaped like the public city-practice sample.
func AnnuaireSearchRequest(numeroAMC, codeService string) []byte {
	doc := etree.NewDocument()
	doc.CreateProcInst("xml", `version="1.0" encoding="UTF-8"`)
	env := doc.CreateElement("soapenv:Envelope")
	env.CreateAttr("xmlns:soapenv", NSSOAP11)
	env.CreateAttr("xmlns:ws", NSAnnuaire)
	env.CreateElement("soapenv:Header")
	params := env.CreateElement("soapenv:Body").CreateElement("ws:search").CreateElement("paramsObj")
	req := params.CreateElement("requete")
	req.CreateElement("version").SetText("1")
	req.CreateElement("date_demande").SetText("2026-11-23T09:00:00")
	req.CreateElement("editeur").SetText("EDITEUR SIH")
	req.CreateElement("logiciel").SetText("SIH DEMO")
	req.CreateElement("version_logiciel").SetText("1.0")
	adr := params.CreateElement("adressage")
	adr.CreateElement("numero_amc").SetText(numeroAMC)
	adr.CreateElement("code_type_convention").SetText("RO")
	adr.CreateElement("code_csr").SetText("01")
	adr.CreateElement("domaine_conventionnel").SetText("HOSP")
	adr.CreateElement("code_service").SetText(codeService)
	adr.CreateElement("code_norme_service").SetText("ROC")
	adr.CreateElement("version_norme_service").SetText("1")
	params.CreateElement("typage").CreateElement("type_adresse").CreateElement("item").SetText("URL")
	b, _ := doc.WriteToBytes() // writing to memory cannot fail
	return b
}
