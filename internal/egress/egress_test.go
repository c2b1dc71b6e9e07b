package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/sim"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

const secret = "Pr0xy-S3cret-unit"

func load(t *testing.T, c *config.OutboundProxy) *Proxy {
	t.Helper()
	p, err := Load(c, "outbound_proxy", func(k string) string {
		if k == "PROXY_PASSWORD" {
			return secret
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// NO_PROXY semantics, as x/net/http/httpproxy applies them (and as
// docs/installation.md documents them).
func TestNoProxy(t *testing.T) {
	p := load(t, &config.OutboundProxy{URL: "http://proxy.hopital.example:3128", NoProxy: []string{
		"intranet", "hopital.example", ".sante.example", "*.chu.example", "10.0.0.0/8", "192.168.1.10", "amc.example:8443", "[2001:db8::1]:443",
	}})
	for _, c := range []struct {
		hostport string
		proxied  bool
	}{
		{"intranet:443", false},            // single-label host name
		{"hopital.example:443", false},     // the name...
		{"dpi.hopital.example:443", false}, // ...and its subdomains
		{"nothopital.example:443", true},   // not a suffix on a label boundary
		{"sante.example:443", true},        // leading dot: subdomains only
		{"dmp.sante.example:443", false},   //
		{"chu.example:443", true},          // *.: subdomains only
		{"ws.chu.example:443", false},      //
		{"10.20.30.40:443", false},         // CIDR
		{"11.0.0.1:443", true},             //
		{"192.168.1.10:443", false},        // IP
		{"amc.example:8443", false},        // host with port...
		{"amc.example:443", true},          // ...other port
		{"[2001:db8::1]:443", false},       // IPv6 with port
		{"127.0.0.1:443", false},           // loopback: always direct
		{"localhost:443", false},           //
		{"[::1]:443", false},               //
		{"ws.amc-assurance.example:443", true},
	} {
		if got := p.Uses("https", c.hostport); got != c.proxied {
			t.Errorf("%s: proxied %v, want %v", c.hostport, got, c.proxied)
		}
	}
	all := load(t, &config.OutboundProxy{URL: "http://proxy.hopital.example:3128", NoProxy: []string{"*"}})
	if all.Uses("https", "ws.amc.example:443") {
		t.Error("no_proxy * still proxies")
	}
	var none *Proxy
	if none.Uses("https", "ws.amc.example:443") {
		t.Error("a nil proxy proxies")
	}
}

// The credentials never show when a Proxy or its errors are printed.
func TestCredentialsNeverPrinted(t *testing.T) {
	p := load(t, &config.OutboundProxy{URL: "http://127.0.0.1:1", Username: "roc", PasswordEnv: "PROXY_PASSWORD"})
	basic := base64.StdEncoding.EncodeToString([]byte("roc:" + secret))
	_, err := p.Tunnel(context.Background(), &net.Dialer{}, "ws.amc.example:443")
	for _, s := range []string{fmt.Sprintf("%v %+v %#v %s", p, p, p, p), fmt.Sprintf("%v %+v %#v", err, err, err)} {
		if strings.Contains(s, secret) || strings.Contains(s, basic) {
			t.Errorf("credentials printed: %s", s)
		}
	}
	if got := p.String(); got != "http://127.0.0.1:1 (as roc)" {
		t.Errorf("String() = %q", got)
	}
}

func TestLoadCredentials(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	os.WriteFile(file, []byte(secret+"\r\n"), 0o600)
	p := load(t, &config.OutboundProxy{URL: "http://127.0.0.1:3128", Username: "roc", PasswordFile: file})
	if want := "Basic " + base64.StdEncoding.EncodeToString([]byte("roc:"+secret)); p.cred.header != want {
		t.Errorf("header from a file with a trailing newline: %q", p.cred.header)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for _, c := range []struct {
		cfg  config.OutboundProxy
		want string
	}{
		{config.OutboundProxy{URL: "http://127.0.0.1:3128", Username: "roc", PasswordFile: filepath.Join(dir, "missing")}, "outbound_proxy.password_file: open " + filepath.Join(dir, "missing")},
		{config.OutboundProxy{URL: "http://127.0.0.1:3128", Username: "roc", PasswordFile: empty}, "outbound_proxy.password_file: " + empty + " is empty"},
		{config.OutboundProxy{URL: "http://127.0.0.1:3128", Username: "roc", PasswordEnv: "UNSET_VARIABLE"}, "outbound_proxy.password_env: environment variable UNSET_VARIABLE is not set"},
		{config.OutboundProxy{URL: "http://roc:" + secret + "@127.0.0.1:3128"}, "outbound_proxy.url: not http://host:port"},
	} {
		_, err := Load(&c.cfg, "outbound_proxy", func(string) string { return "" })
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), secret) {
			t.Errorf("Load(%+v) = %v, want %q", c.cfg.PasswordFile, err, c.want)
		}
	}
}

// tunnelWorld is a TLS partner reachable by name through a simulated
// forward proxy that requires credentials.
type tunnelWorld struct {
	proxy   *sim.ForwardProxy
	partner *httptest.Server
	roots   *x509.CertPool
}

func newTunnelWorld(t *testing.T) *tunnelWorld {
	t.Helper()
	pki := testpki.MustShared(t)
	partner := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			w.WriteHeader(http.StatusTeapot) // the proxy's credentials reached the partner
		}
		io.WriteString(w, "partner:"+r.URL.Path)
	}))
	partner.TLS = &tls.Config{Certificates: []tls.Certificate{*pki.Servers[testpki.IDBHost].TLSCertificate()}}
	partner.StartTLS()
	t.Cleanup(partner.Close)
	proxy, err := sim.StartForwardProxy(sim.ForwardProxyOptions{Username: "roc", Password: secret,
		Hosts: map[string]string{testpki.IDBHost + ":443": partner.Listener.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	roots := x509.NewCertPool()
	roots.AddCert(pki.OSIRoot.Cert)
	return &tunnelWorld{proxy: proxy, partner: partner, roots: roots}
}

func (w *tunnelWorld) load(t *testing.T, password string) *Proxy {
	t.Helper()
	p, err := Load(&config.OutboundProxy{URL: w.proxy.URL, Username: "roc", PasswordEnv: "P"}, "outbound_proxy", func(string) string { return password })
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A tunnel carries TLS to the partner named by the proxy's own resolution.
func TestTunnel(t *testing.T) {
	w := newTunnelWorld(t)
	var results []string
	d := NewDialer(w.load(t, secret), 2*time.Second, func(r string) { results = append(results, r) })
	conn, err := d.DialContext(context.Background(), "tcp", testpki.IDBHost+":443")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc := tls.Client(conn, &tls.Config{RootCAs: w.roots, ServerName: testpki.IDBHost})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS through the tunnel: %v", err)
	}
	fmt.Fprintf(tc, "GET /x HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", testpki.IDBHost)
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("request through the tunnel: %v %v", resp, err)
	}
	if len(results) != 1 || results[0] != "ok" {
		t.Errorf("observed %v", results)
	}
}

// Each way a proxy fails gives its reason, and a hanging proxy is given up
// at the dialer's timeout.
func TestTunnelFailures(t *testing.T) {
	w := newTunnelWorld(t)
	down, _ := net.Listen("tcp", "127.0.0.1:0")
	downAddr := down.Addr().String()
	down.Close()
	for _, c := range []struct {
		name      string
		behaviour sim.ProxyBehaviour
		password  string
		proxyURL  string
		target    string
		reason    string
		status    string
	}{
		{"refused", sim.ProxyRefuse, secret, "", "", ReasonRefused, "403 Forbidden"},
		{"wrong password", sim.ProxyTunnel, "wrong", "", "", ReasonAuth, "407 Proxy Authentication Required"},
		{"cannot reach the partner", sim.ProxyUnreachablePartner, secret, "", "", ReasonUpstream, "503 Service Unavailable"},
		{"unknown partner name", sim.ProxyTunnel, secret, "", "nowhere.invalid:443", ReasonUpstream, "503 Service Unavailable"},
		{"hangs", sim.ProxyHang, secret, "", "", ReasonTimeout, ""},
		{"closes", sim.ProxyCloseBeforeAnswer, secret, "", "", ReasonProtocol, ""},
		{"garbage", sim.ProxyGarbage, secret, "", "", ReasonProtocol, ""},
		{"down", sim.ProxyTunnel, secret, "http://" + downAddr, "", ReasonUnreachable, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			w.proxy.SetBehaviour(c.behaviour)
			p := w.load(t, c.password)
			if c.proxyURL != "" {
				p = load(t, &config.OutboundProxy{URL: c.proxyURL})
			}
			target := c.target
			if target == "" {
				target = testpki.IDBHost + ":443"
			}
			var observed string
			d := NewDialer(p, 300*time.Millisecond, func(r string) { observed = r })
			start := time.Now()
			conn, err := d.DialContext(context.Background(), "tcp", target)
			if conn != nil {
				conn.Close()
			}
			var e *Error
			if !errors.As(err, &e) || e.Reason != c.reason || e.Status != c.status {
				t.Fatalf("got %v (%#v), want reason %s status %q", err, e, c.reason, c.status)
			}
			if observed != c.reason {
				t.Errorf("observed %q", observed)
			}
			if e.Timeout() != (c.reason == ReasonTimeout) {
				t.Errorf("Timeout() = %v", e.Timeout())
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("took %s", took)
			}
		})
	}
}

