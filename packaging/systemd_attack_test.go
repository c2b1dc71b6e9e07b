package packaging_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// writeFIFO opens the named pipe for writing (which waits for the program
// to open it for reading), writes data and closes it; it gives up when the
// program exits first.
func writeFIFO(t *testing.T, path string, data []byte, exited chan error, logs *logWatch) {
	t.Helper()
	opened := make(chan *os.File, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			opened <- nil
			return
		}
		opened <- f
	}()
	select {
	case f := <-opened:
		if f == nil {
			t.Fatal("cannot open the configuration pipe")
		}
		f.Write(data) // the program may die meanwhile: judged by its exit below
		f.Close()
	case err := <-exited:
		exited <- err
		// Unblock the opener: a reader that goes at once.
		if r, rerr := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0); rerr == nil {
			r.Close()
		}
		t.Fatalf("roc-proxy exited (%v) before reading its configuration:\n%s", err, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("roc-proxy did not read its configuration:\n%s", logs.String())
	}
}

// systemctl reload while the service starts (a certificate-renewal hook, a
// configuration-management run right after "systemctl start": Type=exec
// counts the service as started at exec) must not kill it: SIGHUP's
// default action ends a Go program that has not asked for the signal yet.
// The configuration is a named pipe so that the reload lands, every time,
// while roc-proxy is reading it.
func TestSystemdReloadDuringStartup(t *testing.T) {
	u := readUnit(t)
	bin := buildForUnit(t)
	cfg := []byte(packagedTestConfig(t))
	cfgPath := filepath.Join(t.TempDir(), "roc-proxy.yaml")
	if err := syscall.Mkfifo(cfgPath, 0o600); err != nil {
		t.Skipf("no named pipes here: %v", err)
	}

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

	// The program is reading its configuration once the pipe opens: now
	// systemd runs ExecReload.
	opened := make(chan *os.File, 1)
	go func() {
		f, _ := os.OpenFile(cfgPath, os.O_WRONLY, 0)
		opened <- f
	}()
	var pipe *os.File
	select {
	case pipe = <-opened:
	case err := <-exited:
		t.Fatalf("roc-proxy exited (%v) before reading its configuration:\n%s", err, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("roc-proxy did not read its configuration:\n%s", logs.String())
	}
	reload := strings.ReplaceAll(u.one("Service.ExecReload"), "$MAINPID", "${MAINPID}")
	rl := exec.Command("sh", "-c", reload)
	rl.Env = append(os.Environ(), "MAINPID="+strconv.Itoa(cmd.Process.Pid))
	if out, err := rl.CombinedOutput(); err != nil {
		t.Fatalf("ExecReload %q: %v\n%s", reload, err, out)
	}
	// Give a fatal signal the time to act before the program moves on.
	select {
	case err := <-exited:
		pipe.Close()
		t.Fatalf("systemctl reload during start-up killed roc-proxy (%v): systemd then restarts it, or not at all past its start limit:\n%s", err, logs.String())
	case <-time.After(500 * time.Millisecond):
	}
	pipe.Write(cfg)
	pipe.Close()
	if !logs.wait("roc-proxy started", 30*time.Second, exited) {
		t.Fatalf("roc-proxy did not start after a reload during start-up:\n%s", logs.String())
	}
	// The reload asked for is not lost: the configuration may have changed
	// after it was read.
	writeFIFO(t, cfgPath, cfg, exited, logs)
	if !logs.wait("configuration reloaded", 20*time.Second, exited) {
		t.Fatalf("the reload asked for during start-up was lost:\n%s", logs.String())
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("stopped with %v:\n%s", err, logs.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("not stopped:\n%s", logs.String())
	}
}

// The unit's commands must exist wherever the package installs: /bin/kill
// (ExecReload) comes from procps on Debian, a package minimal systems
// (debootstrap minbase, container-derived images) leave out. The package
// must then depend on what provides it, or "systemctl reload" fails with
// "Failed to execute /bin/kill".
func TestUnitCommandsComeWithThePackage(t *testing.T) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Skip("not a Debian machine (dpkg-query): the .deb's dependencies are not checked")
	}
	u := readUnit(t)
	var deps struct {
		Overrides map[string]struct {
			Depends []string `json:"depends"`
		} `json:"overrides"`
		Depends []string `json:"depends"`
	}
	data, err := os.ReadFile("nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &deps); err != nil {
		t.Fatal(err)
	}
	debDepends := append(append([]string(nil), deps.Depends...), deps.Overrides["deb"].Depends...)
	installed := map[string]bool{}
	for _, c := range readNFPM(t).Contents {
		installed[c.Dst] = true
	}
	for _, key := range []string{"Service.ExecStart", "Service.ExecReload"} {
		prog := strings.Fields(u.one(key))[0]
		if installed[prog] {
			continue
		}
		out, err := exec.Command("dpkg-query", "-S", prog).Output()
		if err != nil {
			t.Errorf("%s runs %s, which no Debian package here provides", key, prog)
			continue
		}
		pkg, _, _ := strings.Cut(strings.TrimSpace(string(out)), ":")
		essential, _ := exec.Command("dpkg-query", "-W", "-f=${Essential}", pkg).Output()
		if strings.TrimSpace(string(essential)) == "yes" {
			continue
		}
		found := false
		for _, d := range debDepends {
			found = found || strings.Fields(d)[0] == pkg
		}
		if !found {
			t.Errorf("%s runs %s from %s, which is not essential and not in the .deb's depends %v", key, prog, pkg, debDepends)
		}
	}
}
