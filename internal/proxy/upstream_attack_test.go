package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// This file plays hostile and broken partners against proxy.Upstream at
// the byte level, with http.Transport as the referee where it has a
// behaviour to compare with: the same partner script runs against both.

// holdConn gathers what TLS writes while held, so that several TLS
// records leave in one TCP write (and arrive together): the partner
// decides the segmentation, not the scheduler.
type holdConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool
	buf  bytes.Buffer
}

func (c *holdConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hold {
		return c.buf.Write(p)
	}
	return c.Conn.Write(p)
}

// rawConn is one connection of a rawPartner, after its handshake.
type rawConn struct {
	*tls.Conn
	tcp *holdConn
	br  *bufio.Reader
	n   int // 1 for the partner's first connection, and so on
}

// readRequest reads a request and its body.
func (c *rawConn) readRequest() (*http.Request, []byte, error) {
	req, err := http.ReadRequest(c.br)
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(req.Body)
	return req, body, err
}

// send writes each piece as its own TLS record, all in one TCP write.
func (c *rawConn) send(pieces ...string) error {
	c.tcp.mu.Lock()
	c.tcp.hold = true
	c.tcp.mu.Unlock()
	for _, p := range pieces {
		if _, err := c.Write([]byte(p)); err != nil {
			return err
		}
	}
	c.tcp.mu.Lock()
	defer c.tcp.mu.Unlock()
	c.tcp.hold = false
	_, err := c.tcp.Conn.Write(c.tcp.buf.Bytes())
	c.tcp.buf.Reset()
	return err
}

// rawPartner is a mutual-TLS partner on 127.0.0.1 (the test IDB
// certificate, IGC-Santé clients) that speaks HTTP by hand: serve gets
// each connection once its handshake is done.
type rawPartner struct {
	url   string
	conns atomic.Int64
}

