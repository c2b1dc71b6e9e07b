// Command harness compares, in interleaved rounds driven by wrk:
//   - mode nginx: roc-proxy with nginx as mutual-TLS reverse proxies in
//     front of the same upstream;
//   - mode revocation: roc-proxy with revocation checks off and on (hard,
//     warm cache) while the upstream closes every connection, so that every
//     request is a new handshake (connection churn);
//   - mode token: a route that signs a ROC token into every request (cache
//     hits) against the same route passing requests through;
//   - mode audit: that signing route with its audit records fsynced (what
//     ships) against the same without fsync;
//   - mode ship: that signing route (fsync on) shipping every audit record
//     to standard output and to a syslog collector over TLS, against the
//     same without shipping;
//   - mode all: nginx, roc-proxy's pass-through, net/http's floor, the
//     signing route with its audit records fsynced and not, and the
//     floor's signing route (bench/floor/signing.go: the token's bytes and
//     a durable record, nothing else) fsynced and not, all seven in the
//     same interleaved rounds, so that every ratio of issues 11 and 12
//     comes from one run;
//   - mode binary: two roc-proxy binaries (--base-roc-proxy against
//     --roc-proxy) on the same pass-through route, for A/B measurements of
//     a change under the same load and noise.
//
// The proxies' logs go to a logs/ folder apart from the certificates and
// trust bundles: roc-proxy watches the folders of those files (a renewal is
// applied without restart), and an access log written there would wake the
// watch at every request, as no production layout does.
//
// It prints requests/s, p50, p99 and CPU per request of each contender and
// the ratios. Run it through bench/run.sh, which installs nginx and wrk.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/sim"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}

type options struct {
	rocProxy    string
	duration    time.Duration
	rounds      int
	connections int
	threads     int
	keep        bool
	rocLogLevel string
	rocEnv      string
	mode        string
	baseRoc     string
	floor       string
	fsync       bool
	// binaryToken: mode binary compares the two builds on the signing
	// route.
	binaryToken bool
	// rocRevocation is the pass-through route's revocation policy in
	// modes nginx and binary: hard keeps a standing check per pooled
	// connection, asked before each request.
	rocRevocation string
}

