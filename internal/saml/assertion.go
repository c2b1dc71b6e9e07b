package saml

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"sort"
	"strings"
	"time"

	"github.com/beevik/etree"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// Namespaces.
const (
	NSAssertion = "urn:oasis:names:tc:SAML:2.0:assertion"
	NSXSI       = "http://www.w3.org/2001/XMLSchema-instance"
	NSHL7       = "urn:hl7-org:v3"
	NSDSig      = "http://www.w3.org/2000/09/xmldsig#"
	NSWSSE      = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"

	formatX509Subject = "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"
	formatUnspecified = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
	// purposeOfUseCodeSystem is the DMP's code system for purposes of use.
	purposeOfUseCodeSystem = "1.2.250.1.213.1.1.4.248"
)

// VIHF attribute names (DOMAIN.md, "The VIHF").
const (
	AttrVIHFVersion     = "VIHF_Version"
	AttrAuthMode        = "Authentification_Mode"
	AttrStructureID     = "Identifiant_Structure"
	AttrActivitySector  = "Secteur_Activite"
	AttrSubjectID       = "urn:oasis:names:tc:xspa:1.0:subject:subject-id"
	AttrRole            = "urn:oasis:names:tc:xacml:2.0:subject:role"
	AttrPurposeOfUse    = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
	AttrResourceID      = "urn:oasis:names:tc:xacml:2.0:resource:resource-id"
	AttrResourceURN     = "Ressource_URN"
	AttrLPSName         = "LPS_Nom"
	AttrLPSVersion      = "LPS_Version"
	AttrLPSID           = "LPS_ID"
	AttrLPSHomologation = "LPS_ID_HOMOLOGATION_DMP"
	AttrConfidentiality = "Confidentiality_Code"
)

// Profile is a route's token, with its constants resolved.
type Profile struct {
	Kind        string // roc or vihf
	Issuer      string // the signer's DN, formatted
	StructureID string
	NameID      string // roc
	Config      *config.Token
}

// NewProfile resolves a route's token configuration against the signing
// certificate: Issuer from its subject, structure identifier from its OU.
func NewProfile(t *config.Token, signer *x509.Certificate) *Profile {
	p := &Profile{Kind: t.Profile, Config: t, StructureID: t.StructureID, NameID: t.NameID}
	if t.IssuerFormat == "x500" {
		p.Issuer = x500DN(signer.RawSubject)
	} else {
		p.Issuer = trust.SubjectDN(signer)
	}
	if p.StructureID == "" && len(signer.Subject.OrganizationalUnit) > 0 {
		p.StructureID = signer.Subject.OrganizationalUnit[0]
	}
	if p.NameID == "" {
		p.NameID = p.StructureID
	}
	return p
}

// x500DN writes a DN in encoding order, "C=FR, ST=..., CN=...", as some
// public VIHF samples do.
func x500DN(raw []byte) string {
	var seq pkix.RDNSequence
	if _, err := asn1.Unmarshal(raw, &seq); err != nil {
		return ""
	}
	parts := make([]string, 0, len(seq))
	for _, rdn := range seq {
		parts = append(parts, pkix.RDNSequence{rdn}.String())
	}
	return strings.Join(parts, ", ")
}

// newID is an xs:ID: "_" and 128 random bits.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return "_" + hex.EncodeToString(b[:])
}

