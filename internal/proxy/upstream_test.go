package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/egress"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/sim"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// connCounter counts a partner's connections as its server sees them.
type connCounter struct{ opened, closed atomic.Int64 }

// startCountedUpstream is startUpstream with its connections counted and
// its keep-alive timeout set.
func startCountedUpstream(t *testing.T, idle time.Duration, h http.HandlerFunc) (*upstream, *connCounter) {
	t.Helper()
	p := pki(t)
	c := &connCounter{}
	u := &upstream{}
	pool := x509.NewCertPool()
	pool.AddCert(p.SanteRoot.Cert)
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		h(w, r)
	}))
	u.TLS = mtls.ServerConfig(mtls.ServerOptions{Certificate: tlsCert(p.Servers[testpki.IDBHost]), ClientCAs: pool})
	u.Config.ErrorLog = zap.NewStdLog(zap.NewNop())
	u.Config.IdleTimeout = idle
	u.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			c.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			c.closed.Add(1)
		}
	}
	u.StartTLS()
	t.Cleanup(u.Close)
	return u, c
}

func post(t *testing.T, url string) (int, problemBody) {
	t.Helper()
	resp, err := http.Post(url, "text/xml", strings.NewReader("<soap/>"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pb problemBody
	if resp.StatusCode != 200 {
		pb = decodeProblem(t, resp)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode, pb
}

// A partner closes idle keep-alive connections after 50 ms (its
// keep-alive timeout): the pooled connection is found closed before use,
// and the next POST (which may never be sent twice) goes on a new one.
func TestUpstreamDropsConnectionsThePartnerClosed(t *testing.T) {
	up, conns := startCountedUpstream(t, 50*time.Millisecond, echo)
	f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: up.URL, serverName: testpki.IDBHost}})
	srv := f.server(t)
	defer http.DefaultClient.CloseIdleConnections()
	for i := range 3 {
		if code, pb := post(t, srv.URL+"/r/"); code != 200 {
			t.Fatalf("request %d after the partner closed the idle connection: %d %+v", i, code, pb)
		}
		for deadline := time.Now().Add(5 * time.Second); conns.closed.Load() < int64(i+1); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the partner did not close its idle connection")
			}
		}
	}
	if n := up.hits.Load(); n != 3 {
		t.Errorf("the partner got %d requests for 3", n)
	}
}

// The hospital's forward proxy ends a tunnel when the partner closes its
// end (here the partner's keep-alive timeout, 50 ms; proxies also close
// idle tunnels on their own timers): the pooled connection through it is
// found closed before use, as a direct one is, and the next POST (which
// may never be sent twice) goes through a new tunnel instead of failing.
func TestUpstreamDropsTunnelsTheProxyClosed(t *testing.T) {
	up, conns := startCountedUpstream(t, 50*time.Millisecond, echo)
	fwd, err := sim.StartForwardProxy(sim.ForwardProxyOptions{Hosts: map[string]string{testpki.IDBHost + ":443": up.Listener.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fwd.Close() })
	px, err := egress.Load(&config.OutboundProxy{URL: fwd.URL}, "outbound_proxy", nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: "https://" + testpki.IDBHost + "/", serverName: testpki.IDBHost,
		dial: egress.NewDialer(px, 2*time.Second, nil).DialContext}})
	srv := f.server(t)
	defer http.DefaultClient.CloseIdleConnections()
	for i := range 3 {
		if code, pb := post(t, srv.URL+"/r/"); code != 200 {
			t.Fatalf("request %d after the proxy closed the idle tunnel: %d %+v", i, code, pb)
		}
		// The partner's close, then the proxy passing it on: a request
		// sent while the FIN is still inside the proxy is lost with the
		// tunnel, for any client (a POST is never sent twice).
		for deadline := time.Now().Add(5 * time.Second); conns.closed.Load() < int64(i+1) || fwd.TargetEnded.Load() < int64(i+1); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the partner did not close its idle connection, or the proxy did not pass the close on")
			}
		}
	}
	if n := up.hits.Load(); n != 3 {
		t.Errorf("the partner got %d requests for 3", n)
	}
	if n := fwd.Connects.Load(); n != 3 {
		t.Errorf("%d tunnels for 3 requests each after the last tunnel closed", n)
	}
}