func startRawPartner(t testing.TB, serve func(c *rawConn)) *rawPartner {
	t.Helper()
	p := pki(t)
	pool := x509.NewCertPool()
	pool.AddCert(p.SanteRoot.Cert)
	cfg := mtls.ServerConfig(mtls.ServerOptions{Certificate: tlsCert(p.Servers[testpki.IDBHost]), ClientCAs: pool})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rp := &rawPartner{url: "https://" + ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			n := int(rp.conns.Add(1))
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				hc := &holdConn{Conn: c}
				tc := tls.Server(hc, cfg)
				if err := tc.Handshake(); err != nil {
					return
				}
				serve(&rawConn{Conn: tc, tcp: hc, br: bufio.NewReader(tc), n: n})
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return rp
}

// partnerTLS is a route's client TLS configuration for the test IDB
// partner (the test IGC OSI, the test ORG_AUTH_CLI).
func partnerTLS(t testing.TB) *tls.Config {
	t.Helper()
	p := pki(t)
	store := trust.NewStore(&trust.Bundle{Name: "osi", Anchors: []*x509.Certificate{p.OSIRoot.Cert}, Intermediates: []*x509.Certificate{p.OSIServeur.Cert}})
	v, err := store.NewVerifier(trust.VerifierOptions{Bundles: []string{"osi"}, ServerName: testpki.IDBHost})
	if err != nil {
		t.Fatal(err)
	}
	auth := tlsCert(p.AuthCli)
	return mtls.ClientConfig(mtls.ClientOptions{ServerName: testpki.IDBHost, VerifyConnection: v.VerifyConnection,
		ClientCertificate: func() *tls.Certificate { return auth }})
}

// clientsUnderTest are proxy.Upstream and, as the referee,
// http.Transport, configured alike.
func clientsUnderTest(t testing.TB) []struct {
	name string
	rt   http.RoundTripper
} {
	t.Helper()
	u := NewUpstream(UpstreamOptions{TLS: partnerTLS(t), ConnectTimeout: 2 * time.Second, TLSHandshakeTimeout: 2 * time.Second,
		ResponseHeaderTimeout: 5 * time.Second})
	tr := &http.Transport{TLSClientConfig: partnerTLS(t), TLSHandshakeTimeout: 2 * time.Second, ResponseHeaderTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 64, DisableCompression: true}
	t.Cleanup(u.Close)
	t.Cleanup(tr.CloseIdleConnections)
	return []struct {
		name string
		rt   http.RoundTripper
	}{{"Upstream", u}, {"http.Transport", tr}}
}

// roundTrip sends one request and reads the whole answer.
func roundTrip(ctx context.Context, rt http.RoundTripper, method, url string, body []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if len(body) == 0 {
		req.Body, req.GetBody, req.ContentLength = nil, nil, 0
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func answer(body string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// A partner sends bytes after its answer, in a TLS record of their own
// that arrives with the answer (one TCP segment): a body longer than its
// Content-Length, a body after a 204, a second answer nobody asked for.
// They must never be read as the answer to the next request on that
// connection (the next patient's request would get this one's data): the
// connection is dropped, as http.Transport does ("Unsolicited response
// received on idle HTTP channel").
func TestUpstreamExtraBytesAfterAnswerAreNotTheNextAnswer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first []string // the records of the first answer
	}{
		{"another answer in the same record", []string{answer("first") + answer("smuggled")}},
		{"answer then another answer", []string{answer("first"), answer("smuggled")}},
		{"body longer than Content-Length", []string{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst", answer("smuggled")}},
		{"204 with a body", []string{"HTTP/1.1 204 No Content\r\n\r\n", answer("smuggled")}},
		{"chunked answer then another answer", []string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\n", answer("smuggled")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			partner := startRawPartner(t, func(c *rawConn) {
				for i := 0; ; i++ {
					if _, _, err := c.readRequest(); err != nil {
						return
					}
					if c.n == 1 && i == 0 {
						c.send(tc.first...)
						continue
					}
					c.send(answer(fmt.Sprintf("second on connection %d", c.n)))
				}
			})
			for _, cl := range clientsUnderTest(t) {
				t.Run(cl.name, func(t *testing.T) {
					partner.conns.Store(0)
					if _, _, err := roundTrip(t.Context(), cl.rt, http.MethodPost, partner.url+"/x", []byte("<first/>")); err != nil {
						t.Fatal(err)
					}
					time.Sleep(50 * time.Millisecond) // the next request comes later
					code, body, err := roundTrip(t.Context(), cl.rt, http.MethodPost, partner.url+"/x", []byte("<second/>"))
					if err != nil {
						t.Fatal(err)
					}
					if code != 200 || !strings.HasPrefix(body, "second on connection") {
						t.Fatalf("the second request got %d %q: the bytes sent after the first answer", code, body)
					}
				})
			}
		})
	}
}

// A partner answers with no body (Content-Length: 0, 204, 304) or a HEAD
// answer: the connection is pooled again, as http.Transport does, not
// closed (each new connection is a full mutual-TLS handshake and, on
// routes that check revocation, a chain verification).
func TestUpstreamPoolsConnectionsAfterEmptyAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, method, answer string
	}{
		{"Content-Length 0", http.MethodPost, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"202, Content-Length 0", http.MethodPost, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"},
		{"204", http.MethodPost, "HTTP/1.1 204 No Content\r\n\r\n"},
		{"304", http.MethodGet, "HTTP/1.1 304 Not Modified\r\n\r\n"},
		{"HEAD", http.MethodHead, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			partner := startRawPartner(t, func(c *rawConn) {
				for {
					if _, _, err := c.readRequest(); err != nil {
						return
					}
					c.send(tc.answer)
				}
			})
			for _, cl := range clientsUnderTest(t) {
				t.Run(cl.name, func(t *testing.T) {
					partner.conns.Store(0)
					for i := range 3 {
						// The body is closed unread: there is none to read
						// (roc-proxy's handler does so for an empty answer).
						req, _ := http.NewRequestWithContext(t.Context(), tc.method, partner.url+"/x", nil)
						resp, err := cl.rt.RoundTrip(req)
						if err != nil {
							t.Fatalf("request %d: %v", i, err)
						}
						resp.Body.Close()
					}
					if n := partner.conns.Load(); n != 1 {
						t.Errorf("3 sequential requests answered without a body took %d connections, want 1", n)
					}
				})
			}
		})
	}
}