func run() error {
	var o options
	flag.StringVar(&o.rocProxy, "roc-proxy", "bench/out/roc-proxy", "roc-proxy binary")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "load duration of one round for one proxy")
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved rounds (each proxy once per round)")
	flag.IntVar(&o.connections, "connections", 32, "concurrent SIH connections")
	flag.IntVar(&o.threads, "threads", 2, "wrk threads")
	flag.BoolVar(&o.keep, "keep", false, "keep the work folder")
	flag.StringVar(&o.mode, "mode", "nginx", "nginx (roc-proxy vs nginx), all (nginx, pass-through, floor, signing route and signing floor without and with fsync, in the same rounds), revocation (checks off vs on, connection churn), token (signed route vs pass-through), audit (fsync on vs off), ship (audit shipping off vs on) or binary (--base-roc-proxy vs --roc-proxy)")
	flag.StringVar(&o.baseRoc, "base-roc-proxy", "", "mode binary: the roc-proxy binary to compare --roc-proxy with")
	flag.StringVar(&o.floor, "floor", "", "mode nginx: also run this build of bench/floor (net/http's floor: server and upstream exchange, nothing else) in the same rounds")
	flag.StringVar(&o.rocRevocation, "roc-revocation", "off", "modes nginx and binary: roc-proxy's revocation policy on the pass-through route (off, soft, hard: a warm cache, pooled connections, each request asking its connection's standing check)")
	flag.BoolVar(&o.binaryToken, "binary-token", false, "mode binary: both builds run the signing route (ROC token, cache hits; audit fsync as --fsync) instead of the pass-through")
	flag.BoolVar(&o.fsync, "fsync", true, "mode token: the signing route's audit records are fsynced (what ships); false measures the route without the disk")
	flag.StringVar(&o.rocEnv, "roc-env", "", "extra environment of the roc-proxy process, as NAME=VALUE[,NAME=VALUE]")
	flag.StringVar(&o.rocLogLevel, "roc-log-level", "info", "roc-proxy log level (info writes one access-log line per request, as nginx does)")
	flag.Parse()
	if o.duration > time.Minute || o.rounds > 10 {
		return errors.New("refusing an unbounded run: duration <= 1m and rounds <= 10")
	}
	dir, err := os.MkdirTemp("", "roc-proxy-bench-")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	if o.mode != "nginx" && o.mode != "all" && o.mode != "revocation" && o.mode != "token" && o.mode != "audit" && o.mode != "ship" && o.mode != "binary" {
		return fmt.Errorf("unknown mode %q", o.mode)
	}
	if o.rocRevocation != "off" && o.rocRevocation != "soft" && o.rocRevocation != "hard" {
		return fmt.Errorf("unknown --roc-revocation %q", o.rocRevocation)
	}
	if o.mode == "all" && o.floor == "" {
		return errors.New("mode all needs --floor (bench/run.sh builds it)")
	}
	if o.mode == "binary" && o.baseRoc == "" {
		return errors.New("mode binary needs --base-roc-proxy")
	}
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o755); err != nil {
		return err
	}
	pkiOpts := testpki.Options{ServerNames: []string{testpki.IDBHost}}
	var revSrv *sim.RevocationServer // CRL server and OCSP responder of mode revocation
	if o.mode == "revocation" || o.rocRevocation != "off" {
		rs, err := sim.StartRevocation(nil)
		if err != nil {
			return err
		}
		defer rs.Close()
		pkiOpts.RevocationBaseURL = rs.URL
		defer func() {
			fmt.Printf("revocation requests on the network during the run: %d OCSP, %d CRL\n", rs.OCSPRequests.Load(), rs.CRLRequests.Load())
		}()
		revSrv = rs
	}
	pki, err := testpki.New(pkiOpts)
	if err != nil {
		return err
	}
	if revSrv != nil {
		revSrv.PublishFor(pki)
	}
	files, err := pki.WriteFiles(dir, "bench-password", "")
	if err != nil {
		return err
	}
	authChain := filepath.Join(dir, "org-auth-cli-chain.pem")
	if err := os.WriteFile(authChain, testpki.PEM(pki.AuthCli.Chain()...), 0o600); err != nil {
		return err
	}
	upstream, err := startUpstream(pki, o.mode == "revocation")
	if err != nil {
		return err
	}
	defer upstream.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(o.rounds*5+2)*(o.duration+30*time.Second))
	defer cancel()
	var base, cand, floor *proc
	var extra []*proc                  // mode all: the signing routes
	var collector *sim.SyslogCollector // the SIEM of mode ship
	rocToken := map[string]any{"token": map[string]any{"profile": "roc"}}
	switch o.mode {
	case "ship":
		ca, stopCollector, err := startCollector(pki, dir)
		if err != nil {
			return err
		}
		collector = stopCollector
		defer collector.Close()
		if base, err = startRocProxy(ctx, o, "no-ship", "off", rocToken, nil, true, dir, files, upstream.Addr().String()); err != nil {
			return err
		}
		defer base.stop()
		ship := map[string]any{"ship": map[string]any{"stdout": true, "syslog": map[string]any{"address": collector.Addr, "ca": ca, "server_name": "127.0.0.1"}}}
		if cand, err = startRocProxy(ctx, o, "ship", "off", rocToken, ship, true, dir, files, upstream.Addr().String()); err != nil {
			return err
		}
		defer cand.stop()
	case "audit":
		if base, err = startRocProxy(ctx, o, "no-fsync", "off", rocToken, nil, false, dir, files, upstream.Addr().String()); err != nil {
			return err
		}
		defer base.stop()
		if cand, err = startRocProxy(ctx, o, "fsync", "off", rocToken, nil, true, dir, files, upstream.Addr().String()); err != nil {
			return err
		}
		defer cand.stop()
	case "token":
		if base, err = startRocProxy(ctx, o, "pass-through", "off", nil, nil, true, dir, files, upstream.Addr().String()); err != nil {
			return err
		}
		defer base.stop()
		if cand, err = startRocProxy(ctx, o, tokenName(o.fsync), "off", rocToken, nil, o.fsync, dir, files, upstream.Addr().String()); err != nil {
			return err
		}
		defer cand.stop()
	case "binary":
		bo := o
		bo.rocProxy = o.baseRoc
		var route map[string]any
		fsync := true
		if o.binaryToken {
			route, fsync = rocToken, o.fsync
		}
		if base, err = startRocProxy(ctx, bo, "base", o.rocRevocation, route, nil, fsync, dir, files, upstream.Addr().String()); err != nil {
			return err
		}
		defer base.stop()
		if cand, err = startRocProxy(ctx, o, "candidate", o.rocRevocation, route, nil, fsync, dir, files, upstream.Addr().String()); err != nil {
			return err
		}
		defer cand.stop()
	case "nginx", "all":
		if cand, err = startRocProxy(ctx, o, "roc-proxy", o.rocRevocation, nil, nil, true, dir, files, upstream.Addr().String()); err != nil {
			return err
		}
		defer cand.stop()
		if base, err = startNginx(ctx, dir, files, authChain, upstream.Addr().String()); err != nil {
			return err
		}
		defer base.stop()
		fo := o // the floor, started as roc-proxy is
		fo.rocProxy = o.floor
		if o.floor != "" {
			if floor, err = startRocProxy(ctx, fo, "floor", "off", nil, nil, true, dir, files, upstream.Addr().String()); err != nil {
				return err
			}
			defer floor.stop()
		}
		if o.mode == "all" {
			// extra: roc-proxy's signing route without and with fsync,
			// then the floor's (bench/floor/signing.go).
			for _, b := range []options{o, fo} {
				for _, fsync := range []bool{false, true} {
					name := tokenName(fsync)
					if b.rocProxy == o.floor {
						name = "floor-" + strings.TrimPrefix(name, "roc-")
					}
					t, err := startRocProxy(ctx, b, name, "off", rocToken, nil, fsync, dir, files, upstream.Addr().String())
					if err != nil {
						return err
					}
					defer t.stop()
					extra = append(extra, t)
				}
			}
		}
	default:
		if base, err = startRocProxy(ctx, o, "rev-off", "off", nil, nil, true, dir, files, upstream.Addr().String()); err != nil {
			return err
		}
		defer base.stop()
		if cand, err = startRocProxy(ctx, o, "rev-hard", "hard", nil, nil, true, dir, files, upstream.Addr().String()); err != nil {
			return err
		}
		defer cand.stop()
	}

	body := filepath.Join(dir, "post.lua")
	// A ~2 KB SOAP 1.1 request, as the SIH sends to the AMC.
	soap := `<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><idb:demandeDroits xmlns:idb="urn:roc:idb">` +
		strings.Repeat("<x>0123456789</x>", 112) + `</idb:demandeDroits></S:Body></S:Envelope>`
	lua := fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = %q\nwrk.headers[\"Content-Type\"] = \"text/xml\"\n", soap)
	if err := os.WriteFile(body, []byte(lua), 0o644); err != nil {
		return err
	}
	order := []*proc{base, cand}
	if floor != nil {
		order = append(order, floor)
	}
	order = append(order, extra...)
	// Warm all (connection pools, TLS sessions) and check they answer 200.
	for _, p := range order {
		if err := check(p.url, soap); err != nil {
			return fmt.Errorf("%s: %w (log: %s)", p.name, err, p.logPath)
		}
	}
	fmt.Printf("%s vs %s, mTLS upstream on loopback (closing every connection: %v), %d rounds x %s, %d connections, wrk -t%d, %d cores\n\n",
		cand.name, base.name, o.mode == "revocation", o.rounds, o.duration, o.connections, o.threads, numCPU())
	results := map[string][]wrkResult{}
	for round := 0; round < o.rounds; round++ {
		for _, p := range order {
			before, harnessBefore := cpuUsed(p.cmd.Process.Pid), ownCPU()
			r, err := runWrk(ctx, o, body, p.url)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", p.name, round+1, err)
			}
			r.cpu = cpuUsed(p.cmd.Process.Pid) - before
			fmt.Printf("round %d %-9s %9.0f req/s  p50 %-8s p99 %-8s CPU/request %-8s errors %d",
				round+1, p.name, r.rps, r.p50, r.p99, r.cpuPerRequest(), r.errors)
			if o.mode == "ship" {
				// The upstream and the collector run in this process, on the
				// same cores: what the collector costs shows here.
				h := wrkResult{cpu: ownCPU() - harnessBefore, requests: r.requests}
				fmt.Printf("  harness (upstream, collector) CPU/request %s", h.cpuPerRequest())
			}
			fmt.Println()
			results[p.name] = append(results[p.name], r)
		}
		// Rotate: none always goes first (ABBA for two).
		order = append(order[1:], order[0])
	}
	switch o.mode {
	case "nginx":
		report(results, base.name, cand.name, "throughput goal >= 0.80x, p99 goal <= 1.50x")
		if floor != nil {
			report(results, base.name, floor.name, "net/http's floor")
			report(results, floor.name, cand.name, "what roc-proxy adds to the floor")
		}
	case "all":
		report(results, base.name, cand.name, "issue 12: throughput goal >= 0.80x, CPU per request goal <= 1.50x")
		report(results, base.name, floor.name, "net/http's floor")
		report(results, floor.name, cand.name, "what roc-proxy adds to the floor")
		report(results, cand.name, extra[0].name, "issue 11: throughput goal >= 0.85x without fsync")
		report(results, cand.name, extra[1].name, "issue 11: throughput goal >= 0.70x with fsync")
		report(results, floor.name, extra[2].name, "the signing floor without fsync: the token's bytes and a record written, nothing else")
		report(results, floor.name, extra[3].name, "the signing floor with fsync: the token's bytes and a record made durable, nothing else")
		report(results, extra[2].name, extra[0].name, "what roc-proxy's signing route adds to the signing floor, without fsync")
		report(results, extra[3].name, extra[1].name, "what roc-proxy's signing route adds to the signing floor, with fsync")
	case "token":
		goal := "throughput goal >= 0.70x with fsync"
		if !o.fsync {
			goal = "throughput goal >= 0.85x without fsync"
		}
		report(results, base.name, cand.name, goal)
	case "audit":
		report(results, base.name, cand.name, "throughput goal >= 0.80x")
	case "binary":
		report(results, base.name, cand.name, o.baseRoc+" vs "+o.rocProxy)
	case "ship":
		report(results, base.name, cand.name, "throughput goal >= 0.95x")
		lagAfter(cand, collector)
	default:
		report(results, base.name, cand.name, "throughput goal >= 0.95x")
	}
	return nil
}

