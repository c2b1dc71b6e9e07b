package doctorcmd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// hostileSubject is what an impostor (or the hospital's TLS-inspecting
// proxy) may write in the subject of the certificate it presents: terminal
// escapes (clear the line, set the window title), a carriage return and a
// line feed that forge a table row, a C1 control (CSI) and a bidi override.
const hostileSubject = "evil\x1b[2K\x1b]0;owned\x07\r\nroute forged  idb.amc.test:443  OK\u009b31m\u202e"

// selfSigned is a certificate for name with subject CN cn, signed by its
// own key (no authority the routes trust).
func selfSigned(t *testing.T, name, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn, Organization: []string{cn}},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// A partner, or anything between, that presents a certificate whose
// subject holds control characters does not write them on the operator's
// terminal: doctor's table, its problems and its progress lines show them
// escaped, and no line can be forged.
func TestDoctorEscapesHostileCertificateText(t *testing.T) {
	w := newDoctorWorld(t)
	evil := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	evil.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t, testpki.IDBHost, hostileSubject)}}
	evil.Config.ErrorLog = log.New(io.Discard, "", 0)
	evil.StartTLS()
	t.Cleanup(evil.Close)
	w.servers["evil"] = evil.URL
	path := w.config(t, w.route("impostor", "evil", testpki.IDBHost, ""))
	_, out, progress, err := runDoctor(t, "--config", path, "--timeout", "20s")
	if err == nil {
		t.Fatalf("doctor accepted an impostor:\n%s", out)
	}
	if !strings.Contains(out, "unknown_authority") || !strings.Contains(out, `evil\x1b[2K`) {
		t.Errorf("the impostor's refusal is not shown, with its subject escaped:\n%s", out)
	}
	for where, text := range map[string]string{"table": out, "progress": progress} {
		for _, bad := range []string{"\x1b", "\x07", "\r", "\u009b", "\u202e"} {
			if strings.Contains(text, bad) {
				t.Errorf("doctor's %s writes %q to the terminal:\n%q", where, bad, text)
				break
			}
		}
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, "route forged") {
				t.Errorf("doctor's %s has a line forged by the partner: %q", where, line)
			}
		}
	}
}

// silentListener accepts connections and never writes a byte: a partner,
// or a forward proxy, that hangs.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// A partner that accepts the connection and never answers, and a proxy
// that never answers CONNECT, behind routes whose own timeouts are an
// hour: doctor gives each up within --timeout (a hang would hold the
// install script forever) and reports them as failures.
func TestDoctorBoundedByTimeout(t *testing.T) {
	w := newDoctorWorld(t)
	partner, proxy := silentListener(t), silentListener(t)
	path := w.config(t, fmt.Sprintf(`  - {name: silent, path_prefix: /s/, upstream: "https://%s/ws", server_name: %s, trust: [osi], timeouts: {connect: 1h, tls_handshake: 1h, response_header: 1h, total: 2h}}
  - {name: silent-proxy, path_prefix: /p/, upstream: "https://%s/ws", trust: [osi], timeouts: {connect: 1h, tls_handshake: 1h, response_header: 1h, total: 2h}, outbound_proxy: {url: "http://%s"}}
`, partner, testpki.IDBHost, testpki.IDBHost, proxy))
	type result struct {
		r   doctorReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		var out, errOut bytes.Buffer
		err := Run(context.Background(), []string{"doctor", "--config", path, "--json", "--timeout", "1s"}, &out, &errOut)
		var r doctorReport
		json.Unmarshal(out.Bytes(), &r)
		done <- result{r, err}
	}()
	select {
	case res := <-done:
		if res.err == nil {
			t.Fatal("doctor passed silent partners")
		}
		for route, step := range map[string]string{"silent": "tls", "silent-proxy": "connect"} {
			if status, summary, _ := res.r.step("partner", route, step); status != "fail" || !strings.Contains(summary, "timeout") {
				t.Errorf("route %s, step %s: %s %q, want a timeout failure", route, step, status, summary)
			}
		}
	case <-time.After(2 * time.Minute): // a hang guard, not a measure
		t.Fatal("doctor did not give up on a silent partner and proxy")
	}
}