// A POST already sent on a pooled connection is never sent again, whatever
// the partner does after reading it (closes, resets, reads part of it): a
// payment claim would be paid twice. A GET is sent again on a new
// connection when the pooled one failed before any byte of the answer, as
// http.Transport does; a TLS close_notify is no byte of the answer.
func TestUpstreamNeverResendsAPostThatLeft(t *testing.T) {
	for _, method := range []string{http.MethodPost, http.MethodGet} {
		for _, how := range []string{"closes", "closes with close_notify", "resets", "closes mid-body"} {
			t.Run(method+" "+how, func(t *testing.T) {
				var got atomic.Int64
				partner := startRawPartner(t, func(c *rawConn) {
					for i := 0; ; i++ {
						if c.n == 1 && i == 1 && how == "closes mid-body" {
							// The headers and part of the body only.
							req, err := http.ReadRequest(c.br)
							if err != nil {
								return
							}
							io.CopyN(io.Discard, req.Body, 10)
							got.Add(1)
							c.Close()
							return
						}
						if _, _, err := c.readRequest(); err != nil {
							return
						}
						got.Add(1)
						if c.n == 1 && i == 1 {
							switch how {
							case "resets":
								c.tcp.Conn.(*net.TCPConn).SetLinger(0)
							case "closes with close_notify":
								c.Close()
							}
							c.tcp.Conn.Close()
							return
						}
						c.send(answer("<ok/>"))
					}
				})
				for _, cl := range clientsUnderTest(t) {
					t.Run(cl.name, func(t *testing.T) {
						partner.conns.Store(0)
						got.Store(0)
						body := []byte(strings.Repeat("<claim/>", 1000))
						if method == http.MethodGet {
							body = nil
						}
						if _, _, err := roundTrip(t.Context(), cl.rt, method, partner.url+"/x", body); err != nil {
							t.Fatal(err)
						}
						_, _, err := roundTrip(t.Context(), cl.rt, method, partner.url+"/x", body)
						switch {
						case method == http.MethodPost && err == nil:
							t.Fatal("the POST the partner dropped was answered")
						case method == http.MethodPost && got.Load() != 2:
							t.Fatalf("the partner got the dropped POST %d times", got.Load()-1)
						case method == http.MethodGet && (err != nil || got.Load() != 3):
							t.Fatalf("the GET was not sent again on a new connection: %v, %d requests", err, got.Load())
						}
					})
				}
			})
		}
	}
}

// A partner sends an answer nobody asked for on an idle pooled connection
// (a late duplicate, a stray 408 before it closes): it is never taken for
// the answer to the next request.
func TestUpstreamUnsolicitedAnswerOnIdleConnection(t *testing.T) {
	partner := startRawPartner(t, func(c *rawConn) {
		for i := 0; ; i++ {
			if _, _, err := c.readRequest(); err != nil {
				return
			}
			c.send(answer(fmt.Sprintf("answer %d on connection %d", i, c.n)))
			if c.n == 1 && i == 0 {
				time.Sleep(20 * time.Millisecond)
				c.send(answer("unsolicited"))
			}
		}
	})
	for _, cl := range clientsUnderTest(t) {
		t.Run(cl.name, func(t *testing.T) {
			partner.conns.Store(0)
			if _, _, err := roundTrip(t.Context(), cl.rt, http.MethodPost, partner.url+"/x", []byte("<a/>")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			_, body, err := roundTrip(t.Context(), cl.rt, http.MethodPost, partner.url+"/x", []byte("<b/>"))
			if err != nil {
				t.Fatal(err)
			}
			if body != "answer 0 on connection 2" {
				t.Fatalf("the second request got %q", body)
			}
		})
	}
}

// A partner that takes the request's headers and then stops reading (its
// receive window fills; our send buffer with it): the request's context
// ends the exchange at once. Closing the connection must not wait to
// write a TLS close_notify into the full send buffer (crypto/tls gives
// that write 5 s): the SIH's 504 would come 5 s after the route's total
// timeout, the request's goroutine and budget held meanwhile.
func TestUpstreamCanceledWhileThePartnerDoesNotRead(t *testing.T) {
	stop := make(chan struct{})
	partner := startRawPartner(t, func(c *rawConn) {
		http.ReadRequest(c.br) // the headers, then nothing more is read
		select {
		case <-stop:
		case <-time.After(20 * time.Second):
		}
	})
	defer close(stop)
	body := bytes.Repeat([]byte("<claim/>"), 32<<20/8) // more than loopback's buffers take
	for _, cl := range clientsUnderTest(t) {
		t.Run(cl.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, _, err := roundTrip(ctx, cl.rt, http.MethodPost, partner.url+"/x", body)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, want the context's deadline", err)
			}
			// A bound against the hang, not a measure: crypto/tls waits
			// 5 s for its close_notify.
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("the exchange ended %v after it started, its context 300 ms", d.Round(time.Millisecond))
			}
		})
	}
}

