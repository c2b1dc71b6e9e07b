package app

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// The test configurations are YAML text (tests edit them as an operator
// edits a file), but every value that comes from the test (a path, a URL,
// a name) goes in through yamlFlow, never through a format verb: a temporary
// folder with a space, a '#' or a ': ' in its name must not change what the
// file says.

// yamlFlow is v written as YAML flow text. It is JSON, which YAML reads as
// is: strings quoted and escaped, maps and lists in braces and brackets.
func yamlFlow(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings, numbers and lists only
	}
	return string(b)
}

// source is a certificate source (identity.auth, identity.sign,
// audit.checkpoint_key) from a PKCS#12 file and the test password file.
func (e *testEnv) source(p12 string) map[string]any {
	return map[string]any{"pkcs12": p12, "password_file": e.files.PasswordFile}
}

// identity is the body of the identity section for e.config: auth, then
// the other keys of extra (sign, reload_interval...) sorted.
func identity(auth map[string]any, extra map[string]any) string {
	var b strings.Builder
	b.WriteString("  auth: " + yamlFlow(auth) + "\n")
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString("  " + k + ": " + yamlFlow(extra[k]) + "\n")
	}
	return b.String()
}

// bundleEntry is one trust bundle of the trust_bundles section, as
// e.config writes it.
func bundleEntry(name string, paths ...string) string {
	return "  " + name + ": " + yamlFlow(map[string]any{"paths": paths}) + "\n"
}

// routeEntry is one route of the routes section, as a flow mapping.
func routeEntry(route map[string]any) string {
	return "  - " + yamlFlow(route) + "\n"
}

// idb2Route is a second pass-through route to upstream, at /idb2/: what a
// reload adds.
func idb2Route(upstream string) string {
	return routeEntry(map[string]any{"name": "idb2", "path_prefix": "/idb2/", "upstream": upstream, "server_name": testpki.IDBHost,
		"trust": []string{"osi"}, "revocation": map[string]any{"policy": "off"}})
}

// A folder name YAML would read otherwise (" #" starts a comment, ": "
// a mapping, "[" a list) reaches the configuration as it is.
func TestTestConfigurationsQuoteTheirValues(t *testing.T) {
	p := testpki.MustShared(t)
	dir := filepath.Join(t.TempDir(), "odd #dir: [x], {y}")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	files, err := p.WriteFiles(dir, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{dir: dir, files: files, pki: p}
	text := e.withAudit(e.withSign(withRoute(readFile(t, e.config(t, "https://idb.amc.test:8443/ws", "")), tokenRoute("https://dmp.test/a:b"))))
	path := filepath.Join(dir, "edited.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if cfg.TrustBundles["osi"].Paths[0] != files.OSIBundle || cfg.Identity.Auth.PKCS12 != files.AuthP12 ||
		cfg.Identity.Sign.PKCS12 != files.SignP12 || cfg.Audit.Dir != filepath.Join(dir, "audit") ||
		cfg.Routes[0].Upstream != "https://dmp.test/a:b" || cfg.Routes[1].Upstream != "https://idb.amc.test:8443/ws" {
		t.Errorf("values changed on their way through YAML:\n%s", text)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rawYAML is a fragment of YAML text handed to yamlf as it is (extra keys
// of a section, a whole line), not a value.
type rawYAML string

// yamlf is fmt.Sprintf for YAML templates: each argument is written as a
// quoted YAML value (yamlFlow), but rawYAML fragments. The template's
// verbs are all %s.
func yamlf(format string, args ...any) string {
	quoted := make([]any, len(args))
	for i, a := range args {
		if r, ok := a.(rawYAML); ok {
			quoted[i] = string(r)
		} else {
			quoted[i] = yamlFlow(a)
		}
	}
	return fmt.Sprintf(format, quoted...)
}
