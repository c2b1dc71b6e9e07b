package app

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// TestSIHOnlyHeadersNeverReachThePartner plays a SIH (or anything able to
// write its requests) sending roc-proxy's own headers under other
// spellings, and a token of its own: X_Roc_* (servers that map "_" and "-"
// alike, as CGI does, would read them as X-Roc-*) and X-Saml-Token or the
// route's token header. None reaches the partner; on the http-header route
// the only token the partner sees is the one roc-proxy signed.
func TestSIHOnlyHeadersNeverReachThePartner(t *testing.T) {
	sih, partner := startHeaderRoutes(t)
	forged := base64.StdEncoding.EncodeToString([]byte("<saml:Assertion>forged</saml:Assertion>"))
	for _, r := range []string{"wsse", "header", "plain"} {
		t.Run(r, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, sih+"/"+r+"/", strings.NewReader(`<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><x/></S:Body></S:Envelope>`))
			for _, name := range []string{"X_Roc_User_Id", "x_roc_patient_ins", "X-Roc_User-Name", "X-Roc-Something-New", "X-Saml-Token", "X_Saml_Token", "X-Amc-Jeton", "X_Amc_Jeton"} {
				req.Header[name] = []string{forged} // sent as spelled
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			seen := partner.last()
			for name, vals := range seen {
				norm := strings.ReplaceAll(strings.ToLower(name), "_", "-")
				switch {
				case strings.HasPrefix(norm, "x-roc-"):
					t.Errorf("the partner got %s: %q", name, vals)
				case r != "plain" && (norm == "x-saml-token" || r == "header" && norm == "x-amc-jeton") && vals[0] == forged:
					t.Errorf("the partner got the SIH's token in %s", name)
				}
			}
			if r == "header" {
				tok, err := base64.StdEncoding.DecodeString(seen.Get("X-Amc-Jeton"))
				if err != nil || len(seen.Values("X-Amc-Jeton")) != 1 || !strings.Contains(string(tok), "<ds:Signature") {
					t.Errorf("the partner did not get exactly roc-proxy's token: %q", seen.Values("X-Amc-Jeton"))
				}
			}
		})
	}
}

// TestIdentityHeadersThatWouldDisplayMisleadingly plays a SIH copying a
// user name with a right-to-left override (or an identifier with a
// zero-width space) into the identity headers: the SIH gets a 400
// bad_token_values naming the header, the partner gets nothing, and no
// token is signed.
func TestIdentityHeadersThatWouldDisplayMisleadingly(t *testing.T) {
	e := newTestEnv(t)
	var calls atomic.Int64
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.WriteString(w, "<ok/>")
	})
	text := yamlf(`listen: {sih: "127.0.0.1:0", admin: "127.0.0.1:0"}
identity:
  auth: {pkcs12: %s, password_file: %s}
  sign: {pkcs12: %s, password_file: %s}
trust_bundles: {osi: {paths: [%s]}}
audit: {dir: %s, chain_id: test}
routes:
  - {name: dmp, path_prefix: /dmp/, upstream: %s, server_name: %s, trust: [osi], revocation: {policy: off},
     token: {profile: vihf, vihf: {software_name: TEST, software_version: "1"}}}
`, e.files.AuthP12, e.files.PasswordFile, e.files.SignP12, e.files.PasswordFile, e.files.OSIBundle, filepath.Join(e.dir, "audit"), up.URL, testpki.IDBHost)
	cfgPath := filepath.Join(e.dir, "roc-proxy.yaml")
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	sih := startProxy(t, cfg, Deps{Logger: zaptest.NewLogger(t), Registry: reg})
	post := func(name, value string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, sih+"/dmp/", strings.NewReader(`<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><x/></S:Body></S:Envelope>`))
		for h, v := range map[string]string{"X-Roc-User-Id": "810002345678", "X-Roc-User-Name": "DUPONT Jeanne", "X-Roc-User-Roles": "10",
			"X-Roc-Patient-Ins": "279035121518989"} {
			req.Header.Set(h, v)
		}
		req.Header.Set(name, value)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if code, body := post("X-Roc-User-Name", "DUPONT Jeanne"); code != 200 || calls.Load() != 1 {
		t.Fatalf("legitimate call: %d %v", code, body)
	}
	for _, tc := range []struct{ header, value string }{
		{"X-Roc-User-Name", "DUPONT \u202eenneaJ"},
		{"X-Roc-User-Id", "8100\u200b02345678"},
		{"X-Roc-User-Id", "8 10002345678"},
	} {
		code, body := post(tc.header, tc.value)
		if code != http.StatusBadRequest || body["error"] != "bad_token_values" || !strings.Contains(fmt.Sprint(body["problems"]), tc.header) {
			t.Errorf("%s=%q: %d %v", tc.header, tc.value, code, body)
		}
	}
	if calls.Load() != 1 {
		t.Errorf("the partner got %d calls, want the legitimate one only", calls.Load())
	}
}

// headerPartner is a partner that keeps the headers of the last request it
// got.
type headerPartner struct {
	mu   sync.Mutex
	seen http.Header
}

func (h *headerPartner) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.seen = r.Header.Clone()
	h.mu.Unlock()
	io.WriteString(w, "<ok/>")
}

// last is the headers of the last request (nil: none since reset).
func (h *headerPartner) last() http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen
}

func (h *headerPartner) reset() {
	h.mu.Lock()
	h.seen = nil
	h.mu.Unlock()
}

// startHeaderRoutes starts roc-proxy with three routes to one
// headerPartner: wsse (a ROC token in WS-Security), header (a ROC token in
// X-Amc-Jeton) and plain (pass-through); it returns the SIH's URL.
func startHeaderRoutes(t *testing.T) (string, *headerPartner) {
	t.Helper()
	e := newTestEnv(t)
	partner := &headerPartner{}
	up := e.upstream(t, partner.serve)
	cfgPath := filepath.Join(e.dir, "roc-proxy.yaml")
	route := func(name, extra string) string {
		return yamlf("  - {name: %s, path_prefix: %s, upstream: %s, server_name: %s, trust: [osi], revocation: {policy: off}%s}\n",
			name, "/"+name+"/", up.URL, testpki.IDBHost, rawYAML(extra))
	}
	text := yamlf(`listen: {sih: "127.0.0.1:0", admin: "127.0.0.1:0"}
identity:
  auth: {pkcs12: %s, password_file: %s}
  sign: {pkcs12: %s, password_file: %s}
trust_bundles: {osi: {paths: [%s]}, sante: {paths: [%s]}}
audit: {dir: %s, chain_id: test}
routes:
`, e.files.AuthP12, e.files.PasswordFile, e.files.SignP12, e.files.PasswordFile, e.files.OSIBundle, e.files.SanteBundle, filepath.Join(e.dir, "audit")) +
		route("wsse", ", token: {profile: roc}") +
		route("header", ", token: {profile: roc, placement: http-header, http_header: X-Amc-Jeton}") +
		route("plain", "")
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	return startProxy(t, cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()}), partner
}
