package app

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/saml/samltest"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// TestPartnerAnswersUnderEnforce plays a partner's answer signed with
// xmlsec1 and every wrapping of it an attacker on the path could send,
// through the whole proxy: under response_signature enforce the SIH gets
// the legitimate answers byte for byte, and never a forged one (502).
func TestPartnerAnswersUnderEnforce(t *testing.T) {
	e := newTestEnv(t)
	issue := func(ca *testpki.Cert) *testpki.Cert {
		c, err := ca.Issue(testpki.Template{Subject: pkix.Name{CommonName: "AMC SIGNATURE"}, KeyUsage: x509.KeyUsageDigitalSignature})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	answers := samltest.Answers(t, issue(e.pki.OSIServicesApplicatifs), issue(e.pki.SanteOrg))
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) {
		i, err := strconv.Atoi(filepath.Base(r.URL.Path))
		if err != nil || i < 0 || i >= len(answers) {
			http.Error(w, "no such answer", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		w.Write(answers[i].Body)
	})
	route := func(name, extra string) string {
		return fmt.Sprintf("  - {name: %s, path_prefix: /%s/, upstream: %q, server_name: %s, trust: [osi], revocation: {policy: off},\n"+
			"     response_signature: {policy: enforce, trust: [osi]%s}}\n", name, name, up.URL, testpki.IDBHost, extra)
	}
	cfgPath := filepath.Join(e.dir, "roc-proxy.yaml")
	text := yamlf(`listen: {sih: "127.0.0.1:0", admin: "127.0.0.1:0"}
identity:
  auth: {pkcs12: %s, password_file: %s}
trust_bundles: {osi: {paths: [%s]}, sante: {paths: [%s]}}
routes:
`, e.files.AuthP12, e.files.PasswordFile, e.files.OSIBundle, e.files.SanteBundle) +
		route("body", "") +
		route("element", ", signed_element: [\""+samltest.SignedElement+"\"]") +
		route("sha1", ", signed_element: [\""+samltest.SignedElement+"\"], allow_sha1: true")
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	sih := startProxy(t, cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()})
	for i, a := range answers {
		t.Run(a.Name, func(t *testing.T) {
			r := "body"
			switch {
			case a.AllowSHA1:
				r = "sha1"
			case a.SignedElement:
				r = "element"
			}
			resp, err := http.Post(fmt.Sprintf("%s/%s/%d", sih, r, i), "text/xml", strings.NewReader(`<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body/></S:Envelope>`))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if a.Refusal == "" {
				if resp.StatusCode != 200 || !bytes.Equal(body, a.Body) {
					t.Fatalf("legitimate answer: %d\n%s", resp.StatusCode, body)
				}
				return
			}
			var pb struct{ Error, Reason string }
			json.Unmarshal(body, &pb)
			if resp.StatusCode != http.StatusBadGateway || pb.Reason != "response_signature" || bytes.Contains(body, []byte(samltest.ForgedAmount)) {
				t.Fatalf("the SIH got %d (want 502 response_signature):\n%s", resp.StatusCode, body)
			}
		})
	}
}

