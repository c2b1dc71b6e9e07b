package sim

import (
	"net/http"

	"github.com/beevik/etree"
)

// StartAMCService starts a simulated AMC web service answering IDB-style
// rights checks ("demandeDroits").
func StartAMCService(o Options) (*Server, error) {
	return start(o, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := readEnvelope(w, r, o)
		if op == nil {
			return
		}
		if op.Tag != "demandeDroits" || op.NamespaceURI() != NSSimIDB {
			fault(w, http.StatusInternalServerError, "soap:Client", "unknown operation "+op.Tag)
			return
		}
		member := text(op, "numero_adherent")
		if member == "" {
			fault(w, http.StatusInternalServerError, "soap:Client", "numero_adherent manquant")
			return
		}
		doc, body := envelope()
		resp := body.CreateElement("idb:reponseDroits")
		resp.CreateAttr("xmlns:idb", NSSimIDB)
		resp.CreateElement("numero_adherent").SetText(member)
		resp.CreateElement("droits_ouverts").SetText("true")
		resp.CreateElement("taux_prise_en_charge").SetText("100")
		writeSOAP(w, http.StatusOK, doc)
	}))
}

// IDBRequest is a SOAP 1.1 rights-check request for a member number.
func IDBRequest(numeroAMC, member string) []byte {
	doc := etree.NewDocument()
	doc.CreateProcInst("xml", `version="1.0" encoding="UTF-8"`)
	env := doc.CreateElement("S:Envelope")
	env.CreateAttr("xmlns:S", NSSOAP11)
	env.CreateElement("S:Header")
	op := env.CreateElement("S:Body").CreateElement("idb:demandeDroits")
	op.CreateAttr("xmlns:idb", NSSimIDB)
	op.CreateElement("numero_amc").SetText(numeroAMC)
	op.CreateElement("numero_adherent").SetText(member)
	op.CreateElement("date_soins").SetText("2026-11-23")
	b, _ := doc.WriteToBytes() // writing to memory cannot fail
	return b
}
