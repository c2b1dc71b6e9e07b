package testpki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net"
	"strings"
	"sync"
)

// Service names the certificate authority's portal gives the two ROC
// certificates (DOMAIN.md, "The two software certificates").
const (
	AuthCliCN = "Client_ROC_Annuaire_AMC"
	SignCN    = "Client_ROC_WebServices_AMC"
	// IDNatStruct is the structure identifier of the simulated hospital:
	// prefix 1 (FINESS) + a 9-character FINESS number.
	IDNatStruct = "1990000019"
	// Organization is the simulated hospital's legal name.
	Organization = "CENTRE HOSPITALIER DE DEMONSTRATION"
)

// Options shape a whole hierarchy.
type Options struct {
	// RevocationBaseURL, when set, is where the simulated CRL server and
	// OCSP responder listen (e.g. "http://127.0.0.1:8888"); certificates then
	// point at <base>/crl/<ca>.crl and <base>/ocsp.
	RevocationBaseURL string
	// ServerNames are the DNS names of the simulated AMC servers issued by
	// AC-SERVEUR; each gets its own certificate in PKI.Servers.
	ServerNames []string
	// DeltaCRL adds a Freshest CRL pointer (<base>/crl/<ca>-delta.crl) to
	// the leaves, as real IGC-Santé leaves carry (theirs is LDAP).
	DeltaCRL bool
}

// DeltaCRLURL is where the simulated CRL server publishes the delta CRL of
// the CA with the given short name, when Options.DeltaCRL is set.
func (o Options) DeltaCRLURL(ca string) string {
	if o.RevocationBaseURL == "" || !o.DeltaCRL {
		return ""
	}
	return strings.TrimSuffix(o.RevocationBaseURL, "/") + "/crl/" + ca + "-delta.crl"
}

// PKI is an IGC-Santé-like hierarchy for the establishment and an IGC
// OSI-like one for the AMC side, plus an unrelated "rogue" authority whose
// certificates no route trusts.
type PKI struct {
	SanteRoot *Cert // TEST AC RACINE IGC-SANTE ELEMENTAIRE
	SanteOrg  *Cert // TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS
	AuthCli   *Cert // ORG_AUTH_CLI, CN=Client_ROC_Annuaire_AMC
	Sign      *Cert // ORG_SIGN (cachet), CN=Client_ROC_WebServices_AMC

	OSIRoot                *Cert // IGC OSI root
	OSIServeur             *Cert // AC-SERVEUR: AMC TLS servers
	OSIServicesApplicatifs *Cert // AC-SERVICES-APPLICATIFS: AMC signatures

	// Servers maps each of Options.ServerNames to a serverAuth certificate
	// issued by AC-SERVEUR.
	Servers map[string]*Cert

	RogueRoot *Cert // trusted by nobody
}

// dn builds a distinguished name one attribute per RDN, in DER order (C
// first), as IGC-Santé certificates are: pkix.Name's fields would put two OUs
// into a single multi-valued RDN.
func dn(attrs ...any) pkix.Name {
	var n pkix.Name
	for i := 0; i+1 < len(attrs); i += 2 {
		n.ExtraNames = append(n.ExtraNames, pkix.AttributeTypeAndValue{Type: attrs[i].(asn1.ObjectIdentifier), Value: attrs[i+1]})
	}
	return n
}

var (
	oidC  = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidST = asn1.ObjectIdentifier{2, 5, 4, 8}
	oidO  = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidOU = asn1.ObjectIdentifier{2, 5, 4, 11}
	oidCN = asn1.ObjectIdentifier{2, 5, 4, 3}
)

func santeName(cn string) pkix.Name {
	return dn(oidC, "FR", oidO, "ROC-PROXY TEST PKI", oidOU, "0002 187512751", oidOU, "IGC-SANTE TEST", oidCN, cn)
}

func osiName(cn string) pkix.Name {
	return dn(oidC, "FR", oidO, "GIE SESAM-VITALE (ROC-PROXY TEST PKI)", oidOU, "IGC OSI TEST", oidCN, cn)
}

// OrgName is the subject of an establishment's ORG certificate: the OU holds
// idNat_Struct, as in real IGC-Santé leaves.
func OrgName(cn string) pkix.Name {
	return dn(oidC, "FR", oidST, "Côte-d'Or (21)", oidO, Organization, oidOU, IDNatStruct, oidCN, cn)
}

// CRLURL is where the simulated CRL server publishes the CRL of the CA with
// the given short name (e.g. "aci-el-org").
func (o Options) CRLURL(ca string) string {
	if o.RevocationBaseURL == "" {
		return ""
	}
	return strings.TrimSuffix(o.RevocationBaseURL, "/") + "/crl/" + ca + ".crl"
}

// OCSPURL is where the simulated OCSP responder listens.
func (o Options) OCSPURL() string {
	if o.RevocationBaseURL == "" {
		return ""
	}
	return strings.TrimSuffix(o.RevocationBaseURL, "/") + "/ocsp"
}

