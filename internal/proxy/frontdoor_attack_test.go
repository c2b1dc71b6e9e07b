package proxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

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