// tokenName names the signing proxy of mode token after its audit setting.
func tokenName(fsync bool) string {
	if fsync {
		return "roc-token"
	}
	return "roc-token-nosync"
}

func numCPU() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

// startUpstream is the partner: mutual TLS with the test IGC OSI server
// certificate, requiring an IGC-Santé client certificate, answering a ~2 KB
// SOAP body.
func startUpstream(pki *testpki.PKI, closeEach bool) (net.Listener, error) {
	srv := pki.Servers[testpki.IDBHost]
	cert := srv.TLSCertificate()
	pool := x509.NewCertPool()
	pool.AddCert(pki.SanteRoot.Cert)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	answer := []byte(`<?xml version="1.0"?><S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>` +
		strings.Repeat("<item>ouvert</item>", 100) + `</S:Body></S:Envelope>`)
	s := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			if closeEach {
				w.Header().Set("Connection", "close")
			}
			w.Header().Set("Content-Type", "text/xml")
			w.Write(answer)
		}),
		TLSConfig: mtls.ServerConfig(mtls.ServerOptions{Certificate: cert, ClientCAs: pool}),
	}
	go s.Serve(tls.NewListener(ln, s.TLSConfig))
	return ln, nil
}

type proc struct {
	name, url, logPath string
	cmd                *exec.Cmd
}

