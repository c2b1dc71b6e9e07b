package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// rawReply is what a client speaking raw HTTP/1.1 got back.
type rawReply struct {
	text   string // every byte read
	closed bool   // the server closed the connection (EOF) before the read bound
}

func (r rawReply) status() string {
	line, _, _ := strings.Cut(r.text, "\r\n")
	return line
}

// rawExchange writes request on a new connection to addr, half-closes the
// connection's write side when halfClose is set, and reads whatever comes
// back until the server closes the connection or 5 s pass.
func rawExchange(t *testing.T, addr, request string, halfClose bool) rawReply {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	if halfClose {
		conn.(*net.TCPConn).CloseWrite()
	}
	return readReply(conn, 5*time.Second)
}

func readReply(conn net.Conn, bound time.Duration) rawReply {
	conn.SetReadDeadline(time.Now().Add(bound))
	var buf bytes.Buffer
	_, err := io.Copy(&buf, conn)
	return rawReply{text: buf.String(), closed: err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)}
}

// jsonBody returns the JSON error body of a raw reply.
func (r rawReply) problem(t *testing.T) problemBody {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(r.text)), nil)
	if err != nil {
		t.Fatalf("unreadable reply %q: %v", r.text, err)
	}
	defer resp.Body.Close()
	return decodeProblem(t, resp)
}

// observed returns a logger recording the access log for assertions.
func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.InfoLevel)
	return zap.New(core), logs
}

func accessStatuses(logs *observer.ObservedLogs) []int64 {
	var out []int64
	for _, e := range logs.FilterMessage("request").All() {
		out = append(out, e.ContextMap()["status"].(int64))
	}
	return out
}

// A SIH whose request body never fully arrives gets a status roc-proxy
// decided (400 or 408, with the JSON body), never net/http's implicit 200,
// and the failure is the client's: not a 502 or 504 blamed on the partner.
func TestIncompleteBodyIsTheClients(t *testing.T) {
	p := pki(t)
	up := startUpstream(t, p.Servers[testpki.IDBHost], p.SanteRoot, echo)
	f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: up.URL, serverName: testpki.IDBHost}})
	srv := httptest.NewUnstartedServer(f.h)
	srv.Config.ReadTimeout = 500 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	for _, tc := range []struct {
		name      string
		request   string
		halfClose bool
		status    int
		reason    string
	}{
		{"declared length, body cut by a half-close", "POST /r/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n<soap>", true, 400, "incomplete_body"},
		{"chunked body without its last chunk, half-closed", "POST /r/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n<soap>\r\n", true, 400, "incomplete_body"},
		{"malformed chunk", "POST /r/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n<soap>\r\n0\r\n\r\n", false, 400, "incomplete_body"},
		{"slow body cut by read_timeout", "POST /r/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n<soap>", false, 408, "read_timeout"},
		{"chunked body stalled until read_timeout", "POST /r/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n<soap>\r\n", false, 408, "read_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits := up.hits.Load()
			r := rawExchange(t, addr, tc.request, tc.halfClose)
			if want := fmt.Sprintf("HTTP/1.1 %d ", tc.status); !strings.HasPrefix(r.text, want) {
				t.Fatalf("got %q, want %s", r.status(), want)
			}
			pb := r.problem(t)
			if pb.Reason != tc.reason || pb.RequestID == "" {
				t.Errorf("body %+v, want reason %s", pb, tc.reason)
			}
			if !r.closed {
				t.Error("the connection stays open after an unread body")
			}
			if up.hits.Load() != hits {
				t.Error("an incomplete body reached the partner")
			}
		})
	}
	for _, code := range []string{"200", "499", "502", "504"} {
		if n := testutil.ToFloat64(f.m.Requests.WithLabelValues("r", code)); n != 0 {
			t.Errorf("requests_total{code=%s} = %v: a client's broken body counted against the partner or as served", code, n)
		}
	}
	if n := testutil.ToFloat64(f.m.Requests.WithLabelValues("r", "400")) + testutil.ToFloat64(f.m.Requests.WithLabelValues("r", "408")); n != 5 {
		t.Errorf("400 and 408 counted %v times, want 5", n)
	}
}

