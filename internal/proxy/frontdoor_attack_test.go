package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// A client that asks "Expect: 100-continue" waits for the 100 or for a
// final status before it sends its body. A body roc-proxy refuses on its
// declared length (413) or because the memory budget is spent (503) gets
// its answer at once, without a 100 Continue, not after read_timeout while
// roc-proxy waits for the very body it refused. A client without Expect
// that sends its body slowly gets the refusal at once too.
func TestRefusedBodyIsAnsweredWithoutWaitingForIt(t *testing.T) {
	p := pki(t)
	up := startUpstream(t, p.Servers[testpki.IDBHost], p.SanteRoot, echo)
	f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: up.URL, serverName: testpki.IDBHost, maxBody: 64 << 10}},
		func(o *Options) { o.Budget = NewBodyBudget(32<<10, o.Metrics) })
	srv := httptest.NewUnstartedServer(f.h)
	srv.Config.ReadTimeout = time.Minute // far beyond the read bound below
	srv.Start()
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name   string
		header string
		status int
		code   string
	}{
		{"over the route's limit, Expect: 100-continue", "Content-Length: 100000\r\nExpect: 100-continue\r\n", 413, CodeBodyTooLarge},
		{"over the memory budget, Expect: 100-continue", "Content-Length: 50000\r\nExpect: 100-continue\r\n", 503, CodeOverloaded},
		{"over the route's limit, body still to come", "Content-Length: 100000\r\n", 413, CodeBodyTooLarge},
		{"over the memory budget, body still to come", "Content-Length: 50000\r\n", 503, CodeOverloaded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST /r/ HTTP/1.1\r\nHost: x\r\n%s\r\n", tc.header)
			// The answer, not the end of the connection: the client may
			// still send the body, which net/http reads and drops.
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer within 5 s (%v), want %d at once", err, tc.status)
			}
			defer resp.Body.Close()
			if resp.StatusCode == http.StatusContinue {
				t.Fatal("a body about to be refused was asked for (100 Continue)")
			}
			if resp.StatusCode != tc.status || !resp.Close {
				t.Fatalf("got %d (close %v), want %d and Connection: close", resp.StatusCode, resp.Close, tc.status)
			}
			if pb := decodeProblem(t, resp); pb.Error != tc.code {
				t.Errorf("body %+v", pb)
			}
		})
	}
	if n := up.hits.Load(); n != 0 {
		t.Errorf("%d refused bodies reached the partner", n)
	}
}

// roc-proxy carries SOAP exchanges, never another protocol: a SIH's
// "Upgrade" (websocket, h2c) is not passed to the partner, which would
// otherwise be asked to switch the mutual-TLS connection authenticated as
// the establishment to a protocol roc-proxy neither signs nor checks. A
// partner that switches anyway is refused (502), and the SIH's request
// is answered as a plain exchange.
func TestUpgradeIsNotForwarded(t *testing.T) {
	p := pki(t)
	var sawUpgrade atomic.Int64
	up := startUpstream(t, p.Servers[testpki.IDBHost], p.SanteRoot, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Header.Get("Upgrade") == "" && !strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
			io.WriteString(w, "<ok/>")
			return
		}
		sawUpgrade.Add(1)
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+r.Header.Get("Upgrade")+"\r\n\r\nraw bytes of another protocol")
	})
	f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: up.URL, serverName: testpki.IDBHost}})
	srv := f.server(t)
	for _, upgrade := range []string{"websocket", "h2c"} {
		t.Run(upgrade, func(t *testing.T) {
			r := rawExchange(t, srv.Listener.Addr().String(), "POST /r/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: "+upgrade+
				"\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 7\r\nConnection: close\r\n\r\n<soap/>", false)
			if !strings.HasPrefix(r.text, "HTTP/1.1 200 ") || !strings.HasSuffix(r.text, "<ok/>") {
				t.Errorf("got %q, want the partner's plain answer", r.status())
			}
		})
	}
	if n := sawUpgrade.Load(); n != 0 {
		t.Errorf("the partner was asked %d times to switch protocols", n)
	}
}

// HEAD is one of the methods a route may serve (routes[].methods): the
// partner's answer has a Content-Length and, by definition, no body. It
// is passed on as it is, not read as a body cut short and blamed on the
// partner (502 upstream_error).
func TestHeadIsServedWhenTheRouteAllowsIt(t *testing.T) {
	p := pki(t)
	const wsdl = "<definitions>wsdl</definitions>"
	up := startUpstream(t, p.Servers[testpki.IDBHost], p.SanteRoot, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		io.WriteString(w, wsdl)
	})
	f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: up.URL, serverName: testpki.IDBHost, methods: []string{"GET", "HEAD"}}})
	srv := f.server(t)
	req, _ := http.NewRequest(http.MethodHead, srv.URL+"/r/service?wsdl", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(wsdl)) || resp.Header.Get("Content-Type") != "text/xml" {
		t.Fatalf("HEAD: %d, length %d, %v", resp.StatusCode, resp.ContentLength, resp.Header)
	}
	if n := testutil.ToFloat64(f.m.Requests.WithLabelValues("r", "502")); n != 0 {
		t.Errorf("a HEAD answer counted %v times as the partner's failure", n)
	}
}
