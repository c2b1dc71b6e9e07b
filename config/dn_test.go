package config

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"
)

// An operator copies the authority's subject from openssl (C first) or from
// roc-proxy's logs (RFC 2253, CN first): both name the same authority.
func TestDNMatchesBothOrders(t *testing.T) {
	name := pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: asn1.ObjectIdentifier{2, 5, 4, 6}, Value: "FR"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "GIE SESAM-VITALE"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: "IGC OSI, TEST"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "TEST AC-SERVEUR"},
	}}
	raw, err := asn1.Marshal(name.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	for text, want := range map[string]bool{
		`CN=TEST AC-SERVEUR,OU=IGC OSI\, TEST,O=GIE SESAM-VITALE,C=FR`:      true,
		`C=FR, O=GIE SESAM-VITALE, OU="IGC OSI, TEST", CN=TEST AC-SERVEUR`:  true,
		`c=fr;o=gie sesam-vitale;ou=IGC OSI\2C TEST;cn=test ac-serveur`:     true,
		`CN=TEST AC-SERVEUR,OU=IGC OSI\, TEST,O=GIE SESAM-VITALE`:           false,
		`CN=TEST AC-SERVEUR,O=GIE SESAM-VITALE,OU=IGC OSI\, TEST,C=FR`:      false,
		`CN=OTHER AC,OU=IGC OSI\, TEST,O=GIE SESAM-VITALE,C=FR`:             false,
		`CN=TEST AC-SERVEUR+OU=IGC OSI\, TEST,O=GIE SESAM-VITALE,C=FR`:      false,
		`2.5.4.3=TEST AC-SERVEUR,OU=IGC OSI\, TEST,O=GIE SESAM-VITALE,C=FR`: true,
	} {
		if got := DNMatches(text, raw); got != want {
			t.Errorf("DNMatches(%q) = %v, want %v", text, got, want)
		}
	}
}

// FuzzParseDN: configuration text is parsed without panicking, and what
// parses names no certificate unless it round-trips through DNMatches.
func FuzzParseDN(f *testing.F) {
	for _, s := range []string{`CN=a,O=b,C=FR`, `C=FR, O="x, y", CN=z`, `cn=a\2Cb+ou=c;o=d`, `1.2.3=x`, `CN=\`, `=`, `CN="open`} {
		f.Add(s)
	}
	raw, _ := asn1.Marshal(pkix.Name{CommonName: "a", Organization: []string{"b"}, Country: []string{"FR"}}.ToRDNSequence())
	f.Fuzz(func(t *testing.T, s string) {
		rdns, err := ParseDN(s)
		if err == nil && len(rdns) == 0 {
			t.Fatal("parsed to nothing without an error")
		}
		_ = DNMatches(s, raw)
	})
}
