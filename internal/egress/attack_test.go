package egress

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/sim"
)

// "Loopback and localhost are always reached directly" whatever the
// spelling: a host name is case-insensitive and may end with the root's
// dot, and names below localhost are loopback too (RFC 6761). Sent to the
// proxy, "CONNECT LOCALHOST:8443" reaches the proxy's own loopback, not
// ours. The no_proxy list is matched the same way: "dpi.hopital.example."
// is the host no_proxy names as hopital.example.
func TestLoopbackAndNoProxySpellings(t *testing.T) {
	p := load(t, &config.OutboundProxy{URL: "http://proxy.hopital.example:3128", NoProxy: []string{"hopital.example", "amc.example:8443"}})
	for _, c := range []struct {
		hostport string
		proxied  bool
	}{
		{"LOCALHOST:443", false},
		{"Localhost:8443", false},
		{"localhost.:443", false},
		{"ws.localhost:443", false},
		{"WS.LocalHost.:443", false},
		{"dpi.hopital.example.:443", false},
		{"DPI.Hopital.Example.:443", false},
		{"AMC.example.:8443", false},
		{"amc.example.:443", true},
		{"notlocalhost:443", true},
		{"localhost.amc.example:443", true},
		{"ws.amc.example.:443", true},
	} {
		if got := p.Uses("https", c.hostport); got != c.proxied {
			t.Errorf("%s: proxied %v, want %v", c.hostport, got, c.proxied)
		}
	}

	// The dialer: a partner on our loopback, named LOCALHOST, is reached
	// directly; the proxy is never asked.
	partner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer partner.Close()
	go func() {
		for {
			c, err := partner.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	proxy, err := sim.StartForwardProxy(sim.ForwardProxyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	_, port, _ := net.SplitHostPort(partner.Addr().String())
	d := NewDialer(load(t, &config.OutboundProxy{URL: proxy.URL}), 2*time.Second, nil)
	conn, err := d.DialContext(context.Background(), "tcp", "LOCALHOST:"+port)
	if err != nil {
		t.Fatalf("LOCALHOST directly: %v", err)
	}
	conn.Close()
	if n := proxy.Connects.Load(); n != 0 {
		t.Errorf("%d CONNECTs to the proxy for LOCALHOST (targets %v)", n, proxy.Targets())
	}
}
