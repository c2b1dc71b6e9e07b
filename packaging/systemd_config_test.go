package packaging_test

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A broken configuration must not make systemd restart the service every
// RestartSec for ever (a log flooded with the same error, the audit folder
// reopened every 5 s): serve exits 78 (EX_CONFIG, sysexits.h) when the
// configuration or a file it names is wrong, the unit's
// RestartPreventExitStatus holds 78 and 2 (a wrong command line), and a
// failure a restart may mend (the port still held by the old process)
// keeps exit status 1, which Restart=on-failure restarts. Played with the
// real program on the unit's own ExecStart.
func TestSystemdBrokenConfigurationDoesNotRestartLoop(t *testing.T) {
	u := readUnit(t)
	var prevent []int
	for _, v := range u["Service.RestartPreventExitStatus"] {
		for _, f := range strings.Fields(v) {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("RestartPreventExitStatus %q", v)
			}
			prevent = append(prevent, n)
		}
	}
	if u.one("Service.Restart") != "on-failure" {
		t.Fatalf("Restart=%q", u.one("Service.Restart"))
	}
	bin := buildForUnit(t)
	good := packagedTestConfig(t)
	dir := t.TempDir()
	wrongPassword := filepath.Join(dir, "wrong-password")
	os.WriteFile(wrongPassword, []byte("not the password\n"), 0o600)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	firstP12 := func(cfg string) string { // the ORG_AUTH_CLI file the test configuration names
		for _, line := range strings.Split(cfg, "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == "pkcs12" {
				return strings.Trim(strings.TrimSpace(v), `"`)
			}
		}
		t.Fatal("no pkcs12 in the test configuration")
		return ""
	}
	firstPassword := func(cfg string) string {
		for _, line := range strings.Split(cfg, "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == "password_file" {
				return strings.Trim(strings.TrimSpace(v), `"`)
			}
		}
		t.Fatal("no password_file in the test configuration")
		return ""
	}
	for _, tc := range []struct {
		name    string
		cfg     string // "" : no file at all
		args    []string
		code    int
		restart bool
		says    string
	}{
		{name: "unknown key", cfg: good + "\nnot_a_key: 1\n", code: 78, says: "not_a_key"},
		{name: "missing configuration file", code: 78, says: "reading configuration"},
		{name: "PKCS#12 file missing", cfg: strings.Replace(good, firstP12(good), filepath.Join(dir, "absent.p12"), 1), code: 78, says: "absent.p12"},
		{name: "wrong PKCS#12 password", cfg: strings.Replace(good, firstPassword(good), wrongPassword, 1), code: 78, says: "wrong password"},
		// /dev/zero read whole would fill the memory: refused at once.
		{name: "password file is /dev/zero", cfg: strings.Replace(good, firstPassword(good), "/dev/zero", 1), code: 78, says: "/dev/zero: larger than 64 KiB"},
		{name: "wrong command line", args: []string{"--config", "a.yaml", "--config", "b.yaml"}, code: 2, says: "given twice"},
		// A read that fails with EIO (a soft NFS mount timing out, a
		// failing disk; /proc/self/mem answers EIO at offset 0) may
		// succeed at the next start: not EX_CONFIG.
		{name: "configuration file read fails (EIO)", args: []string{"--config", "/proc/self/mem"}, code: 1, restart: true, says: "input/output error"},
		{name: "password file read fails (EIO)", cfg: strings.Replace(good, firstPassword(good), "/proc/self/mem", 1), code: 1, restart: true, says: "input/output error"},
		// A port no restart makes valid is the configuration's fault.
		{name: "port out of range", cfg: strings.Replace(good, "sih: 127.0.0.1:0", "sih: 127.0.0.1:99999", 1), code: 78, says: "99999"},
		{name: "port held by another process", cfg: strings.Replace(good, "sih: 127.0.0.1:0", "sih: "+busy.Addr().String(), 1), code: 1, restart: true, says: "address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := strings.Fields(u.one("Service.ExecStart"))
			args[0] = bin
			args[3] = filepath.Join(t.TempDir(), "roc-proxy.yaml")
			if tc.cfg != "" {
				os.WriteFile(args[3], []byte(tc.cfg), 0o640)
			}
			if tc.args != nil {
				args = append([]string{bin, "serve"}, tc.args...)
			}
			cmd := exec.Command(args[0], args[1:]...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
			err := cmd.Wait()
			timer.Stop()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("serve did not fail: %v\n%s", err, stderr.String())
			}
			if exit.ExitCode() != tc.code || !strings.Contains(stderr.String(), tc.says) {
				t.Fatalf("exit status %d, want %d, and %q in:\n%s", exit.ExitCode(), tc.code, tc.says, stderr.String())
			}
			if restarts := !slices.Contains(prevent, tc.code); restarts != tc.restart {
				t.Errorf("exit status %d: systemd restarts=%v, want %v (RestartPreventExitStatus=%v)", tc.code, restarts, tc.restart, prevent)
			}
		})
	}
}

// The packaged listener is plain HTTP on 127.0.0.1:8080: any local user
// of the VM can get tokens signed. The configuration an administrator
// edits must say so where listen.sih is set, with the remedies, so that
// the warning is not only in a document nobody opens on install day.
func TestPackagedListenerWarnsAboutLocalUsers(t *testing.T) {
	data, err := os.ReadFile("roc-proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, "\n  sih: 127.0.0.1:8080")
	if i < 0 {
		t.Fatal("the packaged configuration no longer listens on 127.0.0.1:8080: check this warning still fits")
	}
	start := strings.LastIndex(text[:i], "\nlisten:")
	comment := strings.ToLower(text[start:i])
	for _, want := range []string{"any local user", "signed", "listen.tls", "client_ca", "allow_cidrs", "skuid", "docs/installation.md"} {
		if !strings.Contains(comment, want) {
			t.Errorf("the comment above listen.sih does not say %q:\n%s", want, text[start:i])
		}
	}
}
