package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := Load("roc-proxy.example.yaml")
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	if got := len(cfg.Routes); got != 4 {
		t.Fatalf("routes = %d, want 4", got)
	}
	if d := cfg.Routes[1].Dynamic; d == nil || len(d.Ports) != 1 || d.Ports[0] != 443 {
		t.Errorf("dynamic route: %+v", d)
	}
	if tok := cfg.Routes[3].Token; tok == nil || tok.Profile != "vihf" || tok.Placement != "wsse" || tok.Validity != DefaultTokenValidity {
		t.Errorf("vihf token defaults not applied: %+v", tok)
	}
	r := cfg.Routes[0]
	if r.Timeouts.Total != 60*time.Second || !r.Strip() || r.MaxBodyBytes != DefaultMaxBodyBytes {
		t.Errorf("route defaults not applied: %+v", r)
	}
	if cfg.Routes[2].Timeouts.Connect != DefaultConnectTimeout {
		t.Errorf("default connect timeout not applied: %v", cfg.Routes[2].Timeouts.Connect)
	}
	want, _ := filepath.Abs("bundles/igc-sante-prod.pem")
	got, _ := filepath.Abs(cfg.TrustBundles["igc-sante-prod"].Paths[0])
	if got != want {
		t.Errorf("relative bundle path resolved to %q, want %q", got, want)
	}
	if cfg.Identity.Auth.PKCS12 != "/run/secrets/roc/org-auth-cli.p12" {
		t.Errorf("absolute path changed: %q", cfg.Identity.Auth.PKCS12)
	}
}

// TestLoadBadConfigs pairs each testdata/invalid-*.yaml with the exact
// message in the .err file beside it.
func TestLoadBadConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid-*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad configs found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, err := os.ReadFile(f + ".err")
			if err != nil {
				t.Fatalf("missing expected message: %v", err)
			}
			_, err = Load(f)
			var fe *FileError
			if !errors.As(err, &fe) || fe.File != f {
				t.Fatalf("error %v does not name the file", err)
			}
			got := fe.Err.Error()
			if got != strings.TrimRight(string(want), "\n") {
				t.Errorf("error mismatch\n got: %s\nwant: %s", got, want)
			}
		})
	}
}

func TestFileErrorFormat(t *testing.T) {
	one := &FileError{File: "a.yaml", Err: errors.New("log.level: bad")}
	if got := one.Error(); got != "a.yaml: log.level: bad" {
		t.Errorf("single problem: %q", got)
	}
	many := &FileError{File: "a.yaml", Err: errors.Join(errors.New("x: 1"), errors.New("y: 2"))}
	if got := many.Error(); got != "a.yaml:\n  x: 1\n  y: 2" {
		t.Errorf("several problems: %q", got)
	}
}

func TestValidateDoesNotMutate(t *testing.T) {
	cfg := &Config{Routes: []*Route{{Name: "r"}}}
	if err := cfg.Validate(); err == nil {
		t.Fatal("empty route validated")
	}
	if cfg.Routes[0].Timeouts.Total != 0 || cfg.Listen.SIH != "" {
		t.Errorf("Validate mutated the configuration: %+v", cfg)
	}
}

func TestParsePin(t *testing.T) {
	if _, err := ParsePin("sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="); err != nil {
		t.Errorf("valid pin refused: %v", err)
	}
	for _, bad := range []string{"", "sha256/", "sha256/!!", "sha256/AAAA", "md5/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="} {
		if _, err := ParsePin(bad); err == nil {
			t.Errorf("pin %q accepted", bad)
		}
	}
}

// FuzzParse holds Parse to properties Parse itself does not guarantee
// (a configuration that parses validates by construction: Parse calls
// Validate):
//   - the same input gives the same answer twice (no map order in the
//     messages);
//   - a configuration it accepts, written back as YAML and parsed again
//     from another folder, is the same configuration: defaults applied
//     twice change nothing, resolved paths stay put, every field survives
//     its own encoding, and Validate accepts what the defaults produce.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"roc-proxy.example.yaml", "testdata/invalid-many.yaml", "testdata/invalid-pem-half.yaml", "testdata/invalid-outbound-proxy.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "/etc/roc-proxy")
		_, again := Parse(data, "/etc/roc-proxy")
		if (err == nil) != (again == nil) || (err != nil && err.Error() != again.Error()) {
			t.Fatalf("two answers to one input:\n%v\n---\n%v", err, again)
		}
		if err != nil {
			return
		}
		written, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("an accepted configuration cannot be written back: %v", err)
		}
		back, err := Parse(written, "/elsewhere")
		if err != nil {
			t.Fatalf("an accepted configuration, written back, is refused: %v\n--- written:\n%s", err, written)
		}
		rewritten, err := yaml.Marshal(back)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(written, rewritten) {
			t.Fatalf("parsing an accepted configuration again changes it:\n--- first:\n%s\n--- then:\n%s", written, rewritten)
		}
	})
}

