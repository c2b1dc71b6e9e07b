package testpki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"slices"
	"testing"
)

// The generated certificates must carry the profiles of real IGC-Santé
// ORG certificates (see ../../testdata/reference-pki).
func TestProfiles(t *testing.T) {
	p, err := Shared()
	if err != nil {
		t.Fatal(err)
	}
	if p.Sign.Cert.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment ||
		!slices.Equal(p.Sign.Cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}) {
		t.Errorf("ORG_SIGN usages: %v %v", p.Sign.Cert.KeyUsage, p.Sign.Cert.ExtKeyUsage)
	}
	if !slices.Equal(p.AuthCli.Cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ORG_AUTH_CLI usages: %v", p.AuthCli.Cert.ExtKeyUsage)
	}
	if p.AuthCli.Cert.Subject.CommonName != AuthCliCN || p.Sign.Cert.Subject.CommonName != SignCN {
		t.Errorf("service names: %q %q", p.AuthCli.Cert.Subject.CommonName, p.Sign.Cert.Subject.CommonName)
	}
	if ou := p.Sign.Cert.Subject.OrganizationalUnit; len(ou) != 1 || ou[0] != IDNatStruct {
		t.Errorf("OU %v, want idNat_Struct %s", ou, IDNatStruct)
	}
	// Two OUs in two RDNs (C, O, OU, OU, CN), as in the real ACI-EL-ORG,
	// not one multi-valued RDN.
	var rdns pkix.RDNSequence
	if _, err := asn1.Unmarshal(p.SanteOrg.Cert.RawSubject, &rdns); err != nil {
		t.Fatal(err)
	}
	if len(rdns) != 5 {
		t.Errorf("intermediate subject has %d RDNs, want 5", len(rdns))
	}
	for _, c := range []*Cert{p.AuthCli, p.Sign, p.Servers[AnnuaireHost]} {
		if err := c.Cert.CheckSignatureFrom(c.Issuer.Cert); err != nil {
			t.Errorf("%s not signed by its issuer: %v", c.Cert.Subject.CommonName, err)
		}
	}
}

func TestRevocationPointers(t *testing.T) {
	o := Options{RevocationBaseURL: "http://127.0.0.1:8888/"}
	if got := o.CRLURL("aci-el-org"); got != "http://127.0.0.1:8888/crl/aci-el-org.crl" {
		t.Errorf("CRL URL %q", got)
	}
	root, err := NewRoot(Template{Subject: santeName("R")})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := root.Issue(Template{Subject: OrgName("x"), CRLURL: o.CRLURL("r"), OCSPURL: o.OCSPURL()})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(leaf.Cert.CRLDistributionPoints, []string{"http://127.0.0.1:8888/crl/r.crl"}) ||
		!slices.Equal(leaf.Cert.OCSPServer, []string{"http://127.0.0.1:8888/ocsp"}) {
		t.Errorf("pointers %v %v", leaf.Cert.CRLDistributionPoints, leaf.Cert.OCSPServer)
	}
}
