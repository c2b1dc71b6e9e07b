package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// The partner sees the renewed client certificate on the request after a
// Renew, though the pool held a keep-alive connection made with the old
// one; and while ORG_AUTH_CLI is known revoked, a front end's refusal
// (HTML 403) is classified as such, never a SOAP answer (XML 403).
func TestRenewableUpstream(t *testing.T) {
	p := pki(t)
	var mu sync.Mutex
	var serials []string
	partner := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		serials = append(serials, r.TLS.PeerCertificates[0].SerialNumber.Text(16))
		mu.Unlock()
		switch r.URL.Path {
		case "/refused":
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusForbidden)
		case "/fault":
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(http.StatusForbidden)
		}
		io.WriteString(w, "answer")
	}))
	// Any client certificate is asked for and recorded (ORG_SIGN stands
	// for the renewed ORG_AUTH_CLI: another serial).
	partner.TLS = &tls.Config{Certificates: []tls.Certificate{*tlsCert(p.Servers[testpki.IDBHost])}, ClientAuth: tls.RequireAnyClientCert}
	partner.Config.ErrorLog = zap.NewStdLog(zap.NewNop())
	partner.StartTLS()
	t.Cleanup(partner.Close)

	store := trust.NewStore(trust.NewBundle("osi", p.OSIRoot.Cert, p.OSIServeur.Cert))
	v, err := store.NewVerifier(trust.VerifierOptions{Bundles: []string{"osi"}, ServerName: testpki.IDBHost})
	if err != nil {
		t.Fatal(err)
	}
	var client atomic.Pointer[tls.Certificate]
	client.Store(tlsCert(p.AuthCli))
	var revoked atomic.Bool
	u := NewRenewableUpstream(func() *Upstream {
		return NewUpstream(UpstreamOptions{
			TLS:            mtls.ClientConfig(mtls.ClientOptions{ServerName: testpki.IDBHost, VerifyConnection: v.VerifyConnection, ClientCertificate: client.Load}),
			ConnectTimeout: 2 * time.Second, TLSHandshakeTimeout: 2 * time.Second, ResponseHeaderTimeout: 5 * time.Second,
		})
	}, revoked.Load)
	t.Cleanup(u.Close)
	send := func(path string) (*http.Response, error) {
		req, err := http.NewRequest(http.MethodPost, partner.URL+path, strings.NewReader("<soap/>"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := u.RoundTrip(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	for range 2 {
		if _, err := send("/"); err != nil {
			t.Fatal(err)
		}
	}
	client.Store(tlsCert(p.Sign))
	if _, err := send("/"); err != nil {
		t.Fatal(err)
	}
	u.Renew()
	if _, err := send("/"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := strings.Join(serials, " ")
	mu.Unlock()
	old, renewed := p.AuthCli.Cert.SerialNumber.Text(16), p.Sign.Cert.SerialNumber.Text(16)
	// Before Renew the pooled connection keeps the old certificate (why
	// the pool is renewed at all); after it, the new one.
	if want := strings.Join([]string{old, old, old, renewed}, " "); got != want {
		t.Fatalf("client certificates seen %s, want %s", got, want)
	}

	if resp, err := send("/refused"); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("not revoked: a 403 is the partner's answer: %v", err)
	}
	revoked.Store(true)
	if _, err := send("/refused"); !errors.Is(err, ErrOwnCertificateRevoked) {
		t.Fatalf("revoked, HTML 403: %v, want ErrOwnCertificateRevoked", err)
	}
	if resp, err := send("/fault"); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("revoked, a SOAP 403 is still the partner's answer: %v", err)
	}
	if resp, err := send("/"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("revoked, a 200 passes: %v", err)
	}
}