// build makes the unsigned assertion. extraNS are the declarations of the
// PrefixList's namespaces ("" for the default, "ds") in scope where it will
// be inserted: exclusive c14n renders them on the Assertion even unused, so
// they must be the same when it is signed standalone and verified in place.
// "ds" is repeated on the Assertion; a default namespace is undeclared
// (xmlns=""), which keeps it out of the canonical form in both places
// (goxmldsig does not honour "#default", xmlsec1 does).
func (p *Profile) build(v *Values, now time.Time, extraNS map[string]string) *etree.Element {
	const t = "2006-01-02T15:04:05Z"
	a := etree.NewElement("saml:Assertion")
	a.CreateAttr("xmlns:saml", NSAssertion)
	a.CreateAttr("xmlns:xsi", NSXSI)
	if extraNS[""] != "" {
		a.CreateAttr("xmlns", "")
	}
	if ds := extraNS["ds"]; ds != "" {
		a.CreateAttr("xmlns:ds", ds)
	}
	a.CreateAttr("ID", newID())
	a.CreateAttr("IssueInstant", now.UTC().Format(t))
	a.CreateAttr("Version", "2.0")
	iss := a.CreateElement("saml:Issuer")
	iss.CreateAttr("Format", formatX509Subject)
	iss.SetText(p.Issuer)

	subj := a.CreateElement("saml:Subject").CreateElement("saml:NameID")
	subj.CreateAttr("Format", formatUnspecified)
	authn := p.Config.AuthnContext
	if p.Kind == "vihf" {
		subj.SetText(v.UserID)
		if v.AuthnContext != "" {
			authn = v.AuthnContext
		}
	} else {
		subj.SetText(p.NameID)
	}
	cond := a.CreateElement("saml:Conditions")
	cond.CreateAttr("NotBefore", now.UTC().Format(t))
	cond.CreateAttr("NotOnOrAfter", now.Add(p.Config.Validity).UTC().Format(t))

	st := a.CreateElement("saml:AuthnStatement")
	st.CreateAttr("AuthnInstant", now.UTC().Format(t))
	st.CreateElement("saml:AuthnContext").CreateElement("saml:AuthnContextClassRef").SetText(authn)

	attrs := a.CreateElement("saml:AttributeStatement")
	text := func(name, value string) {
		at := attrs.CreateElement("saml:Attribute")
		at.CreateAttr("Name", name)
		at.CreateElement("saml:AttributeValue").SetText(value)
	}
	coded := func(name, tag, code, system, display string) {
		at := attrs.CreateElement("saml:Attribute")
		at.CreateAttr("Name", name)
		el := at.CreateElement("saml:AttributeValue").CreateElement(tag)
		el.CreateAttr("xmlns", NSHL7)
		el.CreateAttr("xsi:type", "CE")
		el.CreateAttr("code", code)
		el.CreateAttr("codeSystem", system)
		if display != "" {
			el.CreateAttr("displayName", display)
		}
	}
	if p.Kind == "roc" {
		text(AttrStructureID, p.StructureID)
		for _, name := range sortedKeys(p.Config.Attributes) {
			text(name, p.Config.Attributes[name])
		}
		return a
	}
	c := p.Config.VIHF
	text(AttrVIHFVersion, c.Version)
	text(AttrAuthMode, "INDIRECTE")
	text(AttrStructureID, p.StructureID)
	text(AttrActivitySector, c.ActivitySector)
	text(AttrSubjectID, v.UserName)
	for _, r := range v.Roles {
		coded(AttrRole, "Role", r.Code, r.CodeSystem, r.DisplayName)
	}
	purpose := c.PurposeOfUse
	if v.PurposeOfUse != "" {
		purpose = v.PurposeOfUse
	}
	coded(AttrPurposeOfUse, "PurposeOfUse", purpose, purposeOfUseCodeSystem, "")
	text(AttrResourceID, v.PatientINS+"^^^&"+c.INSOID+"&ISO^NH")
	text(AttrResourceURN, c.ResourceURN)
	text(AttrLPSName, c.SoftwareName)
	text(AttrLPSVersion, c.SoftwareVersion)
	if c.SoftwareID != "" {
		text(AttrLPSID, c.SoftwareID)
	}
	if c.HomologationID != "" {
		text(AttrLPSHomologation, c.HomologationID)
	}
	if v.Confidentiality != "" {
		coded(AttrConfidentiality, "ConfidentialityCode", v.Confidentiality, c.ConfidentialityCS, "")
	}
	return a
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