// A partner refuses a request early: it answers (413, 401...) before
// reading the whole body, then reads and discards the rest before it
// closes (nginx's lingering close, net/http's server): the SIH gets the
// partner's answer, not a 502. (A partner that closes at once, with the
// body unread, resets the connection, which loses its answer for
// http.Transport too.)
func TestUpstreamEarlyAnswerBeforeTheBodyWasRead(t *testing.T) {
	partner := startRawPartner(t, func(c *rawConn) {
		req, err := http.ReadRequest(c.br)
		if err != nil {
			return
		}
		io.CopyN(io.Discard, req.Body, 100)
		c.send("HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 9\r\n\r\ntoo large")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c.br)
	})
	body := bytes.Repeat([]byte("<claim/>"), 16<<20/8)
	for _, cl := range clientsUnderTest(t) {
		t.Run(cl.name, func(t *testing.T) {
			code, answer, err := roundTrip(t.Context(), cl.rt, http.MethodPost, partner.url+"/x", body)
			if err != nil || code != 413 || answer != "too large" {
				t.Fatalf("got %d %q %v, want the partner's 413", code, answer, err)
			}
		})
	}
}

// Broken answers reach the SIH as roc-proxy's own, classified 502 or 504,
// never as a complete-looking 200 carrying a cut answer; sound but odd
// ones (HTTP/1.0 read to the end, trailers, many small chunks) pass whole.
func TestUpstreamBrokenAnswersThroughTheHandler(t *testing.T) {
	many := strings.Repeat("1\r\nx\r\n", 100_000)
	scripts := map[string]func(c *rawConn){
		"truncated": func(c *rawConn) {
			c.send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n<partial/>")
			c.Close()
		},
		"truncated-rst": func(c *rawConn) {
			c.send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n<partial/>")
			c.tcp.Conn.(*net.TCPConn).SetLinger(0)
			c.tcp.Conn.Close()
		},
		"badchunk": func(c *rawConn) {
			c.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")
		},
		"nolastchunk": func(c *rawConn) {
			c.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
			c.Close()
		},
		"http10": func(c *rawConn) {
			c.send("HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n<whole/>")
			c.Close()
		},
		"trailers": func(c *rawConn) {
			c.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n8\r\n<whole/>\r\n0\r\nX-Sum: 1\r\n\r\n")
		},
		"manychunks": func(c *rawConn) {
			c.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + many + "0\r\n\r\n")
		},
		"split": func(c *rawConn) {
			// One TLS record (and TCP segment) per byte of the headers.
			a := answer("<whole/>")
			for i := range len(a) {
				if c.send(a[i:i+1]) != nil {
					return
				}
				time.Sleep(time.Millisecond)
			}
		},
		"status099": func(c *rawConn) {
			c.send("HTTP/1.1 099 Odd\r\n\r\n" + answer("<whole/>"))
		},
		"trickle": func(c *rawConn) {
			c.send("HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
			for range 200 {
				if c.send("x") != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		},
	}
	routes := map[string]routeOpt{}
	for name, script := range scripts {
		partner := startRawPartner(t, func(c *rawConn) {
			for {
				if _, _, err := c.readRequest(); err != nil {
					return
				}
				script(c)
			}
		})
		// Only the trickle is meant to meet the total timeout; the others
		// get room for a loaded machine under -race (100,000 chunks).
		total := 10 * time.Second
		if name == "trickle" {
			total = 500 * time.Millisecond
		}
		routes[name] = routeOpt{prefix: "/" + name + "/", upstream: partner.url, serverName: testpki.IDBHost, total: total}
	}
	f := newFixture(t, routes)
	srv := f.server(t)
	defer http.DefaultClient.CloseIdleConnections()
	for _, tc := range []struct {
		name   string
		status int
		code   string
		reason string
		body   string
	}{
		{"truncated", 502, CodeUpstreamError, "", ""},
		{"truncated-rst", 502, CodeUpstreamError, "", ""},
		{"badchunk", 502, CodeUpstreamError, "", ""},
		{"nolastchunk", 502, CodeUpstreamError, "", ""},
		{"http10", 200, "", "", "<whole/>"},
		{"trailers", 200, "", "", "<whole/>"},
		{"manychunks", 200, "", "", strings.Repeat("x", 100_000)},
		{"split", 200, "", "", "<whole/>"},
		{"status099", 502, CodeUpstreamError, "", ""},
		{"trickle", 504, CodeUpstreamTimeout, "total", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+"/"+tc.name+"/", "text/xml", strings.NewReader("<soap/>"))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d %q, want %d", resp.StatusCode, b, tc.status)
			}
			if tc.status != 200 {
				if pb := decodeProblem(t, resp); pb.Error != tc.code || pb.Reason != tc.reason {
					t.Fatalf("%+v, want %s/%s", pb, tc.code, tc.reason)
				}
				return
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil || string(b) != tc.body {
				t.Fatalf("body %.40q (%d bytes) %v, want %.40q", b, len(b), err, tc.body)
			}
		})
	}
}

