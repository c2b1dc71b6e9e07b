package sim

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// ProxyBehaviour is how the simulated forward proxy answers.
type ProxyBehaviour int

// Behaviours of the simulated forward proxy: what hospitals' proxies do,
// right and wrong.
const (
	// ProxyTunnel answers CONNECT with 200 and relays bytes both ways;
	// forwards absolute-form requests (GET http://host/path).
	ProxyTunnel ProxyBehaviour = iota
	// ProxyRefuse answers 403 Forbidden (the site's policy).
	ProxyRefuse
	// ProxyHang reads the request and never answers.
	ProxyHang
	// ProxyCloseBeforeAnswer reads the request and closes the connection.
	ProxyCloseBeforeAnswer
	// ProxyCloseMidHandshake answers 200, relays the client's first bytes
	// (its ClientHello) to the partner, then closes both sides.
	ProxyCloseMidHandshake
	// ProxyMITM answers 200 and then terminates TLS itself with
	// ForwardProxyOptions.MITMCertificate, as a TLS-inspecting proxy does.
	ProxyMITM
	// ProxyGarbage answers bytes that are not HTTP.
	ProxyGarbage
	// ProxyUnreachablePartner answers 503 Service Unavailable, as Squid does
	// when it cannot reach the partner.
	ProxyUnreachablePartner
)

// ForwardProxyOptions configure a simulated forward proxy.
type ForwardProxyOptions struct {
	// Username and Password, when set, are the Basic credentials the proxy
	// requires (407 Proxy Authentication Required otherwise).
	Username, Password string
	// Hosts is the proxy's own name resolution: "name:port" to the
	// "127.0.0.1:port" it really connects to. A target not listed is
	// dialled as given when it is an IP literal, else answered 503 (the
	// proxy cannot resolve it).
	Hosts map[string]string
	// MITMCertificate is what ProxyMITM presents.
	MITMCertificate *tls.Certificate
}

// ForwardProxy is a running simulated HTTP forward proxy (CONNECT tunnels
// and absolute-form requests) on 127.0.0.1.
type ForwardProxy struct {
	// URL is http://127.0.0.1:<port>.
	URL string
	// Addr is the listening address.
	Addr string
	// Connects counts CONNECT requests; Forwarded absolute-form requests.
	Connects, Forwarded atomic.Int64
	// TargetEnded counts tunnels whose target closed its side, once that
	// end has been passed on to the client (its socket has the FIN).
	TargetEnded atomic.Int64

	o  ForwardProxyOptions
	ln net.Listener
	wg sync.WaitGroup

	mu        sync.Mutex
	behaviour ProxyBehaviour
	targets   []string
	auths     []string
	relayed   []byte
	conns     map[net.Conn]struct{}
	closed    bool
}

// maxRelayed bounds what the proxy keeps of the relayed bytes.
const maxRelayed = 4 << 20

// StartForwardProxy starts a forward proxy on a new 127.0.0.1 listener.
func StartForwardProxy(o ForwardProxyOptions) (*ForwardProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &ForwardProxy{URL: "http://" + ln.Addr().String(), Addr: ln.Addr().String(), o: o, ln: ln,
		conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// SetBehaviour changes how the next requests are answered.
func (p *ForwardProxy) SetBehaviour(b ProxyBehaviour) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.behaviour = b
}

// Targets lists the CONNECT targets and forwarded hosts asked, in order.
func (p *ForwardProxy) Targets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...)
}

// Authorizations lists the Proxy-Authorization values received.
func (p *ForwardProxy) Authorizations() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.auths...)
}

// Relayed returns the bytes relayed through CONNECT tunnels, both ways
// (the first 4 MiB): what the proxy could read of the exchanges.
func (p *ForwardProxy) Relayed() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]byte(nil), p.relayed...)
}

// Close stops the proxy, closes every connection and waits for them.
func (p *ForwardProxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	err := p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *ForwardProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *ForwardProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *ForwardProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			p.serve(c)
		}()
	}
}

func (p *ForwardProxy) record(target, auth string) ProxyBehaviour {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.targets = append(p.targets, target)
	if auth != "" {
		p.auths = append(p.auths, auth)
	}
	return p.behaviour
}

func (p *ForwardProxy) authorized(r *http.Request) bool {
	if p.o.Username == "" && p.o.Password == "" {
		return true
	}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(p.o.Username+":"+p.o.Password))
	return r.Header.Get("Proxy-Authorization") == want
}

