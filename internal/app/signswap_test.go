package app

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/saml"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// TestSignerSwapFollowedByTokens plays ops renewing ORG_SIGN (the new
// certificate has another O: the establishment renamed) by swapping its
// file under a running proxy: once the renewed key signs, the partner and
// the audit log see the new certificate's Issuer, without SIGHUP. Then a
// certificate of another establishment (another OU, idNat_Struct) is
// swapped in: it is refused, and tokens go on under the renewed one.
func TestSignerSwapFollowedByTokens(t *testing.T) {
	e := newTestEnv(t)
	sign := filepath.Join(e.dir, "renewable-sign.p12")
	data, _ := os.ReadFile(e.files.SignP12)
	os.WriteFile(sign, data, 0o600)
	var mu sync.Mutex
	var last *tokenSeen
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		roots, inter := x509.NewCertPool(), x509.NewCertPool()
		roots.AddCert(e.pki.SanteRoot.Cert)
		inter.AddCert(e.pki.SanteOrg.Cert)
		a, err := saml.VerifyEnvelope(body, roots, inter, time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		seen := &tokenSeen{issuer: a.FindElement("Issuer").Text(), nameID: a.FindElement("Subject/NameID").Text()}
		for _, at := range a.FindElements("AttributeStatement/Attribute") {
			if at.SelectAttrValue("Name", "") == saml.AttrStructureID {
				seen.structure = at.FindElement("AttributeValue").Text()
			}
		}
		mu.Lock()
		last = seen
		mu.Unlock()
		io.WriteString(w, "<ok/>")
	})
	cfgPath := filepath.Join(e.dir, "roc-proxy.yaml")
	auditDir := filepath.Join(e.dir, "audit")
	os.WriteFile(cfgPath, []byte(yamlf(`listen: {sih: "127.0.0.1:0", admin: "127.0.0.1:0"}
identity:
  auth: {pkcs12: %s, password_file: %s}
  sign: {pkcs12: %s, password_file: %s}
  reload_interval: 20ms
trust_bundles: {osi: {paths: [%s]}, sante: {paths: [%s]}}
audit: {dir: %s, chain_id: test}
routes:
  - {name: idb, path_prefix: /idb/, upstream: %s, server_name: %s, trust: [osi], revocation: {policy: off}, token: {profile: roc}}
`, e.files.AuthP12, e.files.PasswordFile, sign, e.files.PasswordFile, e.files.OSIBundle, e.files.SanteBundle, auditDir, up.URL, testpki.IDBHost)), 0o600)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	sih := startProxy(t, cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()})
	call := func() *tokenSeen {
		t.Helper()
		resp, err := http.Post(sih+"/idb/", "text/xml", strings.NewReader(`<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><x/></S:Body></S:Envelope>`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		mu.Lock()
		defer mu.Unlock()
		return last
	}
	before := call()
	if before.structure != testpki.IDNatStruct {
		t.Fatalf("before the swap: %+v", before)
	}

	renewedName := pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: asn1.ObjectIdentifier{2, 5, 4, 6}, Value: "FR"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "GROUPE HOSPITALIER RENOUVELE"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: testpki.IDNatStruct},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: testpki.SignCN},
	}}
	renewed, err := e.pki.SanteOrg.Issue(testpki.Template{Subject: renewedName, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}})
	if err != nil {
		t.Fatal(err)
	}
	p12, err := renewed.PKCS12(pkcs12.Modern, testPassword, true)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, sign, p12)
	wantIssuer := "CN=" + testpki.SignCN + ",OU=" + testpki.IDNatStruct + ",O=GROUPE HOSPITALIER RENOUVELE,C=FR"
	var after *tokenSeen
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if after = call(); after.issuer == wantIssuer || time.Now().After(deadline) {
			break
		}
	}
	if after.issuer != wantIssuer || after.structure != testpki.IDNatStruct || after.nameID != testpki.IDNatStruct {
		t.Fatalf("after the swap the partner saw Issuer %q, structure %q, NameID %q", after.issuer, after.structure, after.nameID)
	}
	files, err := audit.ChainFiles(auditDir, "test")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := audit.Select(files, audit.Filter{Types: []string{audit.TypeSigned}})
	if err != nil || len(recs) == 0 {
		t.Fatalf("audit records: %v", err)
	}
	var r *audit.Record
	for _, rec := range recs {
		if rec.Type == audit.TypeSigned {
			r = rec
		}
	}
	if r == nil || r.Issuer != wantIssuer || r.NameID != testpki.IDNatStruct {
		t.Fatalf("the audit record of a token signed by the renewed certificate: %+v", r)
	}

	// Another establishment's ORG_SIGN: refused, the renewed one signs on.
	other, err := e.pki.SanteOrg.Issue(testpki.Template{Subject: pkix.Name{Country: []string{"FR"}, Organization: []string{"CENTRE HOSPITALIER VOISIN"},
		OrganizationalUnit: []string{"1990000027"}, CommonName: testpki.SignCN}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}})
	if err != nil {
		t.Fatal(err)
	}
	p12, err = other.PKCS12(pkcs12.Modern, testPassword, true)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, sign, p12)
	for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if seen := call(); seen.issuer != wantIssuer || seen.structure != testpki.IDNatStruct {
			t.Fatalf("another establishment's certificate was put in service: Issuer %q, structure %q", seen.issuer, seen.structure)
		}
	}
}

type tokenSeen struct{ issuer, structure, nameID string }
