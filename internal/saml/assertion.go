package saml

import (
	"crypto/rand"
	"crypto/sha256"
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
	NSWSU       = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
	NSSAML1     = "urn:oasis:names:tc:SAML:1.0:assertion"

	formatX509Subject = "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"
	formatUnspecified = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
	// purposeOfUseCodeSystem is the DMP's code system for purposes of use.
	purposeOfUseCodeSystem = "1.2.250.1.213.1.1.4.248"
)

// VIHF attribute names (DOMAIN.md, "The VIHF"): the defaults, those of the
// public DRIMbox DMP client; token.attribute_names overrides them per route.
var (
	AttrVIHFVersion     = config.TokenAttributeKeys[config.ProfileVIHF]["vihf_version"]
	AttrAuthMode        = config.TokenAttributeKeys[config.ProfileVIHF]["authentication_mode"]
	AttrStructureID     = config.TokenAttributeKeys[config.ProfileVIHF]["structure_id"]
	AttrActivitySector  = config.TokenAttributeKeys[config.ProfileVIHF]["activity_sector"]
	AttrSubjectID       = config.TokenAttributeKeys[config.ProfileVIHF]["subject_id"]
	AttrRole            = config.TokenAttributeKeys[config.ProfileVIHF]["role"]
	AttrPurposeOfUse    = config.TokenAttributeKeys[config.ProfileVIHF]["purpose_of_use"]
	AttrResourceID      = config.TokenAttributeKeys[config.ProfileVIHF]["resource_id"]
	AttrResourceURN     = config.TokenAttributeKeys[config.ProfileVIHF]["resource_urn"]
	AttrLPSName         = config.TokenAttributeKeys[config.ProfileVIHF]["lps_name"]
	AttrLPSVersion      = config.TokenAttributeKeys[config.ProfileVIHF]["lps_version"]
	AttrLPSID           = config.TokenAttributeKeys[config.ProfileVIHF]["lps_id"]
	AttrLPSHomologation = config.TokenAttributeKeys[config.ProfileVIHF]["lps_homologation"]
	AttrConfidentiality = config.TokenAttributeKeys[config.ProfileVIHF]["confidentiality_code"]
)

// Profile is a route's token, with its constants resolved against a
// signing certificate.
type Profile struct {
	Kind        config.TokenProfile
	Issuer      string // the signer's DN, formatted
	StructureID string
	NameID      string // roc
	Config      *config.Token
	// Fingerprint of the signing certificate the values come from.
	Fingerprint [32]byte
	names       map[string]string // attribute key -> Name
	systemNames map[string]string // code system OID -> codeSystemName
}

