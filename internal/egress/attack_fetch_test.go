package egress

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/sim"
)

// tinyproxy answers wrong credentials with 401 to a forwarded GET as to
// CONNECT (see TestTinyproxy): a revocation fetch sent to the proxy with
// our credentials and answered 401 is the proxy refusing them (CRL and
// OCSP servers are public), so it gets the reason proxy_auth, as a
// tunnel does, and the metric of the proxy's connects says so.
func TestFetchTransportProxy401(t *testing.T) {
	proxyURL := rawProxy(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nServer: tinyproxy/1.11.1\r\nWWW-Authenticate: Basic realm=\"Tinyproxy\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	})
	p, err := Load(&config.OutboundProxy{URL: proxyURL, Username: "roc", PasswordEnv: "P"}, "outbound_proxy", func(string) string { return "wrong" })
	if err != nil {
		t.Fatal(err)
	}
	var observed []string
	_, err = (&http.Client{Transport: FetchTransport(p, 2*time.Second, func(r string) { observed = append(observed, r) })}).Get("http://crl.test/ac.crl")
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonAuth || !strings.Contains(err.Error(), `answered "401 Unauthorized" to GET http://crl.test/ac.crl`) {
		t.Errorf("401 from the proxy to a forwarded fetch with credentials: %v", err)
	}
	if len(observed) != 1 || observed[0] != ReasonAuth {
		t.Errorf("observed %v, want [%s]", observed, ReasonAuth)
	}
}

// The same against Debian's tinyproxy itself: wrong credentials on a
// forwarded revocation fetch are proxy_auth.
func TestTinyproxyFetchWrongCredentials(t *testing.T) {
	proxyURL := startTinyproxy(t, secret, "443")
	p, err := Load(&config.OutboundProxy{URL: proxyURL, Username: "roc-proxy", PasswordEnv: "P"}, "outbound_proxy", func(string) string { return "wrong" })
	if err != nil {
		t.Fatal(err)
	}
	// tinyproxy checks the credentials before resolving the name.
	_, err = (&http.Client{Transport: FetchTransport(p, 5*time.Second, nil)}).Get("http://crl.roc-proxy-test.invalid/ac.crl")
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonAuth || !strings.HasPrefix(e.Status, "401") {
		t.Fatalf("wrong credentials to tinyproxy on a forwarded fetch: %v", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error shows the password: %v", err)
	}
}

// A password with a colon (allowed: only the user name cannot hold one)
// and non-ASCII letters, read from a file written on Windows (CRLF),
// reaches the proxy as written: the proxy splits user and password at the
// first colon and reads the password's UTF-8 bytes (RFC 7617).
func TestPasswordWithColonAndAccents(t *testing.T) {
	const password = "p:ss-Sécurité"
	proxy, err := sim.StartForwardProxy(sim.ForwardProxyOptions{Username: "roc-proxy", Password: password, Hosts: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	file := filepath.Join(t.TempDir(), "proxy.password")
	if err := os.WriteFile(file, []byte(password+"\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Load(&config.OutboundProxy{URL: proxy.URL, Username: "roc-proxy", PasswordFile: file}, "outbound_proxy", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Tunnel(context.Background(), &net.Dialer{}, "nowhere.invalid:443")
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonUpstream { // past the credentials: the proxy cannot resolve the name
		t.Fatalf("tunnel: %v", err)
	}
	auths := proxy.Authorizations()
	if len(auths) != 1 {
		t.Fatalf("the proxy got %d Proxy-Authorization headers", len(auths))
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(auths[0], "Basic "))
	user, pass, _ := strings.Cut(string(raw), ":")
	if err != nil || user != "roc-proxy" || pass != password {
		t.Errorf("the proxy decoded user %q password %q (%v)", user, pass, err)
	}
}