// The proxy environment variables are not read (http.Transport with Proxy
// nil, as main's routes had): a partner is reached directly, or through
// the route's own outbound proxy (DialContext), never through a proxy the
// environment names.
func TestUpstreamIgnoresProxyEnvironment(t *testing.T) {
	envProxy, err := sim.StartForwardProxy(sim.ForwardProxyOptions{Hosts: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { envProxy.Close() })
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"} {
		t.Setenv(k, envProxy.URL)
	}
	t.Setenv("NO_PROXY", "")
	up, _ := startCountedUpstream(t, time.Minute, echo)
	var dialed atomic.Value
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialed.Store(addr)
		// The partner's name stands for the loopback listener.
		return (&net.Dialer{}).DialContext(ctx, network, up.Listener.Addr().String())
	}
	f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: "https://" + testpki.IDBHost + "/", serverName: testpki.IDBHost, dial: dial}})
	srv := f.server(t)
	defer http.DefaultClient.CloseIdleConnections()
	if code, pb := post(t, srv.URL+"/r/"); code != 200 {
		t.Fatalf("%d %+v", code, pb)
	}
	if got := dialed.Load(); got != testpki.IDBHost+":443" {
		t.Errorf("dialed %v, want the partner %s:443", got, testpki.IDBHost)
	}
	if n := envProxy.Connects.Load() + envProxy.Forwarded.Load(); n != 0 {
		t.Errorf("%d requests reached the environment's proxy", n)
	}
}

// Connections are pooled and reused, not re-opened per request; a partner
// answering Connection: close gets a new connection next time; idle ones
// close after the idle timeout.
func TestUpstreamPoolsConnections(t *testing.T) {
	var closeNext atomic.Bool
	up, conns := startCountedUpstream(t, time.Minute, func(w http.ResponseWriter, r *http.Request) {
		if closeNext.Load() {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, "<ok/>")
	})
	f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: up.URL, serverName: testpki.IDBHost}})
	f.transports[0].o.IdleTimeout = 300 * time.Millisecond
	srv := f.server(t)
	defer http.DefaultClient.CloseIdleConnections()
	for range 5 {
		if code, _ := post(t, srv.URL+"/r/"); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	if n := conns.opened.Load(); n != 1 {
		t.Fatalf("5 sequential requests opened %d connections", n)
	}
	closeNext.Store(true)
	post(t, srv.URL+"/r/")
	closeNext.Store(false)
	post(t, srv.URL+"/r/")
	if n := conns.opened.Load(); n != 2 {
		t.Fatalf("after Connection: close, %d connections were opened, want 2", n)
	}
	for deadline := time.Now().Add(5 * time.Second); conns.closed.Load() != 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("idle connection not closed after the idle timeout (%d of 2 closed)", conns.closed.Load())
		}
	}
}

// A dynamic route reaches many partners: the pool keeps at most MaxIdle
// connections across them (http.Transport's MaxIdleConns), and a pool that
// was replaced (Close: a renewed ORG_AUTH_CLI) keeps none, not even those
// that were in use when it was replaced.
func TestUpstreamBoundsItsPool(t *testing.T) {
	var ups []*upstream
	var counts []*connCounter
	for range 3 {
		up, c := startCountedUpstream(t, time.Minute, echo)
		ups, counts = append(ups, up), append(counts, c)
	}
	f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: ups[0].URL, serverName: testpki.IDBHost}})
	u := f.transports[0]
	u.o.MaxIdle = 2
	send := func(up *upstream) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, up.URL+"/x", strings.NewReader("<soap/>"))
		resp, err := u.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	done := func(resp *http.Response) {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for _, up := range ups {
		done(send(up))
	}
	waitClosed := func(c *connCounter, want int64, what string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); c.closed.Load() != want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d connections closed, want %d", what, c.closed.Load(), want)
			}
		}
	}
	waitClosed(counts[2], 1, "the third partner's connection, past MaxIdle")
	if counts[0].closed.Load()+counts[1].closed.Load() != 0 {
		t.Fatal("a pooled connection within MaxIdle was closed")
	}
	inUse := send(ups[0]) // on the pooled connection
	u.Close()
	waitClosed(counts[1], 1, "an idle connection of the closed pool")
	done(inUse)
	waitClosed(counts[0], 1, "a connection in use when the pool closed, once its exchange ended")
	done(send(ups[0])) // a closed pool still serves what is in flight
	waitClosed(counts[0], 2, "a connection of the closed pool")
}