// rawProxy answers every connection with answer, then whatever more.
func rawProxy(t *testing.T, answer func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			http.ReadRequest(bufio.NewReader(c))
			answer(c)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return "http://" + ln.Addr().String()
}

// A proxy that sends bytes after its 200 (they would be taken for the
// partner's TLS records) and one that sends endless headers are refused;
// the latter without reading more than a bounded amount.
func TestTunnelHostileAnswers(t *testing.T) {
	early := rawProxy(t, func(c net.Conn) { io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n\x16\x03\x03fake server hello") })
	var sent atomic.Int64
	endless := rawProxy(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		line := "X-Padding: " + strings.Repeat("a", 1000) + "\r\n"
		for i := 0; i < 10000; i++ {
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
			sent.Add(int64(len(line)))
		}
	})
	for _, c := range []struct{ url, want string }{
		{early, "the proxy sent data after its answer \"200 OK\" to CONNECT"},
		{endless, "the answer to CONNECT exceeds 16 KiB"},
	} {
		p := load(t, &config.OutboundProxy{URL: c.url})
		_, err := p.Tunnel(context.Background(), &net.Dialer{}, "ws.amc.example:443")
		var e *Error
		if !errors.As(err, &e) || e.Reason != ReasonProtocol || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.url, err)
		}
	}
}

