package packaging_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// unit is a systemd unit file: section.Key -> values in order.
type unit map[string][]string

func readUnit(t *testing.T) unit {
	t.Helper()
	data, err := os.ReadFile("systemd/roc-proxy.service")
	if err != nil {
		t.Fatal(err)
	}
	u, section := unit{}, ""
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, _ := strings.Cut(line, "=")
			u[section+"."+k] = append(u[section+"."+k], v)
		}
	}
	return u
}

func (u unit) one(key string) string {
	if v := u[key]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// nfpmConfig is the part of packaging/nfpm.yaml these tests read.
type nfpmConfig struct {
	Contents []struct {
		Src  string `json:"src"`
		Dst  string `json:"dst"`
		Type string `json:"type"`
	} `json:"contents"`
	Scripts map[string]string `json:"scripts"`
}

func readNFPM(t *testing.T) nfpmConfig {
	t.Helper()
	data, err := os.ReadFile("nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c nfpmConfig // the fields these tests read; nfpm checks the rest
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// The unit runs roc-proxy unprivileged and confined, where the package puts
// it, and says how it reloads and when it restarts.
func TestSystemdUnitHardening(t *testing.T) {
	u := readUnit(t)
	for key, want := range map[string]string{
		"Service.User":                     "roc-proxy",
		"Service.NoNewPrivileges":          "yes",
		"Service.ProtectSystem":            "strict",
		"Service.ProtectHome":              "yes",
		"Service.PrivateTmp":               "yes",
		"Service.PrivateDevices":           "yes",
		"Service.CapabilityBoundingSet":    "",
		"Service.AmbientCapabilities":      "",
		"Service.RestrictSUIDSGID":         "yes",
		"Service.MemoryDenyWriteExecute":   "yes",
		"Service.SystemCallArchitectures":  "native",
		"Service.StateDirectory":           "roc-proxy",
		"Service.CacheDirectory":           "roc-proxy",
		"Service.Restart":                  "on-failure",
		"Service.RestartPreventExitStatus": "2 78", // a wrong command line, a configuration error (main.go)
		"Service.ExecReload":               "/bin/kill -HUP $MAINPID",
		"Install.WantedBy":                 "multi-user.target",
	} {
		if got, ok := u[key]; !ok || u.one(key) != want {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
	if !strings.Contains(strings.Join(u["Service.SystemCallFilter"], " "), "@system-service") {
		t.Errorf("SystemCallFilter %q", u["Service.SystemCallFilter"])
	}
	// The stop timeout covers the drain (server.shutdown_timeout, 25 s).
	if d, err := time.ParseDuration(u.one("Service.TimeoutStopSec")); err != nil || d <= 25*time.Second {
		t.Errorf("TimeoutStopSec=%q does not cover the 25 s drain", u.one("Service.TimeoutStopSec"))
	}

	// ExecStart names the installed program and configuration.
	args := strings.Fields(u.one("Service.ExecStart"))
	installed := map[string]nfpmEntry{}
	for _, c := range readNFPM(t).Contents {
		installed[c.Dst] = nfpmEntry{c.Src, c.Type}
	}
	if len(args) != 4 || args[1] != "serve" || args[2] != "--config" {
		t.Fatalf("ExecStart=%q", u.one("Service.ExecStart"))
	}
	if _, ok := installed[args[0]]; !ok {
		t.Errorf("ExecStart runs %s, which the package does not install", args[0])
	}
	if e, ok := installed[args[3]]; !ok || !strings.HasPrefix(e.typ, "config") {
		t.Errorf("ExecStart reads %s, which the package does not install as a configuration file (%+v)", args[3], e)
	}
	if _, ok := installed["/usr/lib/systemd/system/roc-proxy.service"]; !ok {
		t.Error("the package does not install the unit")
	}
}

type nfpmEntry struct{ src, typ string }

// The packaged configuration names only what the package installs or what
// docs/installation.md tells the administrator to put in place, and writes only in
// the folders systemd makes writable for the service.
func TestPackagedConfigurationPaths(t *testing.T) {
	cfg := packagedConfig(t)
	installed := map[string]bool{}
	for _, c := range readNFPM(t).Contents {
		installed[c.Dst] = true
	}
	for name, b := range cfg.TrustBundles {
		for _, p := range b.Paths {
			if !installed[p] && !installed[strings.TrimSuffix(p, "/")] {
				t.Errorf("trust_bundles.%s: %s is not installed by the package", name, p)
			}
		}
	}
	for _, p := range []string{cfg.Identity.Auth.PKCS12, cfg.Identity.Auth.PasswordFile, cfg.Identity.Sign.PKCS12, cfg.Identity.Sign.PasswordFile} {
		if filepath.Dir(p) != "/etc/roc-proxy/private" {
			t.Errorf("identity file %s outside /etc/roc-proxy/private (root:roc-proxy 0750, made by the package)", p)
		}
	}
	u := readUnit(t)
	if !strings.HasPrefix(cfg.Audit.Dir, "/var/lib/"+u.one("Service.StateDirectory")+"/") {
		t.Errorf("audit.dir %s is not in the unit's StateDirectory (read-only elsewhere: ProtectSystem=strict)", cfg.Audit.Dir)
	}
	if !strings.HasPrefix(cfg.Revocation.CacheDir, "/var/cache/"+u.one("Service.CacheDirectory")+"/") {
		t.Errorf("revocation.cache_dir %s is not in the unit's CacheDirectory", cfg.Revocation.CacheDir)
	}
}

type packaged struct {
	Identity struct {
		Auth, Sign struct {
			PKCS12       string `json:"pkcs12"`
			PasswordFile string `json:"password_file"`
		}
	}
	TrustBundles map[string]struct {
		Paths []string `json:"paths"`
	} `json:"trust_bundles"`
	Audit struct {
		Dir string `json:"dir"`
	}
	Revocation struct {
		CacheDir string `json:"cache_dir"`
	}
}

func packagedConfig(t *testing.T) packaged {
	t.Helper()
	data, err := os.ReadFile("roc-proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c packaged
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// The unit's own command lines drive the real program: ExecStart serves
// the packaged configuration (its installed paths mapped to test
// material), ExecReload makes it reload, and systemd's stop (SIGTERM)
// ends it cleanly within TimeoutStopSec.
func TestSystemdUnitCommands(t *testing.T) {
	u := readUnit(t)
	bin := buildForUnit(t)
	cfgPath := filepath.Join(t.TempDir(), "roc-proxy.yaml")
	os.WriteFile(cfgPath, []byte(packagedTestConfig(t)), 0o640)

	args := strings.Fields(u.one("Service.ExecStart"))
	args[0], args[3] = bin, cfgPath
	cmd := exec.Command(args[0], args[1:]...)
	logs := &logWatch{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	if !logs.wait("roc-proxy started", 30*time.Second, exited) {
		t.Fatalf("ExecStart did not start:\n%s", logs.String())
	}

	// ExecReload, as systemd runs it: $MAINPID is the service's process.
	reload := strings.ReplaceAll(u.one("Service.ExecReload"), "$MAINPID", "${MAINPID}")
	rl := exec.Command("sh", "-c", reload)
	rl.Env = append(os.Environ(), "MAINPID="+strconv.Itoa(cmd.Process.Pid))
	if out, err := rl.CombinedOutput(); err != nil {
		t.Fatalf("ExecReload %q: %v\n%s", reload, err, out)
	}
	if !logs.wait("configuration reloaded", 20*time.Second, exited) {
		t.Fatalf("ExecReload did not reload the configuration:\n%s", logs.String())
	}

	// systemctl stop: SIGTERM, then SIGKILL after TimeoutStopSec.
	stop, _ := time.ParseDuration(u.one("Service.TimeoutStopSec"))
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("stopped with %v (a failure status makes Restart=on-failure start it again):\n%s", err, logs.String())
		}
	case <-time.After(stop):
		t.Fatalf("not stopped within TimeoutStopSec=%s:\n%s", stop, logs.String())
	}
	if !strings.Contains(logs.String(), "roc-proxy stopped") {
		t.Errorf("no clean stop in the log:\n%s", logs.String())
	}
}

// buildForUnit builds the program with the same script as the packages.
func buildForUnit(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "roc-proxy")
	build := exec.Command("sh", "scripts/build.sh", bin, "v0.0.0-unit-test", "unit")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// packagedTestConfig is the packaged configuration with its installed
// paths mapped to test material: the public bundles replaced by the test
// authorities and the CRL by a closed loopback port, so that nothing
// leaves 127.0.0.1.
func packagedTestConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	p := testpki.MustShared(t)
	os.MkdirAll(filepath.Join(dir, "pki"), 0o700)
	files, err := p.WriteFiles(filepath.Join(dir, "pki"), "unit-test", "")
	if err != nil {
		t.Fatal(err)
	}
	osi := filepath.Join(dir, "igc-osi")
	os.MkdirAll(osi, 0o755)
	data, _ := os.ReadFile(files.OSIBundle)
	os.WriteFile(filepath.Join(osi, "osi.pem"), data, 0o644)
	cfgText, _ := os.ReadFile("roc-proxy.yaml")
	cfg := strings.NewReplacer(
		"/etc/roc-proxy/private/org-auth-cli.p12", files.AuthP12,
		"/etc/roc-proxy/private/org-auth-cli.password", files.PasswordFile,
		"/etc/roc-proxy/private/org-sign.p12", files.SignP12,
		"/etc/roc-proxy/private/org-sign.password", files.PasswordFile,
		"/usr/share/roc-proxy/bundles/igc-sante-prod.pem", files.SanteBundle,
		"/usr/share/roc-proxy/bundles/igc-sante-test.pem", files.SanteBundle,
		"/etc/roc-proxy/trust/igc-osi/", osi+"/",
		"/var/lib/roc-proxy/", filepath.Join(dir, "state")+"/",
		"/var/cache/roc-proxy/", filepath.Join(dir, "cache")+"/",
		"http://igc-sante.esante.gouv.fr/CRL/ACI-EL-ORG.crl", "http://127.0.0.1:1/ACI-EL-ORG.crl",
		// revocation.issuers must name an authority of the bundles (issue
		// 10): the production ACI's subject becomes the test one's.
		"CN=AC IGC-SANTE ELEMENTAIRE ORGANISATIONS,OU=IGC-SANTE,OU=0002 187512751,O=ASIP-SANTE,C=FR", trust.SubjectDN(p.SanteOrg.Cert),
		"127.0.0.1:8080", "127.0.0.1:0", "127.0.0.1:9090", "127.0.0.1:0",
	).Replace(string(cfgText))
	for _, leak := range []string{"/etc/roc-proxy", "/usr/share", "/var/", "esante.gouv.fr", ":8080", ":9090"} {
		if strings.Contains(stripComments(cfg), leak) {
			t.Fatalf("unmapped path or address %q left in the test configuration:\n%s", leak, cfg)
		}
	}
	return cfg
}

func stripComments(s string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		b.WriteString(line + "\n")
	}
	return b.String()
}

// logWatch collects a process's log and waits for a message in it.
type logWatch struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logWatch) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logWatch) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// wait polls for msg until timeout, or until the process exits.
func (l *logWatch) wait(msg string, timeout time.Duration, exited chan error) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(l.String(), msg) {
			return true
		}
		select {
		case err := <-exited:
			exited <- err
			return strings.Contains(l.String(), msg)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}