// onceGuard is a connection's standing check that counts its first
// Release only: Release is idempotent (revocation.Binding), and a
// connection closed from two sides at once (its idle timer and
// CloseIdleConnections) may call it twice.
type onceGuard struct {
	countingGuard
	released atomic.Bool
}

func (g *onceGuard) Release() {
	if !g.released.Swap(true) {
		g.releases.Add(1)
	}
}

// openFDs counts the process's open file descriptors (-1: unknown).
func openFDs() int {
	d, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(d)
}

// Many requests at once on a small pool while its connections are closed
// from every side: the partner learnt revoked in the background (closeConn
// on connections idle and in use), the pool emptied
// (CloseIdleConnections), idle timers firing as connections are taken,
// the partner closing some after their answer. No request ever gets
// another's answer (two requests never share a connection), every
// standing check is released, and no file descriptor or goroutine is left
// once the pool is closed.
func TestUpstreamUnderChurn(t *testing.T) {
	var served atomic.Int64
	up, conns := startCountedUpstream(t, time.Minute, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if served.Add(1)%7 == 0 {
			w.Header().Set("Connection", "close")
		}
		w.Write(body)
	})
	var guards, releases, allows atomic.Int64
	var refuse atomic.Pointer[error]
	var mu sync.Mutex
	var closers []func()
	verifyPeer := func(_ context.Context, _ tls.ConnectionState, closeConn func()) (PeerGuard, error) {
		guards.Add(1)
		mu.Lock()
		closers = append(closers, closeConn)
		mu.Unlock()
		return &onceGuard{countingGuard: countingGuard{allows: &allows, releases: &releases, refuse: &refuse}}, nil
	}
	fdsBefore := openFDs()
	u := NewUpstream(UpstreamOptions{TLS: partnerTLS(t), ConnectTimeout: 2 * time.Second, TLSHandshakeTimeout: 2 * time.Second,
		ResponseHeaderTimeout: 5 * time.Second, MaxIdlePerHost: 3, IdleTimeout: 2 * time.Millisecond, VerifyPeer: verifyPeer})
	stop := make(chan struct{})
	var chaos sync.WaitGroup
	chaos.Add(1)
	go func() {
		defer chaos.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			mu.Lock()
			var c func()
			if len(closers) > 0 {
				c = closers[i%len(closers)]
			}
			mu.Unlock()
			if c != nil {
				c()
			}
			if i%5 == 0 {
				u.CloseIdleConnections()
			}
		}
	}()
	var wg sync.WaitGroup
	var ok, failed, mixed atomic.Int64
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 150 {
				want := fmt.Sprintf("<claim worker=%d n=%d/>", w, i)
				code, got, err := roundTrip(t.Context(), u, http.MethodPost, up.URL+"/x", []byte(want))
				switch {
				case err != nil:
					failed.Add(1)
				case code != 200 || got != want:
					mixed.Add(1)
					t.Errorf("sent %q, got %d %q", want, code, got)
				default:
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	chaos.Wait()
	u.Close()
	t.Logf("%d answered, %d failed (connections closed under them), %d connections, %d standing checks", ok.Load(), failed.Load(), conns.opened.Load(), allows.Load())
	if ok.Load() < 450 {
		t.Errorf("only %d of 900 requests answered", ok.Load())
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		g, r := guards.Load(), releases.Load()
		fds := openFDs()
		if g == r && fds <= fdsBefore && conns.closed.Load() == conns.opened.Load() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d standing checks, %d released; %d descriptors open, %d before; partner: %d connections, %d closed", g, r, fds, fdsBefore, conns.opened.Load(), conns.closed.Load())
		}
	}
}

