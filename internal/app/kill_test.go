package app

import (
	"bufio"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/sim"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// TestSIGKILLUnderSignedTraffic runs roc-proxy as a child process, sends
// it concurrent signed traffic and kills it with SIGKILL: every token the
// partner received must have its signed record, and the chain must verify
// up to the last complete line.
func TestSIGKILLUnderSignedTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	// The security team's collector: every record must reach it at least
	// once, across the kill.
	k := newSigningChild(t, "kill", "checkpoint_every: 50")
	bin, cfgPath, auditDir, collector, p := k.bin, k.cfgPath, k.auditDir, k.collector, testpki.MustShared(t)

	cmd, base := startRocProxy(t, bin, cfgPath)

	// Kill it in the middle of the traffic: 8 x 250 requests at most, a
	// new token each time.
	killUnderLoad(t, cmd, base, 8, 250, 100, 10*time.Second, func(w, i int) string { return fmt.Sprintf("8100%04d%04d", w, i) })

	auditFiles, err := audit.ChainFiles(auditDir, "kill")
	if err != nil || len(auditFiles) == 0 {
		t.Fatalf("no audit files: %v", err)
	}
	anchor := &audit.Anchor{Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool(), StructureIDs: []string{testpki.IDNatStruct}}
	anchor.Roots.AddCert(p.SanteRoot.Cert)
	anchor.Intermediates.AddCert(p.SanteOrg.Cert)
	rep, err := audit.Verify(auditFiles, audit.VerifyOptions{Anchor: anchor})
	if err != nil {
		t.Fatalf("chain broken after SIGKILL: %v", err)
	}
	recs, err := audit.Select(auditFiles, audit.Filter{Types: []string{audit.TypeSigned}})
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string]bool{}
	for _, r := range recs {
		if r.Type == audit.TypeSigned {
			recorded[r.AssertionID] = true
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.received) < 100 {
		t.Fatalf("only %d tokens reached the partner before the kill", len(k.received))
	}
	for id := range k.received {
		if !recorded[id] {
			t.Fatalf("token %s reached the partner without a signed record", id)
		}
	}
	t.Logf("killed after %d tokens reached the partner; %d signed records, chain OK up to record %d, signed up to %d (%d warnings; %s)",
		len(k.received), rep.Signed, rep.LastSeq, rep.CoveredTo, len(rep.Warnings), rep.Uncovered)

	// Restarted, the proxy continues the chain in a new file that starts
	// with a checkpoint: the records the killed process wrote after its
	// last checkpoint are covered at once.
	cmd2, _ := startRocProxy(t, bin, cfgPath)
	cmd2.Process.Signal(syscall.SIGTERM)
	if err := cmd2.Wait(); err != nil {
		t.Fatalf("stopping the restarted proxy: %v", err)
	}
	auditFiles, _ = audit.ChainFiles(auditDir, "kill")
	after, err := audit.Verify(auditFiles, audit.VerifyOptions{Anchor: anchor})
	if err != nil || after.Uncovered != "" || after.CoveredTo != after.LastSeq || after.LastSeq <= rep.LastSeq {
		t.Fatalf("after a restart: %+v %v", after, err)
	}
	got := map[uint64]int{}
	for _, m := range collector.Messages() {
		var r audit.Record
		if err := json.Unmarshal(m.Msg, &r); err != nil {
			t.Fatalf("collector message: %v", err)
		}
		got[r.Seq]++
	}
	again := 0
	for seq := uint64(1); seq <= after.LastSeq; seq++ {
		if got[seq] == 0 {
			t.Fatalf("record %d never reached the collector", seq)
		}
		again += got[seq] - 1
	}
	if errs := collector.Errors(); len(errs) > 0 {
		t.Fatalf("collector errors: %v", errs)
	}
	t.Logf("all %d records reached the collector across the kill (%d delivered twice)", after.LastSeq, again)
}

// signingChild is what the SIGKILL tests run as a child process: the
// roc-proxy binary and a configuration with one DMP signing route whose
// audit chain (chain_id chain, plus the audit keys given) ships to a
// syslog collector, and a partner that notes the assertion ID of every
// token it receives.
type signingChild struct {
	bin, cfgPath, auditDir string
	dir                    string // the test's folder, holding all of these
	collector              *sim.SyslogCollector
	mu                     sync.Mutex
	received               map[string]bool // assertion IDs the partner got, under mu
}