// A SIH that sends its whole body and then half-closes while the partner
// thinks: net/http cancels the request, and nothing may go out that
// roc-proxy did not decide: no status line at all, the connection closed;
// logged and counted as 499.
func TestClientGoneGetsNoFalseStatus(t *testing.T) {
	p := pki(t)
	up := startUpstream(t, p.Servers[testpki.IDBHost], p.SanteRoot, func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // then net/http sees roc-proxy close the connection
		<-r.Context().Done()
	})
	log, logs := observed()
	f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: up.URL, serverName: testpki.IDBHost}}, func(o *Options) { o.Logger = log })
	srv := f.server(t)
	r := rawExchange(t, srv.Listener.Addr().String(), "POST /r/ HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n<soap>", true)
	if r.text != "" || !r.closed {
		t.Fatalf("a departed client was sent %q (closed %v), want the connection closed with nothing", r.text, r.closed)
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(f.m.Requests.WithLabelValues("r", "499")) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("not counted as 499; access log statuses %v", accessStatuses(logs))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Interim 1xx answers (the partner's 103 Early Hints, the 100 Continue of
// an Expect: 100-continue exchange) are not the final status: the access
// log, the requests metric and the token's result record the final one,
// and the SIH still gets its request id.
func TestFinalStatusIsRecordedNot1xx(t *testing.T) {
	p := pki(t)
	final := 200
	var mu sync.Mutex
	up := startUpstream(t, p.Servers[testpki.IDBHost], p.SanteRoot, func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // a Go partner answers 100 Continue to an Expect it sees
		if r.URL.Query().Get("hints") != "" {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
		}
		mu.Lock()
		code := final
		mu.Unlock()
		w.WriteHeader(code)
		io.WriteString(w, "<ok/>")
	})
	log, logs := observed()
	f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: up.URL, serverName: testpki.IDBHost}}, func(o *Options) { o.Logger = log })
	tokens := &resultRecorder{}
	f.h.routes[0].Token = tokens
	srv := f.server(t)
	for _, tc := range []struct {
		name   string
		query  string
		expect bool
		final  int
	}{
		{"Expect: 100-continue", "", true, 200},
		{"103 Early Hints, then 200", "?hints=1", false, 200},
		{"103 Early Hints, then 500", "?hints=1", false, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			final = tc.final
			mu.Unlock()
			logs.TakeAll()
			before := testutil.ToFloat64(f.m.Requests.WithLabelValues("r", fmt.Sprint(tc.final)))
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/r/"+tc.query, strings.NewReader("<soap/>"))
			req.Header.Set(HeaderRequestID, "final-status-1")
			if tc.expect {
				req.Header.Set("Expect", "100-continue")
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.final {
				t.Fatalf("SIH got %d, want %d", resp.StatusCode, tc.final)
			}
			if got := resp.Header.Values(HeaderRequestID); len(got) != 1 || got[0] != "final-status-1" {
				t.Errorf("SIH got request ids %v", got)
			}
			if got := accessStatuses(logs); len(got) != 1 || got[0] != int64(tc.final) {
				t.Errorf("access log statuses %v, want [%d]", got, tc.final)
			}
			if n := testutil.ToFloat64(f.m.Requests.WithLabelValues("r", fmt.Sprint(tc.final))); n != before+1 {
				t.Errorf("requests_total{code=%d} went from %v to %v", tc.final, before, n)
			}
			if got := tokens.last(); got != tc.final {
				t.Errorf("token result recorded %d, want %d", got, tc.final)
			}
		})
	}
	for _, code := range []string{"100", "103"} {
		if n := testutil.ToFloat64(f.m.Requests.WithLabelValues("r", code)); n != 0 {
			t.Errorf("requests_total{code=%s} = %v", code, n)
		}
	}
}

// resultRecorder is a token source that adds no token: it observes the
// status the handler reports for the token's result record.
type resultRecorder struct {
	mu     sync.Mutex
	status int
}

func (r *resultRecorder) Token(tr TokenRequest) ([]byte, string, error) {
	return tr.Body, "_observed", nil
}

func (r *resultRecorder) Result(_, _ string, status int, _ time.Duration, _ string) {
	r.mu.Lock()
	r.status = status
	r.mu.Unlock()
}