func (p *proc) stop() {
	if p.cmd.Process != nil {
		p.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
		}
	}
}

// startProc starts argv and waits until sih tells the SIH address it
// serves on (extra: descriptors handed over from 3 on).
func startProc(ctx context.Context, name, logPath string, env []string, extra []*os.File, sih func(pid int) string, argv ...string) (*proc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.ExtraFiles = extra
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if addr := sih(cmd.Process.Pid); addr != "" {
			p.url = "http://" + addr + "/idb/"
			return p, nil
		}
	}
	p.stop()
	log, _ := os.ReadFile(logPath)
	return nil, fmt.Errorf("%s did not listen:\n%s", name, log)
}

// startRocProxy runs o.rocProxy (roc-proxy, or the floor) on a
// configuration with one route to upstream, built as YAML from values, not
// text: route and audit add their keys to the route and the audit
// section.
func startRocProxy(ctx context.Context, o options, name, policy string, route, audit map[string]any, fsync bool, dir string, f *testpki.Files, upstream string) (*proc, error) {
	source := func(p12 string) map[string]any { return map[string]any{"pkcs12": p12, "password_file": f.PasswordFile} }
	idb := map[string]any{"name": "idb", "path_prefix": "/idb/", "upstream": "https://" + upstream + "/roc/idb",
		"server_name": testpki.IDBHost, "trust": []string{"osi"}, "revocation": map[string]any{"policy": policy}}
	for k, v := range route {
		idb[k] = v
	}
	auditSection := map[string]any{"dir": filepath.Join(dir, name+"-audit"), "chain_id": name, "fsync": fsync}
	for k, v := range audit {
		auditSection[k] = v
	}
	cfg, err := yaml.Marshal(map[string]any{
		"listen":   map[string]any{"sih": "127.0.0.1:0", "admin": "127.0.0.1:0"},
		"log":      map[string]any{"level": o.rocLogLevel, "format": "json"},
		"identity": map[string]any{"auth": source(f.AuthP12), "sign": source(f.SignP12)},
		"trust_bundles": map[string]any{
			"osi":   map[string]any{"paths": []string{f.OSIBundle}},
			"sante": map[string]any{"paths": []string{f.SanteBundle}},
		},
		"audit":  auditSection,
		"routes": []any{idb},
	})
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		return nil, err
	}
	floor := o.floor != "" && o.rocProxy == o.floor // no admin endpoint
	sih := func(pid int) string { return sihAddr(pid, !floor) }
	return startProc(ctx, name, filepath.Join(dir, "logs", name+".log"), splitEnv(o.rocEnv), nil, sih, o.rocProxy, "serve", "--config", path)
}