// TestAnswerCharsetUnderEnforce plays an intermediary on the partner's
// answer path relabelling a signed answer: the signature covers the bytes,
// not the Content-Type, and a SIH decodes the bytes with the charset the
// header names (RFC 7303), so ISO-8859-1 turns the signed "Hélène" into
// "HÃ©lÃ¨ne" and UTF-16 into nothing readable. The bytes were checked as
// UTF-8: under enforce, an answer labelled with another charset is not
// what was signed (502); labelled UTF-8, or with no charset, it passes.
func TestAnswerCharsetUnderEnforce(t *testing.T) {
	e := newTestEnv(t)
	signer, err := e.pki.OSIServicesApplicatifs.Issue(testpki.Template{Subject: pkix.Name{CommonName: "AMC SIGNATURE"}, KeyUsage: x509.KeyUsageDigitalSignature})
	if err != nil {
		t.Fatal(err)
	}
	answer := samltest.Build(t, signer).Detached
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", r.URL.Query().Get("ct"))
		w.Write(answer)
	})
	path := e.config(t, up.URL, "")
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text = append(text, "    response_signature: {policy: enforce, trust: [osi]}\n"...)
	if err := os.WriteFile(path, text, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	sih := startProxy(t, cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()})
	for _, tc := range []struct {
		contentType string
		status      int
	}{
		{"text/xml; charset=utf-8", 200},
		{"application/soap+xml; charset=UTF-8; action=\"urn:x\"", 200},
		{"text/xml", 200},
		{"text/xml; charset=ISO-8859-1", http.StatusBadGateway},
		{"application/soap+xml; charset=utf-16", http.StatusBadGateway},
		{"text/xml; charset=\"windows-1252\"", http.StatusBadGateway},
	} {
		resp, err := http.Post(sih+"/idb/?ct="+url.QueryEscape(tc.contentType), "text/xml", strings.NewReader(`<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body/></S:Envelope>`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("Content-Type %q: status %d, want %d\n%s", tc.contentType, resp.StatusCode, tc.status, body)
		}
	}
}

// TestAnswerSignersUnderEnforce plays, through the whole proxy, answers
// signed with keys of the partner's PKI that are not its answer-signing
// key: its TLS server key (AC-SERVEUR, serverAuth), on a route trusting
// the whole IGC OSI bundle; and another AC-SERVICES-APPLICATIFS
// certificate on a route that lists its partner's signer
// (response_signature.signers). The SIH gets 502, and the partner's real
// signing certificate's answers byte for byte.
func TestAnswerSignersUnderEnforce(t *testing.T) {
	e := newTestEnv(t)
	signer, err := e.pki.IssueAnswerSigner(e.pki.OSIServicesApplicatifs, "", "AMC SIGNATURE", testpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := e.pki.IssueAnswerSigner(e.pki.OSIServicesApplicatifs, "", "AMC AUTRE SIGNATURE", testpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	answers := map[string][]byte{
		"signer": samltest.SignDetached(t, signer),
		"other":  samltest.SignDetached(t, other),
		"tls":    samltest.SignDetached(t, e.pki.Servers[testpki.IDBHost]),
	}
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		w.Write(answers[filepath.Base(r.URL.Path)])
	})
	route := func(name, extra string) string {
		return fmt.Sprintf("  - {name: %s, path_prefix: /%s/, upstream: %q, server_name: %s, trust: [osi], revocation: {policy: off},\n"+
			"     response_signature: {policy: enforce, trust: [osi]%s}}\n", name, name, up.URL, testpki.IDBHost, extra)
	}
	cfgPath := filepath.Join(e.dir, "roc-proxy.yaml")
	text := yamlf(`listen: {sih: "127.0.0.1:0", admin: "127.0.0.1:0"}
identity:
  auth: {pkcs12: %s, password_file: %s}
trust_bundles: {osi: {paths: [%s]}}
routes:
`, e.files.AuthP12, e.files.PasswordFile, e.files.OSIBundle) +
		route("bundle", "") +
		route("pinned", `, signers: ["C=FR, O=AMC SIMULEE, CN=AMC SIGNATURE"]`) +
		route("tiny", `, max_nodes: 20`)
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	sih := startProxy(t, cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()})
	for _, tc := range []struct {
		route, answer string
		status        int
	}{
		{"bundle", "signer", 200},
		{"bundle", "other", 200},
		{"bundle", "tls", http.StatusBadGateway},
		{"pinned", "signer", 200},
		{"pinned", "other", http.StatusBadGateway},
		{"pinned", "tls", http.StatusBadGateway},
		{"tiny", "signer", http.StatusBadGateway}, // more nodes than max_nodes
	} {
		resp, err := http.Post(sih+"/"+tc.route+"/"+tc.answer, "text/xml", strings.NewReader(`<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body/></S:Envelope>`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || tc.status == 200 && !bytes.Equal(body, answers[tc.answer]) {
			t.Errorf("route %s, answer signed by %s: %d, want %d\n%s", tc.route, tc.answer, resp.StatusCode, tc.status, body)
		}
	}
}