// countingGuard is a connection's standing check whose verdict the test
// decides (the real one, revocation.Binding through trust's guard, is
// played end to end in internal/revocation's pooled tests and in
// internal/app's): it counts what Upstream asks of it.
type countingGuard struct {
	allows, releases *atomic.Int64
	refuse           *atomic.Pointer[error]
}

func (g countingGuard) Allow() error {
	g.allows.Add(1)
	if err := g.refuse.Load(); err != nil {
		return *err
	}
	return nil
}

func (g countingGuard) Release() { g.releases.Add(1) }

// Routes that check revocation keep each connection's standing check: it
// is asked before every request on a pooled connection; a refusal closes
// the connection and a new handshake decides (here it refuses too: the
// partner is revoked); closeConn (a revocation learnt in the background)
// closes an idle pooled connection at once and takes it out of the pool;
// every guard is released once its connection is closed.
func TestUpstreamStandingCheck(t *testing.T) {
	up, conns := startCountedUpstream(t, time.Minute, echo)
	var allows, releases, guards atomic.Int64
	var refuse atomic.Pointer[error]
	var closeLast atomic.Pointer[func()]
	revoked := &trust.VerifyError{Reason: trust.ReasonRevoked, Source: "ocsp", Err: errors.New("revoked since the connection was made")}
	verifyPeer := func(_ context.Context, _ tls.ConnectionState, closeConn func()) (PeerGuard, error) {
		if err := refuse.Load(); err != nil {
			return nil, *err // a new handshake is refused too
		}
		guards.Add(1)
		closeLast.Store(&closeConn)
		return countingGuard{allows: &allows, releases: &releases, refuse: &refuse}, nil
	}
	f := newFixture(t, map[string]routeOpt{"r": {prefix: "/r/", upstream: up.URL, serverName: testpki.IDBHost, verifyPeer: verifyPeer}})
	srv := f.server(t)
	defer http.DefaultClient.CloseIdleConnections()
	for range 5 {
		if code, pb := post(t, srv.URL+"/r/"); code != 200 {
			t.Fatalf("%d %+v", code, pb)
		}
	}
	if a, o := allows.Load(), conns.opened.Load(); a != 5 || o != 1 {
		t.Fatalf("5 requests: %d standing checks on %d connections, want 5 on 1", a, o)
	}
	var err error = revoked
	refuse.Store(&err)
	code, pb := post(t, srv.URL+"/r/")
	if code != 502 || pb.Error != CodeUpstreamTLS || pb.Reason != string(trust.ReasonRevoked) {
		t.Fatalf("request to a partner revoked since the handshake: %d %+v", code, pb)
	}
	if n := up.hits.Load(); n != 5 {
		t.Errorf("the revoked partner got %d requests, want the 5 before", n)
	}
	if r := releases.Load(); r != 1 {
		t.Errorf("%d guards released after the refused connection closed, want 1", r)
	}
	refuse.Store(nil)
	if code, pb := post(t, srv.URL+"/r/"); code != 200 {
		t.Fatalf("after the partner was reinstated: %d %+v", code, pb)
	}
	closedBefore := conns.closed.Load()
	(*closeLast.Load())() // learnt in the background: revoked
	for deadline := time.Now().Add(5 * time.Second); conns.closed.Load() == closedBefore; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the idle pooled connection was not closed at once")
		}
	}
	up0 := f.transports[0]
	up0.mu.Lock()
	pooled := len(up0.idle[canonicalAddr(&url.URL{Host: up.Listener.Addr().String()})])
	up0.mu.Unlock()
	if pooled != 0 {
		t.Errorf("%d connections left in the pool after closeConn", pooled)
	}
	opened := conns.opened.Load()
	if code, pb := post(t, srv.URL+"/r/"); code != 200 {
		t.Fatalf("after closeConn: %d %+v", code, pb)
	}
	if n := conns.opened.Load(); n != opened+1 {
		t.Errorf("after closeConn, %d new connections, want 1", n-opened)
	}
	up0.Close()
	if g, r := guards.Load(), releases.Load(); g != r {
		t.Errorf("%d guards, %d released once their connections closed", g, r)
	}
}

