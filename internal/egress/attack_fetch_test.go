package egress

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/config"
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
