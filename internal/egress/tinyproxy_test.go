package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/referee"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// startTinyproxy runs Debian's tinyproxy on 127.0.0.1 with Basic
// credentials, allowing CONNECT to allowedPort only, until the test ends.
// tinyproxy takes its port from its configuration file only (no socket
// handed over, no port 0): a free port is asked of the kernel and given
// to it, and a start that loses that port to another process is retried
// on a new one.
func startTinyproxy(t *testing.T, password string, allowedPort string) string {
	t.Helper()
	bin := referee.Path(t, "tinyproxy", "Debian package tinyproxy")
	dir := t.TempDir()
	for attempt := 0; attempt < 5; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		_, port, _ := net.SplitHostPort(addr)
		conf := filepath.Join(dir, "tinyproxy.conf")
		logFile := filepath.Join(dir, fmt.Sprintf("tinyproxy-%d.log", attempt))
		os.WriteFile(conf, []byte(fmt.Sprintf(`Port %s
Listen 127.0.0.1
Timeout 10
MaxClients 8
Allow 127.0.0.1
BasicAuth roc-proxy %s
ConnectPort %s
LogFile "%s"
LogLevel Info
`, port, password, allowedPort, logFile)), 0o600)
		cmd := exec.Command(bin, "-d", "-c", conf)
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			select {
			case <-exited:
				deadline = time.Time{} // lost the port: try another
				continue
			default:
			}
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Cleanup(func() {
					cmd.Process.Kill()
					<-exited
				})
				return "http://" + addr
			}
		}
		cmd.Process.Kill()
		<-exited
	}
	t.Fatal("tinyproxy did not start")
	return ""
}

// Against a real proxy (Debian's tinyproxy): the tunnel carries mutual TLS
// end to end (the partner verifies ORG_AUTH_CLI, we verify the partner
// against the bundle), tinyproxy's 407 for wrong credentials and its 403
// for a port its policy refuses get their reasons.
func TestTinyproxy(t *testing.T) {
	pki := testpki.MustShared(t)
	partner := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "client "+trust.SubjectDN(r.TLS.PeerCertificates[0]))
	}))
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(pki.SanteRoot.Cert)
	partner.TLS = &tls.Config{Certificates: []tls.Certificate{*pki.Servers[testpki.IDBHost].TLSCertificate()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs}
	partner.StartTLS()
	t.Cleanup(partner.Close)
	_, partnerPort, _ := net.SplitHostPort(partner.Listener.Addr().String())
	proxyURL := startTinyproxy(t, secret, partnerPort)

	tunnel := func(password, target string) (net.Conn, error) {
		c := &config.OutboundProxy{URL: proxyURL}
		if password != "" {
			c.Username, c.PasswordEnv = "roc-proxy", "P"
		}
		p, err := Load(c, "outbound_proxy", func(string) string { return password })
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Tunnel itself: the Dialer would go directly to a loopback
		// partner (loopback is never proxied), and tinyproxy resolves
		// only real names.
		return p.Tunnel(ctx, &net.Dialer{}, target)
	}
	conn, err := tunnel(secret, partner.Listener.Addr().String())
	if err != nil {
		t.Fatalf("CONNECT through tinyproxy: %v", err)
	}
	defer conn.Close()
	roots := x509.NewCertPool()
	roots.AddCert(pki.OSIRoot.Cert)
	tc := tls.Client(conn, &tls.Config{RootCAs: roots, ServerName: testpki.IDBHost,
		Certificates: []tls.Certificate{*pki.AuthCli.TLSCertificate()}})
	fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", testpki.IDBHost)
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatalf("mutual TLS through tinyproxy: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "CN="+testpki.AuthCliCN) {
		t.Errorf("the partner saw %q", body)
	}

	for _, c := range []struct {
		password, target, reason, status string
	}{
		{"wrong", partner.Listener.Addr().String(), ReasonAuth, "401"}, // tinyproxy's answer to wrong credentials
		{"", partner.Listener.Addr().String(), ReasonAuth, "407"},
		{secret, "127.0.0.1:1", ReasonRefused, "403"},
	} {
		_, err := tunnel(c.password, c.target)
		var e *Error
		if !errors.As(err, &e) || e.Reason != c.reason || !strings.HasPrefix(e.Status, c.status) {
			t.Errorf("%s to %s: %v, want %s (%s)", c.password, c.target, err, c.reason, c.status)
		}
		if strings.Contains(fmt.Sprint(err), secret) {
			t.Errorf("error shows the password: %v", err)
		}
	}
}