func startNginx(ctx context.Context, dir string, f *testpki.Files, authChain, upstream string) (*proc, error) {
	ln, sih, err := inheritedListener()
	if err != nil {
		return nil, err
	}
	defer ln.Close() // nginx holds its own descriptor once started
	// As close to roc-proxy as nginx gets: verified upstream certificate
	// against the same bundle and name, same client certificate, pooled
	// keep-alive connections, access log to a file.
	conf := fmt.Sprintf(`user root;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log %[1]s/logs/nginx-access.log;
  client_body_temp_path %[1]s/client_body;
  proxy_temp_path %[1]s/proxy_temp;
  fastcgi_temp_path %[1]s/fastcgi_temp;
  uwsgi_temp_path %[1]s/uwsgi_temp;
  scgi_temp_path %[1]s/scgi_temp;
  upstream amc { server %[2]s; keepalive 64; }
  server {
    listen %[3]s;
    client_max_body_size 10m;
    location /idb/ {
      proxy_pass https://amc/roc/idb/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host %[4]s;
      proxy_ssl_certificate %[5]s;
      proxy_ssl_certificate_key %[6]s;
      proxy_ssl_trusted_certificate %[7]s;
      proxy_ssl_verify on;
      proxy_ssl_verify_depth 3;
      proxy_ssl_name %[4]s;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
    }
  }
}
`, dir, upstream, sih, testpki.IDBHost, authChain, f.AuthKeyPEM, f.OSIBundle)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath("nginx")
	if err != nil {
		return nil, errors.New("nginx not found: run bench/run.sh, which installs nginx-light")
	}
	// NGINX="3;" hands nginx the listener on descriptor 3: the listen
	// directive of the same address takes it instead of binding.
	return startProc(ctx, "nginx", filepath.Join(dir, "logs", "nginx.log"), []string{"NGINX=3;"}, []*os.File{ln},
		func(int) string { return sih }, bin, "-p", dir, "-c", path, "-g", "daemon off;")
}