// A proxy password written in the URL is refused without being repeated:
// the message goes to terminals, logs and CI output.
func TestProxyCredentialsNeverEchoed(t *testing.T) {
	for _, f := range []string{"testdata/invalid-outbound-proxy.yaml", "testdata/invalid-proxy-url.yaml", "testdata/invalid-proxy-url-delimiters.yaml"} {
		_, err := Load(f)
		if err == nil {
			t.Fatalf("%s loaded", f)
		}
		if strings.Contains(err.Error(), "S3cret") {
			t.Errorf("%s: the error repeats the password: %v", f, err)
		}
	}
}

func TestProxyFor(t *testing.T) {
	global := &OutboundProxy{URL: "http://proxy.example:3128"}
	own := &ProxyChoice{OutboundProxy: OutboundProxy{URL: "http://other.example:8080"}}
	c := &Config{OutboundProxy: global}
	if c.ProxyFor(nil) != global {
		t.Error("no choice: not the global proxy")
	}
	if c.ProxyFor(&ProxyChoice{Direct: true}) != nil {
		t.Error("direct: a proxy")
	}
	if got := c.ProxyFor(own); got == nil || got.URL != "http://other.example:8080" {
		t.Errorf("own proxy: %+v", got)
	}
	if (&Config{}).ProxyFor(nil) != nil {
		t.Error("no proxy configured: a proxy")
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://u:p@h:1/x": "http://***@h:1/x",
		"http://h:1":       "http://h:1",
		"u:p@h:1":          "***@h:1",
		// Over-hidden on purpose: "h:1/a" may be user h, password 1/a.
		"http://h:1/a@b":              "http://***@b",
		"http://roc:s3cr#t@h:1":       "http://***@h:1",
		"http://roc:s3?cr@h:1":        "http://***@h:1",
		"http://roc:123/45@h:1":       "http://***@h:1",
		"http:/roc:pw@h:1":            "http:/***@h:1",
		"HTTP://roc:pw@h:1":           "HTTP://***@h:1",
		"http://u:p@ss@h:1":           "http://***@h:1",
		"http://roc:a b@proxy x:3128": "http://***@proxy x:3128",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// The example's commented outbound proxy lines, uncommented, load.
func TestExampleProxyLines(t *testing.T) {
	data, err := os.ReadFile("roc-proxy.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	inBlock := false
	for _, l := range strings.Split(string(data), "\n") {
		switch {
		case l == "# outbound_proxy:":
			inBlock, l = true, "outbound_proxy:"
		case inBlock && strings.HasPrefix(l, "#   #"):
		case inBlock && strings.HasPrefix(l, "#   "):
			l = strings.TrimPrefix(l, "#")
		case strings.Contains(l, "# outbound_proxy: {direct: true}"):
			l = strings.Replace(l, "# outbound_proxy", "outbound_proxy", 1)
			inBlock = false
		default:
			inBlock = false
		}
		out = append(out, l)
	}
	cfg, err := Parse([]byte(strings.Join(out, "\n")), ".")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OutboundProxy == nil || cfg.OutboundProxy.URL != "http://proxy.hospital.example:3128" || len(cfg.OutboundProxy.NoProxy) != 2 ||
		cfg.ProxyFor(cfg.Routes[0].OutboundProxy) != nil || cfg.ProxyFor(cfg.Revocation.OutboundProxy) != nil || cfg.ProxyFor(cfg.Routes[1].OutboundProxy) == nil {
		t.Errorf("outbound proxy lines: %+v", cfg.OutboundProxy)
	}
}

// Validate, section by section, leaves the configuration as it found it,
// on good files and on files with a problem in every section.
func TestValidateSectionsArePure(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid-*.yaml")
	files = append(files, "roc-proxy.example.yaml")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var before, after Config
		if yaml.Unmarshal(data, &before) != nil || yaml.Unmarshal(data, &after) != nil {
			continue // refused while decoding: no configuration to validate
		}
		before.applyDefaults()
		after.applyDefaults()
		_ = after.Validate()
		if !reflect.DeepEqual(before, after) {
			t.Errorf("%s: Validate changed the configuration", f)
		}
	}
}
