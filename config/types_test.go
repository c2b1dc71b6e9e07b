package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"net/netip"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Pins and CIDRs are parsed once, while the file is loaded: consumers take
// the parsed values (SHA256s, Netip) and never parse the text again.
func TestTypedValuesParsedAtLoad(t *testing.T) {
	spki := []byte("a SubjectPublicKeyInfo")
	sum := sha256.Sum256(spki)
	pin := "sha256/" + base64.StdEncoding.EncodeToString(sum[:])
	data := strings.NewReplacer("PIN", pin).Replace(`
listen: {allow_cidrs: [10.20.0.0/16, "fd00::/8"]}
identity: {auth: {pkcs12: a.p12}}
trust_bundles: {osi: {paths: [osi.pem]}}
routes:
  - {name: a, path_prefix: /a/, upstream: "https://a.example/", trust: [osi], spki_pins: [PIN],
     revocation: {policy: soft, sources: [crl]}}
`)
	cfg, err := Parse([]byte(data), "/etc/roc-proxy")
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Listen.AllowCIDRs.Netip()
	want := []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("fd00::/8")}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("allow_cidrs parsed to %v, want %v", got, want)
	}
	if s := cfg.Listen.AllowCIDRs[1].String(); s != "fd00::/8" {
		t.Errorf("a prefix shows %q, not its text", s)
	}
	r := cfg.Routes[0]
	if sums := r.SPKIPins.SHA256s(); len(sums) != 1 || !bytes.Equal(sums[0], sum[:]) {
		t.Errorf("pin decoded to %x, want %x", sums, sum)
	}
	if r.Revocation.Policy != RevocationSoft || len(r.Revocation.Sources) != 1 || r.Revocation.Sources[0] != SourceCRL {
		t.Errorf("revocation: %+v", r.Revocation)
	}
	if names := r.Revocation.Sources.Names(); len(names) != 1 || names[0] != "crl" {
		t.Errorf("sources as the engine names them: %v", names)
	}
	// Written back, the values are their text: a configuration printed
	// or compared shows what the file said.
	out, err := yaml.Marshal(cfg.Listen)
	if err != nil || !strings.Contains(string(out), "- 10.20.0.0/16") || !strings.Contains(string(out), "fd00::/8") {
		t.Errorf("listen written back as %s (%v)", out, err)
	}
}

// A configuration built in code (tests, the demo) with zero values for
// pins or prefixes is refused, not taken for "no pin" or "every address".
func TestZeroTypedValuesRefused(t *testing.T) {
	cfg := &Config{Listen: Listen{AllowCIDRs: Prefixes{{}}}, Routes: []*Route{{Name: "a", SPKIPins: Pins{{}}}}}
	err := cfg.Validate()
	for _, want := range []string{`listen.allow_cidrs[0]: "" is not a CIDR`, `routes[0].spki_pins[0]: pin "" is not the base64 of a SHA-256 digest`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("zero value accepted: want %q in %v", want, err)
		}
	}
	if p, err := NewPin("sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="); err != nil || len(p.SHA256()) != 32 {
		t.Errorf("NewPin: %v", err)
	}
	if _, err := ParsePrefix("10.0.0.300/8"); err == nil {
		t.Error("ParsePrefix accepted 10.0.0.300/8")
	}
}

// Facilities are numbered as RFC 5424 numbers them; other names are -1.
func TestSyslogFacilityCode(t *testing.T) {
	for name, code := range map[SyslogFacility]int{"kern": 0, "authpriv": 10, "local0": 16, "local7": 23, "local8": -1, "": -1, "AUTHPRIV": -1} {
		if got := name.Code(); got != code {
			t.Errorf("facility %q: code %d, want %d", name, got, code)
		}
	}
}