// Every failure path gives back what it took: 1000 failing exchanges of
// five kinds (the chain refused at the handshake, an answer cut short, an
// answer with garbage after it, no answer within the response-header
// timeout, the request's context canceled while waiting) leave no file
// descriptor, goroutine or standing check behind.
func TestUpstreamFailuresLeakNothing(t *testing.T) {
	script := func(c *rawConn) {
		for {
			req, _, err := c.readRequest()
			if err != nil {
				return
			}
			switch req.URL.Path {
			case "/cut":
				c.send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n<partial/>")
				c.Close()
				return
			case "/garbage":
				c.send(answer("<ok/>"), "\x00\x01garbage")
			case "/silent":
				// The client's timeout or cancellation closes it.
			}
		}
	}
	partner := startRawPartner(t, script)
	var guards, releases, allows atomic.Int64
	var refuse atomic.Pointer[error]
	verifyPeer := func(_ context.Context, _ tls.ConnectionState, closeConn func()) (PeerGuard, error) {
		guards.Add(1)
		g := &onceGuard{countingGuard: countingGuard{allows: &allows, releases: &releases, refuse: &refuse}}
		if refuse.Load() != nil {
			return g, *refuse.Load() // refused, with a guard to release
		}
		return g, nil
	}
	fdsBefore, goBefore := openFDs(), runtime.NumGoroutine()
	// The silent partner meets a short response-header timeout; the other
	// exchanges get room for a loaded machine (an answer slower than 20 ms
	// is no failure of theirs).
	opts := func(header time.Duration) UpstreamOptions {
		return UpstreamOptions{TLS: partnerTLS(t), ConnectTimeout: 2 * time.Second, TLSHandshakeTimeout: 2 * time.Second,
			ResponseHeaderTimeout: header, VerifyPeer: verifyPeer}
	}
	patient, hasty := NewUpstream(opts(5*time.Second)), NewUpstream(opts(20*time.Millisecond))
	revoked := error(&trust.VerifyError{Reason: trust.ReasonRevoked, Err: errors.New("revoked")})
	for i := range 1000 {
		ctx, cancel := context.WithCancel(t.Context())
		path := []string{"/refused", "/cut", "/garbage", "/silent", "/canceled"}[i%5]
		u := patient
		if path == "/silent" {
			u = hasty
		}
		switch path {
		case "/refused":
			refuse.Store(&revoked)
			u.CloseIdleConnections()
		case "/canceled":
			time.AfterFunc(5*time.Millisecond, cancel)
		}
		_, _, err := roundTrip(ctx, u, http.MethodPost, partner.url+path, []byte("<claim/>"))
		refuse.Store(nil)
		cancel()
		if (err == nil) != (path == "/garbage") {
			t.Fatalf("%s: %v", path, err)
		}
	}
	patient.Close()
	hasty.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		fds, gs := openFDs(), runtime.NumGoroutine()
		if fds <= fdsBefore && gs <= goBefore && releases.Load() == guards.Load() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 1000 failed exchanges: %d descriptors open (%d before), %d goroutines (%d before), %d of %d standing checks released",
				fds, fdsBefore, gs, goBefore, releases.Load(), guards.Load())
		}
	}
}

