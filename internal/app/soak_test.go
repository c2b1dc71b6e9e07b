package app

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// soakMetrics reads the gauges the soak test watches from /metrics.
func soakMetrics(admin string) (map[string]float64, error) {
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		switch name {
		case "go_goroutines", "go_memstats_heap_inuse_bytes", "process_resident_memory_bytes",
			"roc_proxy_http_body_memory_bytes", "roc_proxy_http_connections_open":
			out[name], _ = strconv.ParseFloat(value, 64)
		}
	}
	return out, sc.Err()
}

// TestSoakAbuse runs the abuse classes together against the real binary
// for a bounded time (10 s of abuse, bounded counts): slow clients, half-
// closed and never-finished bodies, huge declared lengths, clients that
// never read a 4 MB answer, malformed HTTP, path tricks and refused
// methods, and SIGHUP with valid, invalid and restart-only files (one adding
// a signing route with its signer and audit log). A normal
// client is served throughout and after; the answers to the abusers are
// the ones roc-proxy decided (never a 200 to a broken request); memory
// stays bounded, and goroutines and heap come back near their baseline;
// SIGTERM still ends the process.
func TestSoakAbuse(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	e := newTestEnv(t)
	bin := buildRocProxy(t, e.dir)
	big := strings.Repeat("<item>ouvert</item>", 4<<20/19)
	up := partner(t, e.pki, testpki.IDBHost, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Query().Get("big") != "" {
			io.WriteString(w, big)
			return
		}
		io.WriteString(w, "<ok/>")
	})
	const budget = 32 << 20
	text := yamlf(`listen: {sih: "127.0.0.1:0", admin: "127.0.0.1:0"}
log: {level: info}
server: {read_header_timeout: 1s, read_timeout: 2s, write_timeout: 1s, idle_timeout: 5s, max_body_memory: %s, max_connections: 512, shutdown_timeout: 3s}
identity:
  auth: {pkcs12: %s, password_file: %s}
  reload_interval: 1h
trust_bundles:
  osi: {paths: [%s]}
  sante: {paths: [%s]}
routes:
  - {name: idb, path_prefix: /idb/, upstream: %s, server_name: %s, trust: [osi], revocation: {policy: off}, max_response_bytes: 8388608}
`, budget, e.files.AuthP12, e.files.PasswordFile, e.files.OSIBundle, e.files.SanteBundle, up.URL, testpki.IDBHost)
	cfgPath := filepath.Join(e.dir, "soak.yaml")
	os.WriteFile(cfgPath, []byte(text), 0o600)
	// A low GOGC lets the heap come back to its live size while the
	// normal client trickles on after the abuse.
	cmd, sih, admin := launchRocProxy(t, bin, cfgPath, []string{"GOGC=25"})
	addr := strings.TrimPrefix(sih, "http://")

	normal := &http.Client{Timeout: 10 * time.Second}
	defer normal.CloseIdleConnections()
	call := func() error {
		resp, err := normal.Post(sih+"/idb/", "text/xml", strings.NewReader("<soap/>"))
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "<ok/>" {
			return fmt.Errorf("status %d, body %q", resp.StatusCode, b)
		}
		return nil
	}
	for range 50 {
		if err := call(); err != nil {
			t.Fatalf("warm-up: %v", err)
		}
	}
	metrics := func() map[string]float64 {
		t.Helper()
		m, err := soakMetrics(admin)
		if err != nil {
			t.Fatalf("admin endpoint: %v", err)
		}
		return m
	}
	base := metrics()
	t.Logf("baseline: %.0f goroutines, heap in use %.1f MiB, RSS %.1f MiB", base["go_goroutines"], base["go_memstats_heap_inuse_bytes"]/(1<<20), base["process_resident_memory_bytes"]/(1<<20))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var violations []string
	violation := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(violations) < 20 {
			violations = append(violations, fmt.Sprintf(format, args...))
		}
	}
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	// loop runs n workers, each calling f at most max times until stop.
	var counts sync.Map
	loop := func(name string, n, max int, f func()) {
		c := new(atomic.Int64)
		counts.Store(name, c)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < max && !stopped(); i++ {
					f()
					c.Add(1)
				}
			}()
		}
	}
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			violation("dial: %v", err)
			time.Sleep(100 * time.Millisecond)
			return nil
		}
		return c
	}
	// holdUntil keeps c open until stop or d, then closes it.
	holdUntil := func(c net.Conn, d time.Duration) {
		select {
		case <-stop:
		case <-time.After(d):
		}
		c.Close()
	}
	reply := func(c net.Conn) string {
		c.SetReadDeadline(time.Now().Add(8 * time.Second))
		b, _ := io.ReadAll(io.LimitReader(c, 64<<10))
		return string(b)
	}

	// Slow clients: a request line one byte at a time.
	loop("slow headers", 20, 200, func() {
		c := dial()
		if c == nil {
			return
		}
		defer c.Close()
		for _, b := range []byte("POST /idb/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n") {
			if stopped() {
				return
			}
			if _, err := c.Write([]byte{b}); err != nil {
				return // cut by read_header_timeout
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	// Bodies cut by a half-close: 400, never a 200.
	loop("half-closed bodies", 4, 500, func() {
		c := dial()
		if c == nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "POST /idb/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n<soap>")
		c.(*net.TCPConn).CloseWrite()
		if r := reply(c); !strings.HasPrefix(r, "HTTP/1.1 400 ") {
			violation("half-closed body answered %.40q", r)
		}
	})
	// Huge declared lengths, one byte sent: 408 at read_timeout.
	loop("huge declared length", 50, 100, func() {
		c := dial()
		if c == nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "POST /idb/ HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n<")
		if r := reply(c); r != "" && !strings.HasPrefix(r, "HTTP/1.1 408 ") && !strings.HasPrefix(r, "HTTP/1.1 503 ") {
			violation("stalled body answered %.40q", r)
		}
	})
	// Clients that never read their 4 MB answer.
	loop("never read", 10, 100, func() {
		c := dial()
		if c == nil {
			return
		}
		c.(*net.TCPConn).SetReadBuffer(4 << 10)
		io.WriteString(c, "POST /idb/?big=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
		holdUntil(c, 3*time.Second)
	})
	// Malformed HTTP: whatever the answer, never a 200.
	malformed := []string{
		"GARBAGE\r\n\r\n",
		"POST /idb/ HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
		"POST /idb/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"POST /idb/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nzz\r\n\r\n",
		"POST /idb/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
		"POST /idb/ HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n",
		"POST /idb/ HTTP/9.9\r\nHost: x\r\n\r\n",
		"POST /idb/ HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n",
	}
	var mal atomic.Int64
	loop("malformed", 2, 500, func() {
		c := dial()
		if c == nil {
			return
		}
		defer c.Close()
		req := malformed[int(mal.Add(1))%len(malformed)]
		io.WriteString(c, req)
		if r := reply(c); strings.HasPrefix(r, "HTTP/1.1 200 ") {
			violation("malformed request %.40q answered 200", req)
		}
	})
	// Path tricks and refused methods.
	tricks := []struct{ line, want string }{
		{"POST /idb/..;/x", "400"}, {"POST /idb/%2e%2e/x", "400"}, {"POST /idb/;/x", "400"},
		{`POST /idb/..\x`, "400"}, {"TRACE /idb/", "405"}, {"GET /idb/", "405"}, {"POST /nothing", "404"},
	}
	var tr atomic.Int64
	loop("bad paths and methods", 2, 500, func() {
		c := dial()
		if c == nil {
			return
		}
		defer c.Close()
		tc := tricks[int(tr.Add(1))%len(tricks)]
		io.WriteString(c, tc.line+" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		if r := reply(c); !strings.HasPrefix(r, "HTTP/1.1 "+tc.want+" ") {
			violation("%s answered %.40q, want %s", tc.line, r, tc.want)
		}
	})
	// SIGHUP with valid, invalid and restart-only files.
	files := []string{
		strings.Replace(text, "routes:\n", "routes:\n"+idb2Route(up.URL), 1),
		text + "routes_typo: 1\n",
		strings.Replace(text, "shutdown_timeout: 3s", "shutdown_timeout: 4s", 1),
		e.withAudit(e.withSign(withRoute(text, tokenRoute(up.URL)))), // needs a restart: used to kill the process
		text,
	}
	var hup atomic.Int64
	loop("SIGHUP", 1, 100, func() {
		if err := os.WriteFile(cfgPath+".new", []byte(files[int(hup.Add(1))%len(files)]), 0o600); err != nil {
			violation("writing the file: %v", err)
		}
		os.Rename(cfgPath+".new", cfgPath)
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			violation("SIGHUP: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	})
	// The normal client, throughout.
	var served, failed atomic.Int64
	loop("normal client", 2, 100000, func() {
		if err := call(); err != nil {
			failed.Add(1)
			violation("normal client: %v", err)
			return
		}
		served.Add(1)
	})
	// The memory held meanwhile.
	var peakHeap, peakBodies float64
	loop("sampler", 1, 100, func() {
		m, err := soakMetrics(admin)
		if err != nil {
			violation("admin endpoint during the abuse: %v", err)
			return
		}
		mu.Lock()
		peakHeap = max(peakHeap, m["go_memstats_heap_inuse_bytes"])
		peakBodies = max(peakBodies, m["roc_proxy_http_body_memory_bytes"])
		mu.Unlock()
		time.Sleep(200 * time.Millisecond)
	})

	time.Sleep(10 * time.Second)
	close(stop)
	wg.Wait()
	counts.Range(func(k, v any) bool {
		t.Logf("%s: %d", k, v.(*atomic.Int64).Load())
		return true
	})
	t.Logf("normal client: %d served, %d failed; peak heap in use %.1f MiB, peak bodies held %.1f MiB", served.Load(), failed.Load(), peakHeap/(1<<20), peakBodies/(1<<20))
	for _, v := range violations {
		t.Error(v)
	}
	if served.Load() < 20 {
		t.Errorf("the normal client was served %d times in 10 s", served.Load())
	}
	if peakBodies > budget {
		t.Errorf("bodies held %.0f bytes, over max_body_memory", peakBodies)
	}
	if limit := base["go_memstats_heap_inuse_bytes"] + 3*budget; peakHeap > limit {
		t.Errorf("heap in use peaked at %.1f MiB", peakHeap/(1<<20))
	}

	// Back to the baseline, with a normal client trickling on.
	replaceFile(t, cfgPath, []byte(text))
	cmd.Process.Signal(syscall.SIGHUP)
	var last map[string]float64
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := call(); err != nil {
			t.Fatalf("normal client after the abuse: %v", err)
		}
		last = metrics()
		if last["go_goroutines"] <= base["go_goroutines"]+10 && last["go_memstats_heap_inuse_bytes"] <= base["go_memstats_heap_inuse_bytes"]+16<<20 &&
			last["roc_proxy_http_body_memory_bytes"] == 0 && last["roc_proxy_http_connections_open"] <= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20 s after the abuse: %v, baseline %v", last, base)
		}
	}
	t.Logf("after: %.0f goroutines, heap in use %.1f MiB, RSS %.1f MiB", last["go_goroutines"], last["go_memstats_heap_inuse_bytes"]/(1<<20), last["process_resident_memory_bytes"]/(1<<20))

	normal.CloseIdleConnections()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("still running 15 s after SIGTERM (shutdown_timeout 3s)")
	}
}