// New generates the whole hierarchy. It takes about a second (RSA-2048 key
// generation): generate once per test binary and share it read-only.
func New(o Options) (*PKI, error) {
	p := &PKI{Servers: map[string]*Cert{}}
	var err error
	step := func(dst **Cert, parent *Cert, t Template) {
		if err != nil {
			return
		}
		if parent == nil {
			*dst, err = NewRoot(t)
		} else {
			*dst, err = parent.Issue(t)
		}
	}
	step(&p.SanteRoot, nil, Template{Subject: santeName("TEST AC RACINE IGC-SANTE ELEMENTAIRE")})
	step(&p.SanteOrg, p.SanteRoot, Template{Subject: santeName("TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS"), IsCA: true, PathLenZero: true,
		CRLURL: o.CRLURL("acr-el"), OCSPURL: o.OCSPURL()})
	step(&p.AuthCli, p.SanteOrg, Template{Subject: OrgName(AuthCliCN),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		CRLURL:      o.CRLURL("aci-el-org"), OCSPURL: o.OCSPURL(), DeltaCRLURL: o.DeltaCRLURL("aci-el-org")})
	step(&p.Sign, p.SanteOrg, Template{Subject: OrgName(SignCN),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		CRLURL:      o.CRLURL("aci-el-org"), OCSPURL: o.OCSPURL(), DeltaCRLURL: o.DeltaCRLURL("aci-el-org")})

	step(&p.OSIRoot, nil, Template{Subject: osiName("TEST AC RACINE IGC OSI")})
	step(&p.OSIServeur, p.OSIRoot, Template{Subject: osiName("TEST AC-SERVEUR"), IsCA: true,
		CRLURL: o.CRLURL("osi-root"), OCSPURL: o.OCSPURL()})
	step(&p.OSIServicesApplicatifs, p.OSIRoot, Template{Subject: osiName("TEST AC-SERVICES-APPLICATIFS"), IsCA: true,
		CRLURL: o.CRLURL("osi-root"), OCSPURL: o.OCSPURL()})
	step(&p.RogueRoot, nil, Template{Subject: pkix.Name{CommonName: "ROGUE AC SERVEUR", Organization: []string{"NOT A HEALTH PKI"}}})
	if err != nil {
		return nil, err
	}
	for _, name := range o.ServerNames {
		srv, err := p.IssueServer(p.OSIServeur, name, o)
		if err != nil {
			return nil, err
		}
		p.Servers[name] = srv
	}
	return p, nil
}

// IssueServer issues an AMC-style TLS server certificate for name (a DNS
// name or an IP literal) from ca, an AC-SERVEUR.
func (p *PKI) IssueServer(ca *Cert, name string, o Options) (*Cert, error) {
	return p.IssueServerFor(ca, "ac-serveur", name, o)
}

// IssueServerFor is IssueServer from a CA whose revocation status is
// published under caName (e.g. "aci-el-org" for IGC-Santé servers).
func (p *PKI) IssueServerFor(ca *Cert, caName, name string, o Options) (*Cert, error) {
	t := Template{
		Subject:     pkix.Name{CommonName: name, Organization: []string{"AMC SIMULEE"}, Country: []string{"FR"}},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		CRLURL:      o.CRLURL(caName),
		OCSPURL:     o.OCSPURL(),
		DeltaCRLURL: o.DeltaCRLURL(caName),
	}
	if ip := net.ParseIP(name); ip != nil {
		t.IPAddresses = []net.IP{ip}
	} else {
		t.DNSNames = []string{name}
	}
	c, err := ca.Issue(t)
	if err != nil {
		return nil, fmt.Errorf("testpki: server %q: %w", name, err)
	}
	return c, nil
}

// IssueAnswerSigner issues the certificate an AMC signs its answers with,
// from ca (AC-SERVICES-APPLICATIFS, whose revocation status is published
// under caName): digitalSignature and nonRepudiation, no extended key
// usage. The IGC OSI's signing profile is not public; IGC-Santé's signing
// leaves (ORG_SIGN) add emailProtection, which tests add where they need
// it.
func (p *PKI) IssueAnswerSigner(ca *Cert, caName, cn string, o Options) (*Cert, error) {
	c, err := ca.Issue(Template{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"AMC SIMULEE"}, Country: []string{"FR"}},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		CRLURL:      o.CRLURL(caName),
		OCSPURL:     o.OCSPURL(),
		DeltaCRLURL: o.DeltaCRLURL(caName),
	})
	if err != nil {
		return nil, fmt.Errorf("testpki: answer signer %q: %w", cn, err)
	}
	return c, nil
}

// Names of the simulated AMC servers in the Shared hierarchy.
const (
	AnnuaireHost = "annuaire.amc.test"
	IDBHost      = "idb.amc.test"
)

// Shared returns one hierarchy per process, generated on first use, with
// server certificates for AnnuaireHost and IDBHost. Tests share it read-only:
// RSA key generation is slow, more so under the race detector.
var Shared = sync.OnceValues(func() (*PKI, error) {
	return New(Options{ServerNames: []string{AnnuaireHost, IDBHost}})
})

// TB is the part of testing.TB that MustShared uses. Declared here so that
// this package, which the demo links, does not pull the testing package
// into the production binary.
type TB interface {
	Helper()
	Fatal(args ...any)
}

// MustShared is Shared for tests: it fails tb when generation fails.
func MustShared(tb TB) *PKI {
	tb.Helper()
	p, err := Shared()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