// A request whose caller is already gone (the SIH hung up while its body
// was read or its token signed) is not sent: the partner would process a
// claim whose answer nobody reads, and the SIH, which got none, would send
// it again. http.Transport checks the context before it writes; so must a
// pooled connection.
func TestUpstreamDoesNotSendForACallerAlreadyGone(t *testing.T) {
	var got atomic.Int64
	partner := startRawPartner(t, func(c *rawConn) {
		for {
			if _, _, err := c.readRequest(); err != nil {
				return
			}
			got.Add(1)
			c.send(answer("<ok/>"))
		}
	})
	for _, cl := range clientsUnderTest(t) {
		t.Run(cl.name, func(t *testing.T) {
			got.Store(0)
			if _, _, err := roundTrip(t.Context(), cl.rt, http.MethodPost, partner.url+"/x", []byte("<a/>")); err != nil {
				t.Fatal(err)
			}
			for range 20 {
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				if _, _, err := roundTrip(ctx, cl.rt, http.MethodPost, partner.url+"/x", []byte("<claim/>")); !errors.Is(err, context.Canceled) {
					t.Fatalf("got %v, want context.Canceled", err)
				}
			}
			time.Sleep(50 * time.Millisecond)
			if n := got.Load(); n != 1 {
				t.Fatalf("the partner got %d requests whose caller was gone", n-1)
			}
		})
	}
}

// closeRecorder is a request body that records its Close.
type closeRecorder struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeRecorder) Close() error { c.closed.Store(true); return nil }

// RoundTrip closes the request's body on every path, errors included (the
// http.RoundTripper contract, which http.Transport keeps): a body that
// streams from a file or a pipe would otherwise stay open.
func TestUpstreamClosesTheRequestBodyOnEveryPath(t *testing.T) {
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "https://" + down.Addr().String()
	down.Close()
	partner := startRawPartner(t, func(c *rawConn) {
		for {
			if _, _, err := c.readRequest(); err != nil {
				return
			}
			c.send(answer("<ok/>"))
		}
	})
	var refuse atomic.Pointer[error]
	var allows, releases atomic.Int64
	revoked := error(&trust.VerifyError{Reason: trust.ReasonRevoked, Err: errors.New("revoked")})
	u := NewUpstream(UpstreamOptions{TLS: partnerTLS(t), ConnectTimeout: 2 * time.Second, TLSHandshakeTimeout: 2 * time.Second,
		VerifyPeer: func(context.Context, tls.ConnectionState, func()) (PeerGuard, error) {
			return countingGuard{allows: &allows, releases: &releases, refuse: &refuse}, nil
		}})
	t.Cleanup(u.Close)
	send := func(ctx context.Context, url string) (*closeRecorder, error) {
		body := &closeRecorder{Reader: strings.NewReader("<claim/>")}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
		req.ContentLength = 8
		resp, err := u.RoundTrip(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return body, err
	}
	if _, err := send(t.Context(), partner.url+"/x"); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		url  string
		set  func()
	}{
		{"partner down", t.Context(), downURL, func() {}},
		{"not https", t.Context(), strings.Replace(partner.url, "https", "http", 1), func() {}},
		{"caller gone", canceled, partner.url + "/x", func() {}},
		{"standing check refused", t.Context(), partner.url + "/x", func() { refuse.Store(&revoked) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.set()
			body, err := send(tc.ctx, tc.url)
			if err == nil {
				t.Fatal("no error")
			}
			if !body.closed.Load() {
				t.Errorf("the request body was left open after %v", err)
			}
		})
	}
}
