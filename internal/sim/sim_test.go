package sim

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

func tlsCert(c *testpki.Cert) tls.Certificate { return *c.TLSCertificate() }

func setup(t *testing.T, start func(Options) (*Server, error)) (*Server, func(client *testpki.Cert) *http.Client) {
	t.Helper()
	p, err := testpki.Shared()
	if err != nil {
		t.Fatal(err)
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(p.SanteRoot.Cert)
	srvCert := tlsCert(p.Servers[testpki.AnnuaireHost])
	s, err := start(Options{Certificate: &srvCert, ClientCAs: clientCAs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	roots := x509.NewCertPool()
	roots.AddCert(p.OSIRoot.Cert)
	return s, func(client *testpki.Cert) *http.Client {
		cfg := &tls.Config{RootCAs: roots, ServerName: testpki.AnnuaireHost}
		if client != nil {
			cfg.Certificates = []tls.Certificate{tlsCert(client)}
		}
		tr := &http.Transport{TLSClientConfig: cfg}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
}

func post(t *testing.T, c *http.Client, url string, body []byte) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Post(url, "text/xml", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestAnnuaire(t *testing.T) {
	p, _ := testpki.Shared()
	s, client := setup(t, func(o Options) (*Server, error) {
		return StartAnnuaire(o, map[string][]Address{"123456789": {{"IDB", "https://idb.example/ws"}, {"CLC", "https://clc.example/ws"}}})
	})
	c := client(p.AuthCli)
	code, body, hdr := post(t, c, s.URL, AnnuaireSearchRequest("123456789", "IDB"))
	if code != 200 || !strings.Contains(body, "<url>https://idb.example/ws</url>") || strings.Contains(body, "clc.example") {
		t.Errorf("search: %d %s", code, body)
	}
	if !strings.HasPrefix(hdr.Get(HeaderClientSubject), "CN="+testpki.AuthCliCN) {
		t.Errorf("client subject %q", hdr.Get(HeaderClientSubject))
	}
	for name, req := range map[string][]byte{
		"unknown AMC":       AnnuaireSearchRequest("999", "IDB"),
		"not XML":           []byte("hello"),
		"not SOAP 1.1":      []byte(`<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"><Body><x/></Body></Envelope>`),
		"unknown operation": IDBRequest("1", "2"),
	} {
		code, body, _ := post(t, c, s.URL, req)
		if code < 400 || !strings.Contains(body, "<faultstring>") {
			t.Errorf("%s: %d %s", name, code, body)
		}
	}
	// No client certificate, or one from another PKI: no answer at all.
	for name, cert := range map[string]*testpki.Cert{"none": nil, "rogue": p.Servers[testpki.IDBHost]} {
		if _, err := client(cert).Post(s.URL, "text/xml", bytes.NewReader(AnnuaireSearchRequest("123456789", "IDB"))); err == nil {
			t.Errorf("client certificate %s accepted", name)
		}
	}
}

func TestAMCService(t *testing.T) {
	p, _ := testpki.Shared()
	s, client := setup(t, StartAMCService)
	code, body, _ := post(t, client(p.AuthCli), s.URL, IDBRequest("123456789", "0102030405"))
	if code != 200 || !strings.Contains(body, "<numero_adherent>0102030405</numero_adherent>") || !strings.Contains(body, "<droits_ouverts>true</droits_ouverts>") {
		t.Errorf("IDB: %d %s", code, body)
	}
}