func splitEnv(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func check(url, body string) error {
	for i := 0; i < 20; i++ {
		resp, err := http.Post(url, "text/xml", strings.NewReader(body))
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("warm-up answered %d", resp.StatusCode)
		}
	}
	return nil
}

type wrkResult struct {
	rps      float64
	p50, p99 time.Duration
	errors   int
	requests float64
	cpu      time.Duration // CPU time the proxy used during the round
}

// cpuUsed is the user+system CPU time of pid and its direct children
// (nginx's workers), from /proc.
// ownCPU is the user+system CPU time of this process alone (its threads,
// not its children).
func ownCPU() time.Duration {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

func cpuUsed(pid int) time.Duration {
	pids := []int{pid}
	if kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)); err == nil {
		for _, f := range strings.Fields(string(kids)) {
			if k, err := strconv.Atoi(f); err == nil {
				pids = append(pids, k)
			}
		}
	}
	var ticks int64
	for _, p := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces): utime and
		// stime are the 12th and 13th.
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
		f := strings.Fields(rest)
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

var (
	reRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reTotal   = regexp.MustCompile(`(\d+) requests in `)
	reP50     = regexp.MustCompile(`\n\s+50%\s+([0-9.]+)(us|ms|s)`)
	reP99     = regexp.MustCompile(`\n\s+99%\s+([0-9.]+)(us|ms|s)`)
	reNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	reSockErr = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func runWrk(ctx context.Context, o options, script, url string) (wrkResult, error) {
	cmd := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(o.threads), "-c", strconv.Itoa(o.connections),
		"-d", o.duration.String(), "--timeout", "5s", "--latency", "-s", script, url)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w\n%s", err, out.String())
	}
	s := out.String()
	var r wrkResult
	if m := reTotal.FindStringSubmatch(s); m != nil {
		r.requests, _ = strconv.ParseFloat(m[1], 64)
	}
	m := reRPS.FindStringSubmatch(s)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk output:\n%s", s)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	r.p50, r.p99 = latency(reP50.FindStringSubmatch(s)), latency(reP99.FindStringSubmatch(s))
	if m := reNon2xx.FindStringSubmatch(s); m != nil {
		r.errors, _ = strconv.Atoi(m[1])
	}
	if m := reSockErr.FindStringSubmatch(s); m != nil {
		for _, v := range m[1:] {
			n, _ := strconv.Atoi(v)
			r.errors += n
		}
	}
	return r, nil
}

func (r wrkResult) cpuPerRequest() time.Duration {
	if r.requests == 0 {
		return 0
	}
	return time.Duration(float64(r.cpu) / r.requests)
}