func reply(c net.Conn, status string, extra string) {
	_, _ = io.WriteString(c, "HTTP/1.1 "+status+"\r\n"+extra+"Content-Length: 0\r\n\r\n")
}

// serve answers the requests of one client connection.
func (p *ForwardProxy) serve(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		r, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		target := r.Host
		if r.Method == http.MethodConnect {
			p.Connects.Add(1)
		} else {
			p.Forwarded.Add(1)
		}
		b := p.record(target, r.Header.Get("Proxy-Authorization"))
		switch {
		case b == ProxyHang:
			_, _ = io.Copy(io.Discard, br) // until the client or Close ends it
			return
		case b == ProxyCloseBeforeAnswer:
			return
		case b == ProxyGarbage:
			_, _ = io.WriteString(c, "\x16\x03\x01 this is not HTTP\r\n\r\n")
			return
		case !p.authorized(r):
			reply(c, "407 Proxy Authentication Required", "Proxy-Authenticate: Basic realm=\"hospital\"\r\n")
			continue
		case b == ProxyRefuse:
			reply(c, "403 Forbidden", "")
			continue
		case b == ProxyUnreachablePartner:
			reply(c, "503 Service Unavailable", "")
			continue
		}
		if r.Method != http.MethodConnect {
			if !p.forward(c, r) {
				return
			}
			continue
		}
		p.tunnel(c, br, target, b)
		return
	}
}

// resolve is the proxy's own name resolution.
func (p *ForwardProxy) resolve(target string) (string, bool) {
	if a, ok := p.o.Hosts[target]; ok {
		return a, true
	}
	host, _, err := net.SplitHostPort(target)
	if err != nil || net.ParseIP(host) == nil {
		return "", false
	}
	return target, true
}

func (p *ForwardProxy) tunnel(c net.Conn, br *bufio.Reader, target string, b ProxyBehaviour) {
	if b == ProxyMITM {
		reply200(c)
		if p.o.MITMCertificate == nil {
			return
		}
		tc := tls.Server(&bufferedConn{Conn: c, r: br}, &tls.Config{Certificates: []tls.Certificate{*p.o.MITMCertificate}})
		if err := tc.Handshake(); err == nil {
			_, _ = io.Copy(io.Discard, tc) // the client would speak in clear to us now
		}
		return
	}
	addr, ok := p.resolve(target)
	if !ok {
		reply(c, "503 Service Unavailable", "")
		return
	}
	up, err := net.Dial("tcp", addr)
	if err != nil {
		reply(c, "502 Bad Gateway", "")
		return
	}
	if !p.track(up) {
		return
	}
	defer p.untrack(up)
	reply200(c)
	if b == ProxyCloseMidHandshake {
		buf := make([]byte, 64) // part of the ClientHello
		n, _ := io.ReadAtLeast(br, buf, 1)
		p.keep(buf[:n])
		_, _ = up.Write(buf[:n])
		return
	}
	done := make(chan struct{}, 2)
	relay := func(dst net.Conn, src io.Reader) {
		_, _ = io.Copy(dst, io.TeeReader(src, keeper{p}))
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		if dst == c {
			p.TargetEnded.Add(1)
		}
		done <- struct{}{}
	}
	go relay(up, br)
	go relay(c, up)
	<-done
	<-done
}

func reply200(c net.Conn) { _, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n") }

// forward sends an absolute-form request on, as a forward proxy does for
// http:// URLs; it reports whether the client connection may be reused.
func (p *ForwardProxy) forward(c net.Conn, r *http.Request) bool {
	port := r.URL.Port()
	if port == "" {
		port = "80"
	}
	addr, ok := p.resolve(net.JoinHostPort(r.URL.Hostname(), port))
	if !ok || r.URL.Scheme != "http" {
		reply(c, "503 Service Unavailable", "")
		return true
	}
	out := r.Clone(context.Background())
	out.RequestURI = ""
	out.Header.Del("Proxy-Authorization")
	out.Header.Del("Proxy-Connection")
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(out)
	if err != nil {
		reply(c, "502 Bad Gateway", "")
		return true
	}
	defer resp.Body.Close()
	return resp.Write(c) == nil
}

// keeper records relayed bytes, up to maxRelayed.
type keeper struct{ p *ForwardProxy }

func (k keeper) Write(b []byte) (int, error) {
	k.p.keep(b)
	return len(b), nil
}

func (p *ForwardProxy) keep(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if room := maxRelayed - len(p.relayed); room > 0 {
		p.relayed = append(p.relayed, b[:min(room, len(b))]...)
	}
}

// bufferedConn reads what the request reader already buffered first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }
