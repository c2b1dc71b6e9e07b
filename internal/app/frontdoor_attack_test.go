package app

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// buildWithServer builds a proxy on e's one-route configuration with
// server set to the given flow mapping.
func buildWithServer(t *testing.T, e *testEnv, upstreamURL, server string) *Proxy {
	t.Helper()
	cfgPath := e.config(t, upstreamURL, "")
	text, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, []byte(strings.Replace(string(text), "server: {shutdown_timeout: 5s}", "server: "+server, 1)), 0o600)
	p := buildFile(t, cfgPath)
	return p
}

// Idle keep-alive connections must not lock the SIH out: an abusive (or
// merely pool-happy) client that makes one request on each of
// server.max_connections connections and keeps them open takes every slot
// for idle_timeout (2 minutes by default), renewable with one request per
// connection before it ends. With every slot taken, idle connections are
// closed to make room, as nginx reuses its keep-alive connections when it
// runs out: a new client is served, not left waiting without a byte.
func TestIdleConnectionsDoNotLockTheSIHOut(t *testing.T) {
	e := newTestEnv(t)
	up := partner(t, e.pki, testpki.IDBHost, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "<ok/>")
	})
	p := buildWithServer(t, e, up.URL, "{shutdown_timeout: 5s, max_connections: 3, idle_timeout: 1h, read_header_timeout: 1h, read_timeout: 1h}")
	sih, _ := serve(t, p)
	addr := strings.TrimPrefix(sih, "http://")
	var idle []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		io.WriteString(c, "POST /idb/ HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n<x/>")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("hog's request: %d (close %v)", resp.StatusCode, resp.Close)
		}
		idle = append(idle, c)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Post(sih+"/idb/", "text/xml", strings.NewReader("<x/>"))
	if err != nil {
		t.Fatalf("three idle keep-alive connections lock the SIH out: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if n := testutil.ToFloat64(p.metrics.ConnectionsOpen); n > 3 {
		t.Errorf("connections_open = %v, over max_connections", n)
	}
	closed := 0
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			closed++
		}
	}
	if closed == 0 {
		t.Error("no idle connection was closed to make room")
	}
	// Once the hogs are gone, keep-alive resumes.
	for _, c := range idle {
		c.Close()
	}
	for i := 0; ; i++ {
		resp, err := client.Post(sih+"/idb/", "text/xml", strings.NewReader("<x/>"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if !resp.Close {
			break
		}
		if i == 50 {
			t.Fatal("keep-alive did not resume once the slots were free")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A request net/http refuses itself (a malformed header, headers over the
// limit, an unsupported transfer coding) is a request the SIH sent: like
// every other refusal it has its access-log line and its count, or an
// abusive or broken client stays invisible to ops.
func TestMalformedRequestsAreLoggedAndCounted(t *testing.T) {
	e := newTestEnv(t)
	up := partner(t, e.pki, testpki.IDBHost, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
	cfg, err := config.Load(e.config(t, up.URL, ""))
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	p, err := Build(cfg, Deps{Logger: zap.New(core), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	sih, _ := serve(t, p)
	for _, tc := range []struct {
		name, request string
		status        int
	}{
		{"control character in a value", "POST /idb/ HTTP/1.1\r\nHost: x\r\nX-Roc-User-Id: 8100\x0102345678\r\nContent-Length: 0\r\n\r\n", 400},
		{"headers over 64 KiB", "POST /idb/ HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 70<<10) + "\r\nContent-Length: 0\r\n\r\n", 431},
		{"unsupported transfer coding", "POST /idb/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs.TakeAll()
			before := testutil.ToFloat64(p.metrics.Requests.WithLabelValues("unmatched", fmt.Sprint(tc.status)))
			c, err := net.Dial("tcp", strings.TrimPrefix(sih, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, tc.request)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			lines := logs.FilterMessage("request").All()
			if len(lines) != 1 {
				t.Fatalf("%d access-log lines, want 1", len(lines))
			}
			f := lines[0].ContextMap()
			if f["status"] != int64(tc.status) || f["error"] != "bad_request" || f["client"] == "" || f["route"] != "unmatched" {
				t.Errorf("access-log line %v", f)
			}
			if n := testutil.ToFloat64(p.metrics.Requests.WithLabelValues("unmatched", fmt.Sprint(tc.status))); n != before+1 {
				t.Errorf("requests_total{route=unmatched,code=%d} went from %v to %v", tc.status, before, n)
			}
		})
	}
}