func (r *resultRecorder) last() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Matrix parameters (`;`) and backslashes are refused before routing:
// Tomcat-style partners drop `;...` from a segment before normalising, so
// `/r/..;/x` would escape the route's base path there.
func TestPathTricksAreRefused(t *testing.T) {
	p := pki(t)
	up := startUpstream(t, p.Servers[testpki.IDBHost], p.SanteRoot, echo)
	f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: up.URL + "/base", serverName: testpki.IDBHost}})
	srv := f.server(t)
	addr := srv.Listener.Addr().String()
	for _, path := range []string{"/r/..;/x", "/r/..;a=b/x", "/r/.;/x", "/r/;/x", "/r/x;jsessionid=1", "/r/..%3b/x", "/r/..%3B/x", `/r/..\x`, "/r/%5c../x", "/r/%2e%2e;/x", "/r;/x"} {
		t.Run(path, func(t *testing.T) {
			r := rawExchange(t, addr, "POST "+path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", false)
			if !strings.HasPrefix(r.text, "HTTP/1.1 400 ") {
				t.Fatalf("%s: %q", path, r.status())
			}
			if pb := r.problem(t); pb.Error != CodeBadRequest || pb.Reason != "path" {
				t.Errorf("body %+v", pb)
			}
		})
	}
	if n := up.hits.Load(); n != 0 {
		t.Fatalf("%d tricked paths reached the partner", n)
	}
}

// RFC 9112 §6.1: a request with both Content-Length and Transfer-Encoding
// may be a smuggling attempt; the connection is closed after the answer so
// that nothing the client sent after it is read as another request.
func TestContentLengthWithTransferEncodingClosesTheConnection(t *testing.T) {
	p := pki(t)
	up := startUpstream(t, p.Servers[testpki.IDBHost], p.SanteRoot, echo)
	f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: up.URL, serverName: testpki.IDBHost}})
	srv := f.server(t)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Read by Content-Length, the smuggled request would start at "GET".
	io.WriteString(conn, "POST /r/ HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"6\r\n<soap>\r\n0\r\n\r\nPOST /r/smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	r := readReply(conn, 5*time.Second)
	if !strings.HasPrefix(r.text, "HTTP/1.1 200 ") {
		t.Fatalf("got %q", r.status())
	}
	if !r.closed || strings.Count(r.text, "HTTP/1.1 ") != 1 {
		t.Fatalf("the connection stayed open (closed %v) or served the next request: %q", r.closed, r.text)
	}
	if !strings.Contains(r.text, "\r\nConnection: close\r\n") {
		t.Error("the answer does not say Connection: close")
	}
}

// A route serves only its methods: POST by default; TRACE and the others
// get 405 with Allow and never reach the partner.
func TestRouteMethods(t *testing.T) {
	p := pki(t)
	up := startUpstream(t, p.Servers[testpki.IDBHost], p.SanteRoot, echo)
	f := newFixture(t, map[string]routeOpt{
		"soap": {prefix: "/soap/", upstream: up.URL, serverName: testpki.IDBHost},
		"wsdl": {prefix: "/wsdl/", upstream: up.URL, serverName: testpki.IDBHost, methods: []string{"GET", "POST"}},
	})
	srv := f.server(t)
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"POST", "/soap/", 200, ""},
		{"TRACE", "/soap/", 405, "POST"},
		{"GET", "/soap/", 405, "POST"},
		{"PUT", "/soap/", 405, "POST"},
		{"DELETE", "/soap/", 405, "POST"},
		{"OPTIONS", "/soap/", 405, "POST"},
		{"PROPFIND", "/soap/", 405, "POST"},
		{"GET", "/wsdl/", 200, ""},
		{"POST", "/wsdl/", 200, ""},
		{"TRACE", "/wsdl/", 405, "GET, POST"},
		{"HEAD", "/wsdl/", 405, "GET, POST"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			hits := up.hits.Load()
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status != 405 {
				return
			}
			if got := resp.Header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
			if tc.method != "HEAD" {
				if pb := decodeProblem(t, resp); pb.Error != CodeMethodNotAllowed {
					t.Errorf("body %+v", pb)
				}
			}
			if up.hits.Load() != hits {
				t.Error("the refused method reached the partner")
			}
		})
	}
}