// NewProfile resolves a route's token configuration against the signing
// certificate: Issuer from its subject, structure identifier from its OU
// (unless configured), attribute names and code system names from the
// defaults and the configuration.
func NewProfile(t *config.Token, signer *x509.Certificate) *Profile {
	p := &Profile{Kind: t.Profile, Config: t, StructureID: t.StructureID, NameID: t.NameID,
		Fingerprint: sha256.Sum256(signer.Raw), names: map[string]string{}, systemNames: map[string]string{}}
	if t.IssuerFormat == config.IssuerX500 {
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
	for k, v := range config.TokenAttributeKeys[t.Profile] {
		p.names[k] = v
	}
	for k, v := range t.AttributeNames {
		p.names[k] = v
	}
	for k, v := range config.DefaultCodeSystemNames {
		p.systemNames[k] = v
	}
	for k, v := range t.VIHF.CodeSystemNames {
		p.systemNames[k] = v
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

// validity is when an assertion may be used: IssueInstant and NotBefore
// to NotOnOrAfter, whole seconds as written.
type validity struct {
	issue, notBefore, notOnOrAfter time.Time
}

// window computes an assertion's validity from the signing time.
func (p *Profile) window(now time.Time) validity {
	issue := now.UTC().Truncate(time.Second)
	return validity{issue: issue, notBefore: issue.Add(-p.Config.NotBeforeSkew),
		notOnOrAfter: issue.Add(p.Config.Validity).Truncate(time.Second)}
}

// build makes the unsigned assertion. extraNS are the declarations of the
// PrefixList's namespaces (the default one, "ds") in scope where it will
// be inserted: exclusive c14n renders them on the Assertion even unused,
// so they must be the same when it is signed standalone and verified in
// place. "ds" is repeated on the Assertion; a default namespace is
// undeclared (xmlns=""), which keeps it out of the canonical form in both
// places (goxmldsig does not honour "#default", xmlsec1 does).
func (p *Profile) build(v *Values, w validity, defaultNS, dsNS string) *etree.Element {
	const t = "2006-01-02T15:04:05Z"
	a := etree.NewElement("saml:Assertion")
	a.CreateAttr("xmlns:saml", NSAssertion)
	a.CreateAttr("xmlns:xsi", NSXSI)
	if defaultNS != "" {
		a.CreateAttr("xmlns", "")
	}
	if dsNS != "" {
		a.CreateAttr("xmlns:ds", dsNS)
	}
	a.CreateAttr("ID", newID())
	a.CreateAttr("IssueInstant", w.issue.Format(t))
	a.CreateAttr("Version", "2.0")
	iss := a.CreateElement("saml:Issuer")
	iss.CreateAttr("Format", formatX509Subject)
	iss.SetText(p.Issuer)

	subj := a.CreateElement("saml:Subject").CreateElement("saml:NameID")
	subj.CreateAttr("Format", formatUnspecified)
	authn := p.Config.AuthnContext
	if p.Kind == config.ProfileVIHF {
		subj.SetText(v.UserID)
		if v.AuthnContext != "" {
			authn = v.AuthnContext
		}
	} else {
		subj.SetText(p.NameID)
	}
	cond := a.CreateElement("saml:Conditions")
	cond.CreateAttr("NotBefore", w.notBefore.Format(t))
	cond.CreateAttr("NotOnOrAfter", w.notOnOrAfter.Format(t))

	st := a.CreateElement("saml:AuthnStatement")
	st.CreateAttr("AuthnInstant", w.issue.Format(t))
	st.CreateElement("saml:AuthnContext").CreateElement("saml:AuthnContextClassRef").SetText(authn)

	attrs := a.CreateElement("saml:AttributeStatement")
	text := func(key, value string) {
		at := attrs.CreateElement("saml:Attribute")
		at.CreateAttr("Name", p.names[key])
		at.CreateElement("saml:AttributeValue").SetText(value)
	}
	// Coded values as the DRIMbox client writes them: an HL7 CE with
	// code, codeSystem, codeSystemName and displayName.
	coded := func(key, tag, code, system, display string) {
		at := attrs.CreateElement("saml:Attribute")
		at.CreateAttr("Name", p.names[key])
		el := at.CreateElement("saml:AttributeValue").CreateElement(tag)
		el.CreateAttr("xmlns", NSHL7)
		el.CreateAttr("xsi:type", "CE")
		el.CreateAttr("code", code)
		el.CreateAttr("codeSystem", system)
		if name := p.systemNames[system]; name != "" {
			el.CreateAttr("codeSystemName", name)
		}
		if display != "" {
			el.CreateAttr("displayName", display)
		}
	}
	if p.Kind == config.ProfileROC {
		text("structure_id", p.StructureID)
		for _, name := range sortedKeys(p.Config.Attributes) {
			at := attrs.CreateElement("saml:Attribute")
			at.CreateAttr("Name", name)
			at.CreateElement("saml:AttributeValue").SetText(p.Config.Attributes[name])
		}
		return a
	}
	c := p.Config.VIHF
	text("vihf_version", c.Version)
	text("authentication_mode", "INDIRECTE")
	text("structure_id", p.StructureID)
	text("activity_sector", c.ActivitySector)
	text("subject_id", v.UserName)
	for _, r := range v.Roles {
		coded("role", "Role", r.Code, r.CodeSystem, r.DisplayName)
	}
	purpose := c.PurposeOfUse
	if v.PurposeOfUse != "" {
		purpose = v.PurposeOfUse
	}
	coded("purpose_of_use", "PurposeOfUse", purpose, purposeOfUseCodeSystem, "")
	text("resource_id", v.PatientINS+"^^^&"+c.INSOID+"&ISO^NH")
	text("resource_urn", c.ResourceURN)
	text("lps_name", c.SoftwareName)
	text("lps_version", c.SoftwareVersion)
	if c.SoftwareID != "" {
		text("lps_id", c.SoftwareID)
	}
	if c.HomologationID != "" {
		text("lps_homologation", c.HomologationID)
	}
	if v.Confidentiality != "" {
		coded("confidentiality_code", "ConfidentialityCode", v.Confidentiality, c.ConfidentialityCS, "")
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