// Misbehaving partners get bounded, classified answers, never a hang or an
// unbounded read: a partner that closes without answering (the POST is
// not sent twice), endless headers, endless interim answers, a protocol
// switch, a partner that accepts TCP but never speaks TLS.
func TestUpstreamMisbehavingPartners(t *testing.T) {
	hijack := func(w http.ResponseWriter, reply string) {
		c, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		buf.WriteString(reply)
		buf.Flush()
		c.Close()
	}
	closes, _ := startCountedUpstream(t, time.Minute, func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		hijack(w, "")
	})
	headers, _ := startCountedUpstream(t, time.Minute, func(w http.ResponseWriter, r *http.Request) {
		hijack(w, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", 2<<20)+"\r\n\r\n")
	})
	interim, _ := startCountedUpstream(t, time.Minute, func(w http.ResponseWriter, r *http.Request) {
		hijack(w, strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n", 10)+"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	upgrade, _ := startCountedUpstream(t, time.Minute, func(w http.ResponseWriter, r *http.Request) {
		hijack(w, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	})
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	idb := testpki.IDBHost
	f := newFixture(t, map[string]routeOpt{
		"closes":  {prefix: "/closes/", upstream: closes.URL, serverName: idb},
		"headers": {prefix: "/headers/", upstream: headers.URL, serverName: idb},
		"interim": {prefix: "/interim/", upstream: interim.URL, serverName: idb},
		"upgrade": {prefix: "/upgrade/", upstream: upgrade.URL, serverName: idb},
		"silent":  {prefix: "/silent/", upstream: "https://" + silent.Addr().String(), serverName: idb},
	})
	for _, tr := range f.transports {
		tr.o.TLSHandshakeTimeout = 300 * time.Millisecond
	}
	srv := f.server(t)
	defer http.DefaultClient.CloseIdleConnections()
	for _, tc := range []struct {
		path   string
		status int
		code   string
		reason string
	}{
		{"/closes/", 502, CodeUpstreamError, ""},
		{"/headers/", 502, CodeUpstreamError, ""},
		{"/interim/", 502, CodeUpstreamError, ""},
		{"/upgrade/", 502, CodeUpstreamError, ""},
		{"/silent/", 504, CodeUpstreamTimeout, "tls_handshake"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, pb := post(t, srv.URL+tc.path)
			if code != tc.status || pb.Error != tc.code || pb.Reason != tc.reason {
				t.Fatalf("%d %+v, want %d %s/%s", code, pb, tc.status, tc.code, tc.reason)
			}
		})
	}
	if n := closes.hits.Load(); n != 1 {
		t.Errorf("a POST the partner dropped was sent %d times", n)
	}
	if n := testutil.ToFloat64(f.m.BodyMemory); n != 0 {
		t.Errorf("body memory %v after the exchanges", n)
	}
}

// BenchmarkUpstreamRoundTrip is one pooled exchange with the partner, the
// caller's goroutine doing the writing and the reading.
func BenchmarkUpstreamRoundTrip(b *testing.B) {
	f := benchFixture(b)
	up := f.h.routes[0].Transport.(*Upstream)
	target := f.h.routes[0].Upstream.String() + "/x"
	body := strings.Repeat("<x>0123456789</x>", 112)
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, target, strings.NewReader(body))
		resp, err := up.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
