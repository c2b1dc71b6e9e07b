package democmd

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/cli/auditcmd"
	"github.com/roc-proxy/roc-proxy/internal/cli/cmdline"
	"github.com/roc-proxy/roc-proxy/internal/logging"
	"github.com/roc-proxy/roc-proxy/internal/sim"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

//go:embed demo.yaml.tmpl
var demoConfigTemplate string

// DemoAMC is the AMC number the simulated directory knows.
const DemoAMC = "123456789"

// DemoRevokedHost is the simulated AMC whose certificate is revoked.
const DemoRevokedHost = "revoque.amc.test"

// DemoDMPHost is the simulated DMP endpoint.
const DemoDMPHost = "dmp.sim.test"

// demoUser is the SIH user a VIHF is signed for.
var demoUser = map[string]string{
	"X-Roc-User-Id":     "810002345678",
	"X-Roc-User-Name":   "DUPONT Jeanne (Cardiologie)",
	"X-Roc-User-Roles":  "10^1.2.250.1.71.1.2.7^Médecin",
	"X-Roc-Patient-Ins": "279035121518989",
}

func cmdDemo(ctx context.Context, build BuildFunc, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	keep := fs.Bool("keep-running", false, "leave the simulators and the proxy running and print curl commands; stop with Ctrl-C")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: roc-proxy demo [--keep-running]

Generates a test PKI (IGC-Santé-like and IGC OSI-like) in a temporary folder,
starts simulated AMC partners requiring mutual TLS, runs roc-proxy on its
embedded demo configuration, plays a scripted SIH session and prints the
outcome of each step. Exits 1 unless every step had its expected outcome.
Nothing is installed and nothing leaves 127.0.0.1.`)
		fs.PrintDefaults()
	}
	if err := cmdline.ParseFlags(fs, args, stdout, stderr); err != nil {
		return cmdline.IgnoreHelp(err)
	}
	dir, err := os.MkdirTemp("", "roc-proxy-demo-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	env, err := startDemo(dir, stdout, build)
	if err != nil {
		return err
	}
	defer env.close()
	results := env.play(ctx)
	failed := printResults(stdout, results)
	if *keep {
		env.printCurl(stdout)
		<-ctx.Done()
	}
	// Stop the proxy (it drains and closes its audit log with a final
	// checkpoint), then check what it recorded, as the security team would.
	env.close()
	// The demo's ORG_SIGN comes from the test PKI it generated: that is
	// the authority its audit chain is anchored to.
	verifyArgs := []string{"--trust", filepath.Join(dir, "igc-sante-test.pem"), "--structure-id", testpki.IDNatStruct, filepath.Join(dir, "audit")}
	var out bytes.Buffer
	verr := auditcmd.Verify(verifyArgs, &out, stderr)
	fmt.Fprintf(stdout, "\nroc-proxy audit verify %s\n%s", strings.Join(verifyArgs, " "), out.String())
	if verr != nil {
		fmt.Fprintln(stdout, verr)
		return fmt.Errorf("demo: the audit log does not verify: %w", verr)
	}
	if failed > 0 {
		return fmt.Errorf("demo: %d step(s) did not have the expected outcome", failed)
	}
	return nil
}

// demoEnv is everything the demo started.
type demoEnv struct {
	dir, logPath  string
	sihURL        string
	adminURL      string
	sims          []*sim.Server
	revocation    *sim.RevocationServer
	stopProxy     context.CancelFunc
	proxyDone     chan error
	idbRequest    []byte
	searchRequest []byte
	dmpRequest    []byte
}

func startDemo(dir string, stdout io.Writer, build BuildFunc) (_ *demoEnv, err error) {
	env := &demoEnv{dir: dir, logPath: filepath.Join(dir, "roc-proxy.log"), proxyDone: make(chan error, 1)}
	defer func() {
		if err != nil {
			env.close()
		}
	}()
	// The CRL server and OCSP responder start first: the certificates
	// point at them.
	if env.revocation, err = sim.StartRevocation(nil); err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "Generating the test PKI in %s ...\n", dir)
	pkiOpts := testpki.Options{ServerNames: []string{testpki.AnnuaireHost, testpki.IDBHost, DemoRevokedHost},
		RevocationBaseURL: env.revocation.URL, DeltaCRL: true}
	pki, err := testpki.New(pkiOpts)
	if err != nil {
		return nil, err
	}
	env.revocation.PublishFor(pki)
	env.revocation.Revoke("ac-serveur", pki.Servers[DemoRevokedHost].Cert.SerialNumber)
	var pw [12]byte
	_, _ = rand.Read(pw[:])
	files, err := pki.WriteFiles(dir, hex.EncodeToString(pw[:]), testpki.IDBHost)
	if err != nil {
		return nil, err
	}
	santeRoots, err := trust.ReadPool(files.SanteBundle)
	if err != nil {
		return nil, err
	}
	// Partners that check tokens hold the IGC-Santé chain.
	tokenInter := x509.NewCertPool()
	tokenInter.AddCert(pki.SanteOrg.Cert)
	startSim := func(certFile, keyFile string, checkTokens bool, run func(sim.Options) (*sim.Server, error)) *sim.Server {
		if err != nil {
			return nil
		}
		var cert tls.Certificate
		if cert, err = tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			return nil
		}
		o := sim.Options{Certificate: &cert, ClientCAs: santeRoots}
		if checkTokens {
			o.TokenRoots, o.TokenIntermediates = santeRoots, tokenInter
		}
		var s *sim.Server
		if s, err = run(o); err == nil {
			env.sims = append(env.sims, s)
		}
		return s
	}
	idb := startSim(files.ServerCertPEM[testpki.IDBHost], files.ServerKeyPEM[testpki.IDBHost], true, sim.StartAMCService)
	var idbURL string
	if idb != nil {
		idbURL = "https://" + testpki.IDBHost + ":" + port(idb.Addr) + "/roc/idb"
	}
	annuaire := startSim(files.ServerCertPEM[testpki.AnnuaireHost], files.ServerKeyPEM[testpki.AnnuaireHost], false, func(o sim.Options) (*sim.Server, error) {
		return sim.StartAnnuaire(o, map[string][]sim.Address{DemoAMC: {{CodeService: "IDB", URL: idbURL}}})
	})
	impostor := startSim(files.RogueServerCert, files.RogueServerKey, false, sim.StartAMCService)
	revokedAMC := startSim(files.ServerCertPEM[DemoRevokedHost], files.ServerKeyPEM[DemoRevokedHost], false, sim.StartAMCService)
	// The DMP presents an IGC-Santé server certificate.
	var dmp *sim.Server
	if err == nil {
		var dmpCert *testpki.Cert
		if dmpCert, err = pki.IssueServerFor(pki.SanteOrg, "aci-el-org", DemoDMPHost, pkiOpts); err == nil {
			dmpFile, dmpKey := filepath.Join(dir, "server-dmp.pem"), filepath.Join(dir, "server-dmp.key")
			keyPEM, _ := dmpCert.KeyPEM()
			if err = os.WriteFile(dmpFile, testpki.PEM(dmpCert.Chain()...), 0o644); err == nil {
				if err = os.WriteFile(dmpKey, keyPEM, 0o600); err == nil {
					dmp = startSim(dmpFile, dmpKey, true, sim.StartDMP)
				}
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("starting simulators: %w", err)
	}

	var cfgText bytes.Buffer
	err = template.Must(template.New("demo").Parse(demoConfigTemplate)).Execute(&cfgText, map[string]any{
		"Dir": dir, "Files": files,
		"AnnuaireURL": annuaire.URL, "AnnuaireHost": testpki.AnnuaireHost,
		"IDBURL": idb.URL, "IDBHost": testpki.IDBHost, "ImpostorURL": impostor.URL,
		"RevokedURL": revokedAMC.URL, "RevokedHost": DemoRevokedHost, "CacheDir": filepath.Join(dir, "revocation-cache"),
		"ACServeur": trust.SubjectDN(pki.OSIServeur.Cert), "ACServeurCRL": pkiOpts.CRLURL("ac-serveur"), "ACServeurDelta": pkiOpts.DeltaCRLURL("ac-serveur"),
		"DMPURL": dmp.URL, "DMPHost": DemoDMPHost, "AuditDir": filepath.Join(dir, "audit"),
	})
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "roc-proxy.yaml")
	if err := os.WriteFile(cfgPath, cfgText.Bytes(), 0o600); err != nil {
		return nil, err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(env.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	log, flushLog, err := logging.New(cfg.Log, logFile)
	if err != nil {
		return nil, err
	}
	p, err := build(cfg, log)
	if err != nil {
		return nil, &config.FileError{File: cfgPath, Err: err}
	}
	sihLn, err := net.Listen("tcp", cfg.Listen.SIH)
	if err != nil {
		return nil, err
	}
	adminLn, err := net.Listen("tcp", cfg.Listen.Admin)
	if err != nil {
		sihLn.Close()
		return nil, err
	}
	env.sihURL, env.adminURL = "http://"+sihLn.Addr().String(), "http://"+adminLn.Addr().String()
	pctx, cancel := context.WithCancel(context.Background())
	env.stopProxy = cancel
	go func() {
		env.proxyDone <- p.Serve(pctx, sihLn, adminLn)
		flushLog()
		logFile.Close()
	}()
	env.searchRequest = sim.AnnuaireSearchRequest(DemoAMC, "IDB")
	env.idbRequest = sim.IDBRequest(DemoAMC, "0123456789")
	env.dmpRequest = sim.DMPRequest()
	for name, body := range map[string][]byte{"annuaire-search.xml": env.searchRequest, "idb-request.xml": env.idbRequest, "dmp-request.xml": env.dmpRequest} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(stdout, "Simulated AMC directory %s, AMC service %s, impostor %s, revoked AMC %s, CRL/OCSP %s; roc-proxy on %s (admin %s)\n\n",
		annuaire.Addr, idb.Addr, impostor.Addr, revokedAMC.Addr, strings.TrimPrefix(env.revocation.URL, "http://"), sihLn.Addr(), adminLn.Addr())
	return env, nil
}

// close stops everything; a second call does nothing.
func (env *demoEnv) close() {
	if env.stopProxy != nil {
		env.stopProxy()
		<-env.proxyDone
		env.stopProxy = nil
	}
	for _, s := range env.sims {
		s.Close()
	}
	env.sims = nil
	if env.revocation != nil {
		env.revocation.Close()
		env.revocation = nil
	}
}

// demoStep is one SIH call and what should come of it.
type demoStep struct {
	name, route, path string
	body              []byte
	header            map[string]string
	admin             bool
	wantStatus        int
	wantError         string // JSON error code[/reason] from the proxy
	wantBody          string // substring of a successful answer
}

type demoResult struct {
	demoStep
	status  int
	got     string
	latency time.Duration
	ok      bool
}

func (env *demoEnv) steps() []demoStep {
	return []demoStep{
		{name: "AMC directory lookup (SOAP 1.1 search)", route: "annuaire-amc", path: "/annuaire-amc/", body: env.searchRequest,
			wantStatus: 200, wantBody: "<code_service>IDB</code_service>"},
		{name: "rights check IDB at the AMC, with a ROC token", route: "amc-idb", path: "/amc/idb/", body: env.idbRequest,
			wantStatus: 200, wantBody: "<droits_ouverts>true</droits_ouverts>"},
		{name: "DMP document feed, with a VIHF", route: "dmp", path: "/dmp/", body: env.dmpRequest, header: demoUser,
			wantStatus: 200, wantBody: "ResponseStatusType:Success"},
		{name: "DMP call without the user's identity", route: "dmp", path: "/dmp/", body: env.dmpRequest,
			header:     map[string]string{"X-Roc-Patient-Ins": "279035121518989"},
			wantStatus: 400, wantError: "bad_token_values"},
		{name: "impostor AMC (certificate from an unknown CA)", route: "amc-imposteur", path: "/amc/imposteur/", body: env.idbRequest,
			wantStatus: 502, wantError: "upstream_tls/unknown_authority"},
		{name: "AMC certificate for another name", route: "amc-mauvais-nom", path: "/amc/mauvais-nom/", body: env.searchRequest,
			wantStatus: 502, wantError: "upstream_tls/name_mismatch"},
		{name: "AMC whose certificate is revoked", route: "amc-revoquee", path: "/amc/revoquee/", body: env.idbRequest,
			wantStatus: 502, wantError: "upstream_tls/revoked"},
		{name: "path no route serves", route: "-", path: "/inconnu/", body: env.idbRequest,
			wantStatus: 404, wantError: "unknown_route"},
		{name: "body over the route's 64 KiB limit", route: "amc-idb", path: "/amc/idb/", body: bytes.Repeat([]byte("x"), 100<<10),
			wantStatus: 413, wantError: "body_too_large"},
		{name: "Prometheus metrics on the admin port", route: "admin", path: "/metrics", admin: true,
			wantStatus: 200, wantBody: `roc_proxy_upstream_tls_errors_total{reason="unknown_authority",route="amc-imposteur"} 1`},
		{name: "revocation cache on the admin port", route: "admin", path: "/revocation", admin: true,
			wantStatus: 200, wantBody: `"url":"` + env.revocation.URL + `/crl/ac-serveur.crl"`},
	}
}

func (env *demoEnv) play(ctx context.Context) []demoResult {
	client := &http.Client{Timeout: 15 * time.Second}
	var out []demoResult
	for _, s := range env.steps() {
		r := demoResult{demoStep: s}
		method, base := http.MethodPost, env.sihURL
		if s.admin {
			method, base = http.MethodGet, env.adminURL
		}
		req, err := http.NewRequestWithContext(ctx, method, base+s.path, bytes.NewReader(s.body))
		if err != nil {
			r.got = err.Error()
			out = append(out, r)
			continue
		}
		if s.body != nil {
			req.Header.Set("Content-Type", "text/xml; charset=utf-8")
		}
		for k, v := range s.header {
			req.Header.Set(k, v)
		}
		start := time.Now()
		resp, err := client.Do(req)
		r.latency = time.Since(start)
		if err != nil {
			r.got = err.Error()
			out = append(out, r)
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		r.status = resp.StatusCode
		client := resp.Header.Get(sim.HeaderClientSubject)
		if cn, _, ok := strings.Cut(client, ","); ok {
			client = cn
		}
		if tok := resp.Header.Get(sim.HeaderTokenSubject); tok != "" {
			client += ", token for " + tok
		}
		r.got, r.ok = judge(s, resp.StatusCode, body, client)
		out = append(out, r)
	}
	return out
}

// judge compares an answer with the step's expectation; client is the
// subject of the certificate the simulated AMC verified, if any.
func judge(s demoStep, status int, body []byte, client string) (string, bool) {
	if s.wantError != "" {
		var e struct{ Error, Reason, Source string }
		_ = json.Unmarshal(body, &e)
		got := e.Error
		if e.Reason != "" && strings.Contains(s.wantError, "/") {
			got += "/" + e.Reason
		}
		ok := status == s.wantStatus && got == s.wantError
		if e.Source != "" {
			got += " (said by " + e.Source + ")"
		}
		return got, ok
	}
	if status == s.wantStatus && bytes.Contains(body, []byte(s.wantBody)) {
		if client != "" {
			return "answer; partner saw " + client, true
		}
		return "expected answer", true
	}
	return fmt.Sprintf("unexpected answer (%d bytes)", len(body)), false
}

func printResults(w io.Writer, results []demoResult) (failed int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tROUTE\tSTATUS\tLATENCY\tEXPECTED\tGOT\tRESULT")
	for _, r := range results {
		want := fmt.Sprintf("%d", r.wantStatus)
		if r.wantError != "" {
			want += " " + r.wantError
		}
		verdict := "ok"
		if !r.ok {
			verdict = "FAIL"
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.name, r.route, r.status, r.latency.Round(100*time.Microsecond), want, r.got, verdict)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d of %d steps as expected\n", len(results)-failed, len(results))
	return failed
}

func (env *demoEnv) printCurl(w io.Writer) {
	fmt.Fprintf(w, `
Everything keeps running (Ctrl-C to stop). Try:

  curl -s -X POST -H 'Content-Type: text/xml' --data-binary @%[1]s/annuaire-search.xml %[2]s/annuaire-amc/
  curl -s -X POST -H 'Content-Type: text/xml' --data-binary @%[1]s/idb-request.xml %[2]s/amc/idb/
  curl -s -X POST -H 'Content-Type: text/xml' --data-binary @%[1]s/idb-request.xml %[2]s/amc/imposteur/
  curl -s %[3]s/metrics | grep roc_proxy_
  curl -s %[3]s/readyz
  curl -s -X POST -H 'Content-Type: application/soap+xml' -H 'X-Roc-User-Id: 810002345678' \
       -H 'X-Roc-User-Name: DUPONT Jeanne' -H 'X-Roc-User-Roles: 10' -H 'X-Roc-Patient-Ins: 279035121518989' \
       --data-binary @%[1]s/dmp-request.xml %[2]s/dmp/
  go run ./cmd/roc-proxy audit show --verify-tokens --trust %[1]s/igc-sante-test.pem %[1]s/audit
  go run ./cmd/roc-proxy audit verify --trust %[1]s/igc-sante-test.pem --structure-id 1990000019 %[1]s/audit

Configuration: %[1]s/roc-proxy.yaml   Log: %[4]s
`, env.dir, env.sihURL, env.adminURL, env.logPath)
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
