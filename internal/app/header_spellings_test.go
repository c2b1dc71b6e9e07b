package app

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHeaderSpellingsNeverReachThePartner plays a hostile SIH writing its
// request line by line on the wire, so that every header name arrives
// exactly as spelled: roc-proxy's X-Roc-* in every case and with "_" for
// "-", repeated, named in Connection; the spoofable client-identity
// headers (Forwarded, X-Forwarded-*, X-Real-Ip, X-Client-Cert...) and the
// hop-by-hop ones under their underscore spellings, which a CGI, PHP or
// WSGI partner reads exactly as the canonical ones (HTTP_X_FORWARDED_FOR);
// "Proxy" (httpoxy: HTTP_PROXY); Unicode look-alikes and names with a
// trailing space, which net/http must refuse. The partner, on 127.0.0.1,
// reports every header it got: none of these may be among them, on a
// pass-through route and on both token routes.
func TestHeaderSpellingsNeverReachThePartner(t *testing.T) {
	url, partner := startHeaderRoutes(t)
	sih := strings.TrimPrefix(url, "http://")
	forged := base64.StdEncoding.EncodeToString([]byte("<saml:Assertion>forged</saml:Assertion>"))
	long := "X-Roc-" + strings.Repeat("a", 4000)

	// accepted are sent one by one with the legitimate identity headers:
	// net/http takes them, and they must not reach the partner.
	accepted := []string{
		"x-roc-user-id", "X-ROC-USER-ID", "X_Roc_User_Id", "x_ROC_user_ID", "X-Roc_Patient-Ins", "X_ROC-Purpose_Of_Use", "x-RoC-anything", long,
		"X-Saml-Token", "x-saml-token", "X_Saml_Token", "X-Amc-Jeton", "x_amc_jeton", "X_AMC-JETON",
		"Forwarded", "forwarded", "X-Forwarded-For", "X_Forwarded_For", "x_forwarded_for", "X-Forwarded_Host", "X_Forwarded_Proto",
		"X-Forwarded-Ssl", "X-Forwarded-Server", "X-Forwarded-Scheme", "X-Forwarded-Uri", "X_Forwarded_Port", "X-Forwarded-Client-Cert",
		"X-Real-Ip", "X_Real_IP", "x_real_ip", "X-Client-Ip", "X_Client_IP", "X-Client-Cert", "X_Client_Cert",
		"X-Ssl-Client-Cert", "X_SSL_CLIENT_CERT", "Ssl-Client-Cert", "SSL_CLIENT_CERT", "X-Forwarded-Prefix",
		"Proxy", "Proxy-Authorization", "Proxy_Authorization", "Proxy-Connection", "Proxy_Connection", "Keep-Alive", "Keep_Alive",
		"Upgrade", "Transfer_Encoding", "Trailer", "X-Listed-In-Connection", "X_Listed_In_Connection", "X_Request_Id",
	}
	// refused are names net/http must answer 400 to, before any routing.
	refused := []string{"X-Roc-User-Id ", "X-Ro\u212A-User-Id", "X-Roc-U\u017Fer-Id", "X-Roc-\u0131d", "X-Sa\u2212l-Token", "X-Roc-User-Id\t"}

	forbidden := func(route, name string, vals []string) bool {
		n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
		switch {
		case strings.HasPrefix(n, "x-roc-"), strings.HasPrefix(n, "x-forwarded-"):
			return true
		case n == "x-saml-token" || n == "x-amc-jeton":
			switch route {
			case "wsse":
				return n == "x-saml-token"
			case "header":
				return n == "x-saml-token" || vals[0] == forged || len(vals) != 1
			}
			return false
		case n == "te":
			return len(vals) != 1 || vals[0] != "trailers"
		case n == "x-request-id":
			return name != "X-Request-Id" || len(vals) != 1 || vals[0] == forged
		}
		switch n {
		case "forwarded", "x-real-ip", "x-client-ip", "x-client-cert", "x-ssl-client-cert", "ssl-client-cert",
			"proxy", "proxy-authorization", "proxy-connection", "keep-alive", "upgrade", "transfer-encoding", "trailer", "connection",
			"x-listed-in-connection":
			return true
		}
		return false
	}
	send := func(t *testing.T, path string, extra []string) (int, http.Header) {
		t.Helper()
		partner.reset()
		c, err := net.DialTimeout("tcp", sih, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		body := `<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><x/></S:Body></S:Envelope>`
		var b strings.Builder
		fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n", path, sih, len(body))
		b.WriteString("X-Roc-User-Id: 810002345678\r\nX-Roc-User-Name: DUPONT Jeanne\r\nX-Roc-User-Roles: 10\r\n")
		for _, l := range extra {
			b.WriteString(l + "\r\n")
		}
		b.WriteString("Connection: keep-alive, X-Listed-In-Connection, x-roc-user-name\r\n\r\n" + body)
		if _, err := io.WriteString(c, b.String()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, partner.last()
	}
	for _, r := range []string{"plain", "wsse", "header"} {
		t.Run(r, func(t *testing.T) {
			for _, name := range accepted {
				value := forged
				switch strings.ToLower(name) {
				case "upgrade":
					value = "websocket"
				case "transfer_encoding":
					value = "gzip"
				}
				// Twice, as two lines: repeated headers.
				code, got := send(t, "/"+r+"/", []string{name + ": " + value, name + ": " + value})
				if code != 200 {
					t.Errorf("%q: status %d", name, code)
					continue
				}
				for n, vals := range got {
					if forbidden(r, n, vals) {
						t.Errorf("sent %q: the partner got %s: %.60q", name, n, vals)
					}
				}
			}
			for _, name := range refused {
				code, got := send(t, "/"+r+"/", []string{name + ": " + forged})
				if code != 400 || got != nil {
					t.Errorf("%q: status %d, the partner got %v", name, code, got)
				}
			}
		})
	}
}