// The request buffer grows with what arrives: a declared Content-Length
// alone allocates nothing near it.
func TestDeclaredLengthIsNotAllocatedUpFront(t *testing.T) {
	const declared = 512 << 20
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := readBody(strings.NewReader("<soap>"), declared, 1<<30, nil)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err %v, want unexpected EOF", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("reading 6 bytes of a declared %d allocated %d bytes", declared, grew)
	}
}

// Bodies in flight share one memory budget: past it, 503 with a reason and
// a metric; once the bodies are gone, requests pass again.
func TestBodyMemoryBudget(t *testing.T) {
	p := pki(t)
	up := startUpstream(t, p.Servers[testpki.IDBHost], p.SanteRoot, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d", n)
	})
	const budget = 1 << 20
	f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: up.URL, serverName: testpki.IDBHost, maxBody: 900 << 10}},
		func(o *Options) { o.Budget = NewBodyBudget(budget, o.Metrics) })
	srv := f.server(t)
	addr := srv.Listener.Addr().String()

	// A slow client holds 600 KiB of a 800 KiB body.
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "POST /r/ HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 800<<10)
	slow.Write(make([]byte, 600<<10))
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(f.m.BodyMemory) < 600<<10 {
		if time.Now().After(deadline) {
			t.Fatalf("body memory gauge %v after 600 KiB arrived", testutil.ToFloat64(f.m.BodyMemory))
		}
		time.Sleep(5 * time.Millisecond)
	}
	post := func() (int, problemBody) {
		resp, err := srv.Client().Post(srv.URL+"/r/", "text/xml", bytes.NewReader(make([]byte, 600<<10)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var pb problemBody
		if resp.StatusCode != 200 {
			pb = decodeProblem(t, resp)
		}
		return resp.StatusCode, pb
	}
	if code, pb := post(); code != 503 || pb.Error != CodeOverloaded || pb.Reason != "body_memory" {
		t.Fatalf("over the budget: %d %+v", code, pb)
	}
	if n := testutil.ToFloat64(f.m.BodyMemoryRefused); n != 1 {
		t.Errorf("refusals metric %v", n)
	}
	slow.Write(make([]byte, 200<<10))
	r := readReply(slow, 5*time.Second)
	if !strings.HasPrefix(r.text, "HTTP/1.1 200 ") || !strings.HasSuffix(r.text, fmt.Sprint(800<<10)) {
		t.Fatalf("slow client's answer %q", r.status())
	}
	if code, pb := post(); code != 200 {
		t.Fatalf("after the slow body left: %d %+v", code, pb)
	}
	if g := testutil.ToFloat64(f.m.BodyMemory); g != 0 {
		t.Errorf("body memory gauge %v with nothing in flight", g)
	}
	// 100 clients declaring 10 MiB and sending one byte hold a few KiB
	// each, not their declared length.
	var conns []net.Conn
	for range 100 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /r/ HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n<", 800<<10)
		conns = append(conns, c)
	}
	time.Sleep(200 * time.Millisecond)
	if g := testutil.ToFloat64(f.m.BodyMemory); g > budget {
		t.Errorf("100 one-byte bodies hold %v bytes", g)
	}
	for _, c := range conns {
		c.Close()
	}
}

// The SIH has server.write_timeout to take its answer: a client that never
// reads does not hold the answer, its connection and goroutine for ever.
func TestClientThatNeverReadsIsCutOff(t *testing.T) {
	p := pki(t)
	big := bytes.Repeat([]byte("<item>x</item>"), 4<<20/14)
	up := startUpstream(t, p.Servers[testpki.IDBHost], p.SanteRoot, func(w http.ResponseWriter, r *http.Request) { w.Write(big) })
	f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: up.URL, serverName: testpki.IDBHost, maxResp: 8 << 20}},
		func(o *Options) { o.WriteTimeout = 300 * time.Millisecond })
	var opened, closed atomic.Int64
	srv := httptest.NewUnstartedServer(f.h)
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			closed.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	for range 5 {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetReadBuffer(4 << 10)
		defer c.Close()
		io.WriteString(c, "POST /r/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	}
	for deadline := time.Now().Add(10 * time.Second); opened.Load() != 5 || closed.Load() != 5; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of the 5 connections of clients that never read are still open", opened.Load()-closed.Load())
		}
	}
	if n := testutil.ToFloat64(f.m.BodyMemory); n != 0 {
		t.Errorf("body memory %v still held", n)
	}
}