// The context ends the wait for the proxy's answer at once (the SIH went
// away, or shutdown), not at the timeout.
func TestTunnelCancelled(t *testing.T) {
	w := newTunnelWorld(t)
	w.proxy.SetBehaviour(sim.ProxyHang)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := NewDialer(w.load(t, secret), time.Hour, nil).DialContext(ctx, "tcp", testpki.IDBHost+":443")
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonTimeout {
		t.Fatalf("cancelled dial: %v", err)
	}
}

// Revocation fetches: http:// URLs in absolute form to the proxy, with
// the credentials; https:// through a tunnel; no_proxy hosts directly,
// without the credentials.
func TestFetchTransport(t *testing.T) {
	w := newTunnelWorld(t)
	var sawAuth atomic.Bool
	crl := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			sawAuth.Store(true)
		}
		io.WriteString(rw, "crl:"+r.URL.Path)
	}))
	t.Cleanup(crl.Close)
	proxy, err := sim.StartForwardProxy(sim.ForwardProxyOptions{Username: "roc", Password: secret, Hosts: map[string]string{
		"crl.test:80":                crl.Listener.Addr().String(),
		testpki.IDBHost + ":443":     w.partner.Listener.Addr().String(),
		"direct.hopital.example:443": "127.0.0.1:1",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	p, _ := Load(&config.OutboundProxy{URL: proxy.URL, Username: "roc", PasswordEnv: "P", NoProxy: []string{".hopital.example"}},
		"outbound_proxy", func(string) string { return secret })
	var observed []string
	tr := FetchTransport(p, 2*time.Second, func(r string) { observed = append(observed, r) })
	tlsTr := tr.(*fetchTransport).tunneled
	tlsTr.TLSClientConfig = &tls.Config{RootCAs: w.roots}
	client := &http.Client{Transport: tr}
	get := func(u string) (int, string, error) {
		resp, err := client.Get(u)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	if code, body, err := get("http://crl.test/ac.crl"); err != nil || code != 200 || body != "crl:/ac.crl" {
		t.Fatalf("http through the proxy: %d %q %v", code, body, err)
	}
	if code, body, err := get("https://" + testpki.IDBHost + "/ocsp"); err != nil || code != 200 || body != "partner:/ocsp" {
		t.Fatalf("https through a tunnel: %d %q %v", code, body, err)
	}
	if got := proxy.Targets(); len(got) != 2 || got[0] != "crl.test" || got[1] != testpki.IDBHost+":443" {
		t.Errorf("proxy targets %v", got)
	}
	if sawAuth.Load() {
		t.Error("the proxy's credentials reached the CRL server")
	}
	// Directly (loopback is never proxied): no credentials either.
	if code, _, err := get(crl.URL + "/direct.crl"); err != nil || code != 200 || sawAuth.Load() {
		t.Errorf("direct fetch: %d %v, credentials seen %v", code, err, sawAuth.Load())
	}
	if n := len(proxy.Targets()); n != 2 {
		t.Errorf("a loopback fetch went to the proxy")
	}
	if len(observed) != 2 || observed[0] != "ok" || observed[1] != "ok" {
		t.Errorf("observed %v", observed)
	}
	// Wrong credentials: a typed error, for an http URL too.
	bad, _ := Load(&config.OutboundProxy{URL: proxy.URL, Username: "roc", PasswordEnv: "P"}, "outbound_proxy", func(string) string { return "wrong" })
	_, err = (&http.Client{Transport: FetchTransport(bad, 2*time.Second, nil)}).Get("http://crl.test/ac.crl")
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonAuth || !strings.Contains(err.Error(), `answered "407 Proxy Authentication Required" to GET http://crl.test/ac.crl`) {
		t.Errorf("wrong credentials: %v", err)
	}
	// The proxy down: a typed error.
	proxy.Close()
	_, err = client.Get("http://crl.test/ac.crl")
	if !errors.As(err, &e) || e.Reason != ReasonUnreachable {
		t.Errorf("proxy down: %v", err)
	}
	if strings.Contains(fmt.Sprint(err), secret) {
		t.Errorf("error shows the password: %v", err)
	}
}

// The proxy environment variables are not read: with no outbound_proxy,
// revocation fetches go directly even when HTTP_PROXY and HTTPS_PROXY name
// a proxy (net/http's default transport would follow them).
func TestEnvironmentNotRead(t *testing.T) {
	envProxy, err := sim.StartForwardProxy(sim.ForwardProxyOptions{Hosts: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { envProxy.Close() })
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
		t.Setenv(k, envProxy.URL)
	}
	t.Setenv("NO_PROXY", "")
	tr := FetchTransport(nil, time.Second, nil).(*fetchTransport)
	if tr.plain.Proxy != nil || tr.tunneled.Proxy != nil {
		t.Fatal("a fetch transport without outbound_proxy has a Proxy function")
	}
	// A name only the environment's proxy could reach stays unreached.
	_, err = (&http.Client{Transport: tr}).Get("http://crl.invalid/x.crl")
	if err == nil || envProxy.Forwarded.Load()+envProxy.Connects.Load() != 0 {
		t.Errorf("fetch with proxy variables set: %v, %d requests to the environment's proxy", err, envProxy.Forwarded.Load()+envProxy.Connects.Load())
	}
}

// A target that would inject lines into the CONNECT request never reaches
// the proxy.
func TestTunnelRefusesInjection(t *testing.T) {
	w := newTunnelWorld(t)
	p := w.load(t, secret)
	for _, target := range []string{"a.example:443\r\nX-Injected: 1", "a.example:443 HTTP/1.0", "a.example"} {
		_, err := p.Tunnel(context.Background(), &net.Dialer{}, target)
		var e *Error
		if !errors.As(err, &e) || e.Reason != ReasonProtocol {
			t.Errorf("%q: %v", target, err)
		}
	}
	if n := w.proxy.Connects.Load(); n != 0 {
		t.Errorf("%d CONNECTs reached the proxy", n)
	}
}