func newSigningChild(t *testing.T, chain string, auditKeys rawYAML) *signingChild {
	t.Helper()
	dir := t.TempDir()
	c := &signingChild{dir: dir, bin: buildRocProxy(t, dir), auditDir: filepath.Join(dir, "audit"), received: map[string]bool{}}
	p := testpki.MustShared(t)
	files, err := p.WriteFiles(dir, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	idRE := regexp.MustCompile(`<saml:Assertion[^>]* ID="(_[0-9a-f]+)"`)
	up := partner(t, p, testpki.IDBHost, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if m := idRE.FindSubmatch(b); m != nil {
			c.mu.Lock()
			c.received[string(m[1])] = true
			c.mu.Unlock()
		}
		io.WriteString(w, "<ok/>")
	})
	if c.collector, err = sim.StartSyslogCollector(nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.collector.Close() })
	cfg := yamlf(`listen: {sih: "127.0.0.1:0", admin: "127.0.0.1:0"}
identity:
  auth: {pkcs12: %s, password_file: %s}
  sign: {pkcs12: %s, password_file: %s}
trust_bundles: {osi: {paths: [%s]}, sante: {paths: [%s]}}
audit: {dir: %s, chain_id: %s, %s, ship: {syslog: {address: %s, transport: tcp}}}
routes:
  - name: dmp
    path_prefix: /dmp/
    upstream: %s
    server_name: %s
    trust: [osi]
    revocation: {policy: off}
    token: {profile: vihf, vihf: {software_name: TEST, software_version: "1"}}
`, files.AuthP12, files.PasswordFile, files.SignP12, files.PasswordFile, files.OSIBundle, files.SanteBundle, c.auditDir, chain, auditKeys, c.collector.Addr, up.URL, testpki.IDBHost)
	c.cfgPath = filepath.Join(dir, "roc-proxy.yaml")
	if err := os.WriteFile(c.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// buildRocProxy builds the binary into dir.
func buildRocProxy(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "roc-proxy")
	build := exec.Command("go", "build", "-o", bin, "github.com/roc-proxy/roc-proxy/cmd/roc-proxy")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building roc-proxy: %v\n%s", err, out)
	}
	return bin
}

// startRocProxy runs "roc-proxy serve" and returns it with the SIH base
// URL read from its start-up log line. The process is killed at cleanup.
func startRocProxy(t *testing.T, bin, cfgPath string) (*exec.Cmd, string) {
	t.Helper()
	cmd, sih, _ := launchRocProxy(t, bin, cfgPath, nil)
	return cmd, sih
}

// launchRocProxy runs "roc-proxy serve" with env added to its environment
// and returns it with the SIH and admin base URLs read from its start-up
// log line. The process is killed at cleanup.
func launchRocProxy(t *testing.T, bin, cfgPath string, env []string) (cmd *exec.Cmd, sih, admin string) {
	t.Helper()
	cmd, sih, admin, _ = launchRocProxyLogged(t, bin, cfgPath, env)
	return cmd, sih, admin
}

// launchRocProxyLogged is launchRocProxy that also keeps the process's log
// (its standard error) for the test to read.
func launchRocProxyLogged(t *testing.T, bin, cfgPath string, env []string) (cmd *exec.Cmd, sih, admin string, logs *syncBuffer) {
	t.Helper()
	logs = &syncBuffer{}
	cmd = exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	started := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			var line struct{ Msg, Sih, Admin string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "roc-proxy started" {
				started <- [2]string{"http://" + line.Sih, "http://" + line.Admin}
			}
		}
		io.Copy(logs, stderr)
	}()
	select {
	case urls := <-started:
		return cmd, urls[0], urls[1], logs
	case <-time.After(20 * time.Second):
		t.Fatal("roc-proxy did not start")
		return nil, "", "", nil
	}
}

// killUnderLoad sends signed requests to base from workers goroutines (at
// most perWorker each, the user id of each from userID: a new token each
// time), SIGKILLs cmd once atLeast were answered 200 (or after wait), and
// returns how many were.
func killUnderLoad(t *testing.T, cmd *exec.Cmd, base string, workers, perWorker, atLeast int, wait time.Duration, userID func(w, i int) string) int {
	t.Helper()
	body := `<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><x/></S:Body></S:Envelope>`
	client := &http.Client{Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	var ok atomic.Int64
	stop := make(chan struct{})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < perWorker; i++ { // bounded
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodPost, base+"/dmp/", strings.NewReader(body))
				req.Header.Set("X-Roc-User-Id", userID(w, i))
				req.Header.Set("X-Roc-User-Name", "TEST User")
				req.Header.Set("X-Roc-User-Roles", "10")
				req.Header.Set("X-Roc-Patient-Ins", "279035121518989")
				resp, err := client.Do(req)
				if err != nil {
					return // killed
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				}
			}
		}(w)
	}
	deadline := time.Now().Add(wait)
	for ok.Load() < int64(atLeast) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	n := int(ok.Load())
	close(stop)
	wg.Wait()
	client.CloseIdleConnections()
	return n
}