func latency(m []string) time.Duration {
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[2]]
	return time.Duration(v * float64(unit))
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func report(results map[string][]wrkResult, base, cand, goals string) {
	med := func(name string, f func(wrkResult) float64) float64 {
		var xs []float64
		for _, r := range results[name] {
			xs = append(xs, f(r))
		}
		return median(xs)
	}
	rps := func(r wrkResult) float64 { return r.rps }
	p50 := func(r wrkResult) float64 { return float64(r.p50) }
	p99 := func(r wrkResult) float64 { return float64(r.p99) }
	cpu := func(r wrkResult) float64 { return float64(r.cpuPerRequest()) }
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "proxy\treq/s (median)\tp50\tp99\tCPU/request")
	for _, n := range []string{base, cand} {
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\n", n, med(n, rps), time.Duration(med(n, p50)), time.Duration(med(n, p99)), time.Duration(med(n, cpu)))
	}
	tw.Flush()
	fmt.Printf("\nratios %s/%s: throughput %.2fx, p50 %.2fx, p99 %.2fx, CPU per request %.2fx (%s)\n", cand, base,
		med(cand, rps)/med(base, rps), med(cand, p50)/med(base, p50), med(cand, p99)/med(base, p99), med(cand, cpu)/med(base, cpu), goals)
	if lo, hi, ok := roundRange(results[base], results[cand]); ok {
		// The spread of one round against the same round: how much the
		// machine moved during the run.
		fmt.Printf("round by round, throughput %.2fx to %.2fx\n", lo, hi)
	}
}

// roundRange is the lowest and highest throughput ratio of cand to base
// within the same round (ok false with fewer than two rounds).
func roundRange(base, cand []wrkResult) (lo, hi float64, ok bool) {
	n := min(len(base), len(cand))
	for i := 0; i < n; i++ {
		if base[i].rps <= 0 {
			continue
		}
		r := cand[i].rps / base[i].rps
		if !ok || r < lo {
			lo = r
		}
		if !ok || r > hi {
			hi = r
		}
		ok = true
	}
	return lo, hi, ok && n > 1
}

// startCollector is the security team's syslog collector over TLS, with a
// certificate for 127.0.0.1 from the test IGC OSI authority (written to
// dir as the CA roc-proxy trusts for it); it counts messages, keeps none.
func startCollector(pki *testpki.PKI, dir string) (string, *sim.SyslogCollector, error) {
	srv, err := pki.IssueServer(pki.OSIServeur, "127.0.0.1", testpki.Options{})
	if err != nil {
		return "", nil, err
	}
	ca := filepath.Join(dir, "collector-ca.pem")
	if err := os.WriteFile(ca, testpki.PEM(pki.OSIRoot.Cert), 0o644); err != nil {
		return "", nil, err
	}
	c, err := sim.StartSyslogCollector(mtls.ServerConfig(mtls.ServerOptions{Certificate: srv.TLSCertificate()}))
	if err != nil {
		return "", nil, err
	}
	c.Discard.Store(true)
	return ca, c, nil
}

// lagAfter says how far the collector is behind once the load stops: the
// shipping lag metric of the process, and the messages received.
func lagAfter(p *proc, c *sim.SyslogCollector) {
	time.Sleep(2 * time.Second)
	fmt.Printf("\nshipping: %d messages at the collector; %s\n", c.Received.Load(), metricLines(p, "roc_proxy_audit_ship_lag_records", "roc_proxy_audit_shipped_records_total", "roc_proxy_audit_records_total"))
}

// metricLines reads the named metrics from the process's admin port, found
// in its start-up log line.
func metricLines(p *proc, names ...string) string {
	log, _ := os.ReadFile(p.logPath)
	m := regexp.MustCompile(`"admin":"([^"]+)"`).FindSubmatch(log)
	if m == nil {
		return "admin address not found"
	}
	resp, err := http.Get("http://" + string(m[1]) + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out []string
	for _, line := range strings.Split(string(body), "\n") {
		for _, n := range names {
			if strings.HasPrefix(line, n) {
				out = append(out, line)
			}
		}
	}
	return strings.Join(out, "; ")
}
